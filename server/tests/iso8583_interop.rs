//! Interoperability: the gateway driven by pyiso8583 (from PyPI), an ISO 8583 implementation
//! we did not write, through `tests/interop/iso8583_interop.py`. The virtualenv it runs from
//! is made by `tests/interop/setup.sh` (which `.ci/run` calls, and this test calls too when
//! the virtualenv is missing).

mod common;

use common::Node;
use common::iso::{KID_PAN, PAN, setup};
use std::path::PathBuf;
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate sits in the workspace")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiso8583_gets_every_answer_the_profile_promises() {
    let root = workspace();
    let status = Command::new("bash")
        .arg(root.join("tests/interop/setup.sh"))
        .status()
        .expect("run tests/interop/setup.sh");
    assert!(status.success(), "could not install pyiso8583 into .venv");

    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    setup(&node).await;
    let output = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/interop/iso8583_interop.py"))
        .args([node.iso8583.as_str(), PAN, KID_PAN])
        .output()
        .expect("run the pyiso8583 client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pyiso8583 client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all interop steps passed"), "{stdout}");
    node.stop();
}
