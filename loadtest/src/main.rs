//! `tandem-loadtest`: the SRE's load tester (issue "tandem-loadtest"). It needs the server;
//! until that exists it says so plainly.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "tandem-loadtest {}: needs the Tandem server, which is not built yet",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
