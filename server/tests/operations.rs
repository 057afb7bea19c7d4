//! Operating the binary: one node per data directory, clean stops on SIGTERM, restarts that
//! keep every answer, and backup/restore of a running node.

// Amounts are written as major_minor (100_00 is 100.00) on purpose.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use common::{ADMIN, Node, authorize_body};
use serde_json::json;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_serves_one_node_and_survives_restarts() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    node.account("r", "joint", &[("ana", "owner")], Some(("EUR", 50_00)))
        .await;
    let (_, approved) = node.authorize(ADMIN, "k-1", "r-ana-card", 7_00).await;
    assert_eq!(approved["status"], "approved");
    let before = node.balance("r").await;

    // A second node on the same directory refuses to start, saying why.
    let second = common::serve(dir.path()).output().expect("run");
    assert!(!second.status.success());
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(
        message.contains("in use by another tandem process"),
        "{message}"
    );

    // SIGTERM stops it cleanly; a restart serves the same state and the same answers.
    let status = node.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let node = Node::start(dir.path());
    assert_eq!(node.balance("r").await, before);
    let (_, repeat) = node.authorize(ADMIN, "k-1", "r-ana-card", 7_00).await;
    assert_eq!(
        repeat, approved,
        "the repeat after a restart gets the first answer"
    );
    assert_eq!(node.balance("r").await, before, "and no second hold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_node_restores_to_the_same_balances() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let node = Node::start(&data);
    node.account(
        "b",
        "group",
        &[("ana", "owner"), ("ben", "member")],
        Some(("EUR", 80_00)),
    )
    .await;
    node.admin(
        "PUT",
        "/v1/fx/rates",
        json!({"base": "EUR", "rates": {"GBP": "0.8571"}}),
    )
    .await;
    node.admin(
        "POST",
        "/v1/accounts/b/cards",
        json!({"card_id": "b-pan", "member_id": "ben", "pan": "5500000000000004"}),
    )
    .await;
    for i in 0..20 {
        node.authorize(ADMIN, &format!("a-{i}"), "b-ben-card", 1_00)
            .await;
    }
    let at_backup = node.balance("b").await;
    // The holds, without the commit index the read reports (as `Node::balance`).
    let holds_of = |mut holds: serde_json::Value| {
        holds.as_object_mut().unwrap().remove("commit_index");
        holds
    };
    let holds_at_backup = holds_of(node.get("/v1/accounts/b/holds").await);

    let backup_dir = dir.path().join("backup");
    common::succeeds(
        Command::new(common::binary())
            .args(["backup", "--server", &node.http, "--token", ADMIN, "--to"])
            .arg(&backup_dir),
    );
    // Work after the backup is not in it.
    node.authorize(ADMIN, "late", "b-ben-card", 9_00).await;
    assert_ne!(node.balance("b").await, at_backup);
    assert!(node.stop().success());

    let restored = dir.path().join("restored");
    common::succeeds(
        Command::new(common::binary())
            .args(["restore", "--from"])
            .arg(&backup_dir)
            .arg("--data-dir")
            .arg(&restored),
    );
    let node = Node::start(&restored);
    assert_eq!(node.balance("b").await, at_backup);
    let holds = holds_of(node.get("/v1/accounts/b/holds").await);
    assert_eq!(holds, holds_at_backup);
    // The restored node keeps working: new decisions, the card directory and the rates.
    let (_, approved) = node.authorize(ADMIN, "after", "b-ben-card", 2_00).await;
    assert_eq!(approved["status"], "approved", "{approved}");
    let (status, body) = node
        .call(
            "POST",
            "/v1/accounts/b/cards",
            Some(ADMIN),
            Some(json!({"card_id": "other", "member_id": "ben", "pan": "5500000000000004"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("pan_exists")),
        "the PAN directory came back"
    );
    let mut gbp = authorize_body("fx", "b-ben-card", 1_00);
    gbp["currency"] = json!("GBP");
    let (_, fx) = node
        .call("POST", "/v1/authorizations", Some(ADMIN), Some(gbp))
        .await;
    assert_eq!(fx["status"], "approved", "the FX rates came back: {fx}");
    assert!(node.stop().success());
    let node = Node::start(&restored);
    let (_, repeat) = node.authorize(ADMIN, "after", "b-ben-card", 2_00).await;
    assert_eq!(
        repeat, approved,
        "decisions after the restore are durable too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_records_nothing_and_recovers_after_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start_with(dir.path(), &["--fault-injection", "true"]);
    node.account("d", "joint", &[("ana", "owner")], Some(("EUR", 10_00)))
        .await;
    let before = node.balance("d").await;
    node.admin("POST", "/v1/admin/faults", json!({"disk_full": true}))
        .await;
    let (status, problem) = node.authorize(ADMIN, "full-1", "d-ana-card", 3_00).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["code"], "log_unavailable");
    let (status, _) = node.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "the server stays up");
    assert_eq!(node.balance("d").await, before, "nothing was recorded");
    assert!(node.stop().success());

    // Space is back: the retry with the same key is decided once.
    let node = Node::start(dir.path());
    assert_eq!(node.balance("d").await, before);
    let (status, approved) = node.authorize(ADMIN, "full-1", "d-ana-card", 3_00).await;
    assert_eq!(
        (status, approved["status"].as_str()),
        (200, Some("approved"))
    );
    let holds = node.get("/v1/accounts/d/holds").await;
    assert_eq!(holds["holds"].as_array().expect("holds").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_over_their_rate_get_429_and_fault_injection_is_off_by_default() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start_with(dir.path(), &["--rate-limit-per-key", "5"]);
    let mut limited = 0;
    for _ in 0..30 {
        let (status, body) = node
            .call("GET", "/v1/accounts/x/balance", Some(ADMIN), None)
            .await;
        if status == 429 {
            assert_eq!(body["code"], "rate_limited");
            limited += 1;
        }
    }
    assert!(
        limited >= 20,
        "a burst of 30 against 5/s: {limited} refused"
    );
    let (status, _) = node.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "unauthenticated health checks are not limited");
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (status, body) = node
        .call(
            "POST",
            "/v1/admin/faults",
            Some(ADMIN),
            Some(json!({"disk_full": true})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
}

/// A log written to a file (a redirected stderr) is plain text: no ANSI colour escapes.
#[tokio::test]
async fn a_redirected_log_has_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tandem.log");
    let node = Node::start_logging_to(&dir.path().join("data"), &log);
    assert!(node.stop().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stopped"), "the log has its lines: {text}");
    assert!(!text.contains('\x1b'), "no escape sequences: {text:?}");
}

/// Every admin action (account management, key issue and revoke, FX rates, faults, backups)
/// is a line of `audit.log` with its key id, and a node whose audit log cannot be written
/// refuses admin actions rather than carrying them out unrecorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_action_is_audited_and_an_unwritable_audit_log_refuses_them() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let node = Node::start_with(&data, &["--fault-injection", "true"]);
    node.account("aud", "joint", &[("ana", "owner")], Some(("EUR", 10_00)))
        .await;
    let key = node
        .admin("POST", "/v1/api-keys", json!({"role": "network"}))
        .await;
    let id = key["id"].as_str().expect("id").to_owned();
    let (status, body) = node
        .call("DELETE", &format!("/v1/api-keys/{id}"), Some(ADMIN), None)
        .await;
    assert!(status < 300, "{status} {body}");
    let (status, body) = node
        .call(
            "PUT",
            "/v1/fx/rates",
            Some(ADMIN),
            Some(json!({"base": "EUR", "rates": {"GBP": "0.85"}})),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    node.slow_commits(0).await;
    let to = dir.path().join("backup");
    node.admin(
        "POST",
        "/v1/admin/backup",
        json!({"to": to.to_str().expect("utf-8")}),
    )
    .await;
    let audit = std::fs::read_to_string(data.join("audit.log")).expect("audit.log");
    let actions: Vec<String> = audit
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert!(line["key_id"].is_string(), "{line}");
            line["action"].as_str().expect("action").to_owned()
        })
        .collect();
    for action in [
        "open_account",
        "add_member",
        "issue_card",
        "deposit",
        "issue_key",
        "revoke_key",
        "set_rates",
        "set_faults",
        "backup",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} is not in audit.log: {actions:?}"
        );
    }
    node.stop();

    // An audit log every write to fails (a full disk): admin actions are refused, 503.
    let full = dir.path().join("full");
    std::fs::create_dir_all(&full).expect("dir");
    std::os::unix::fs::symlink("/dev/full", full.join("audit.log")).expect("symlink");
    let node = Node::start(&full);
    let (status, body) = node
        .call(
            "POST",
            "/v1/api-keys",
            Some(ADMIN),
            Some(json!({"role": "network"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("storage_unavailable")),
        "{body}"
    );
    let (status, body) = node
        .call(
            "POST",
            "/v1/accounts",
            Some(ADMIN),
            Some(json!({"account_id": "never", "kind": "joint"})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = node
        .call("GET", "/v1/accounts/never/balance", Some(ADMIN), None)
        .await;
    assert_eq!(status, 404, "the refused account was not opened");
    node.stop();
}

/// API keys and FX rates are log entries: none is kept in a file of the data directory. A
/// directory from before, with `api-keys.json` and `fx-rates.json`, has them imported into
/// the log once at start (the files renamed `*.imported`), and they hold after restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_rates_live_in_the_log_and_older_files_are_imported_once() {
    use sha2::Digest;
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    node.account("k", "joint", &[("ana", "owner")], Some(("EUR", 50_00)))
        .await;
    let ana = node.app_key("k", "ana").await;
    assert!(node.stop().success());
    assert!(
        !dir.path().join("api-keys.json").exists(),
        "an issued key is committed, not written to a file"
    );

    // Files as an older build left them: a network key and a rate for GBP.
    let legacy_token = "tdm_legacy_network_token";
    let hash = hex::encode(sha2::Sha256::digest(legacy_token.as_bytes()));
    std::fs::write(
        dir.path().join("api-keys.json"),
        json!([{"id": "key_legacy", "role": "network", "account_id": null, "member_id": null,
                "token_sha256": hash, "created_at_ms": 0, "created_by": "older build"}])
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fx-rates.json"),
        json!({"base": "EUR", "rates": {"GBP": "0.8571"}}).to_string(),
    )
    .unwrap();
    let gbp = |key: &str| {
        let mut body = authorize_body(key, "k-ana-card", 1_00);
        body["currency"] = json!("GBP");
        body
    };

    let node = Node::start(dir.path());
    for name in ["api-keys.json", "fx-rates.json"] {
        assert!(!dir.path().join(name).exists(), "{name} is no longer read");
        assert!(dir.path().join(format!("{name}.imported")).exists());
    }
    let (status, answer) = node
        .call(
            "POST",
            "/v1/authorizations",
            Some(legacy_token),
            Some(gbp("g-1")),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["status"], "approved",
        "the imported rates convert GBP"
    );
    let (status, _) = node
        .call("GET", "/v1/accounts/k/balance", Some(&ana), None)
        .await;
    assert_eq!(status, 200, "the committed app key");
    assert!(node.stop().success());

    // From the log alone now: the key still works, then a revocation holds across a restart.
    let node = Node::start(dir.path());
    let (status, answer) = node
        .call(
            "POST",
            "/v1/authorizations",
            Some(legacy_token),
            Some(gbp("g-2")),
        )
        .await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("approved")),
        "{answer}"
    );
    let (status, _) = node
        .call("DELETE", "/v1/api-keys/key_legacy", Some(ADMIN), None)
        .await;
    assert_eq!(status, 204);
    assert!(node.stop().success());
    let node = Node::start(dir.path());
    let (status, _) = node
        .call(
            "POST",
            "/v1/authorizations",
            Some(legacy_token),
            Some(gbp("g-3")),
        )
        .await;
    assert_eq!(status, 401, "revoked in the log");
    assert!(node.stop().success());
}

/// With no key configured, the first start commits an admin key and writes its token to
/// `admin.token`; later starts find the committed key and generate none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_key_is_generated_once_and_committed() {
    let dir = tempfile::tempdir().expect("dir");
    let no_env_admin = [("TANDEM_ADMIN_TOKEN", "")];
    let node = Node::start_with_env(dir.path(), &no_env_admin);
    let path = dir.path().join("admin.token");
    let token = std::fs::read_to_string(&path).expect("admin.token written");
    let token = token.trim().to_owned();
    let (status, body) = node
        .call(
            "POST",
            "/v1/accounts",
            Some(&token),
            Some(json!({"account_id": "first", "kind": "joint"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(node.stop().success());
    std::fs::remove_file(&path).unwrap();
    let node = Node::start_with_env(dir.path(), &no_env_admin);
    assert!(!path.exists(), "no second key generated");
    let (status, _) = node
        .call("GET", "/v1/accounts/first/balance", Some(&token), None)
        .await;
    assert_eq!(status, 200, "the first key is committed");
    assert!(node.stop().success());
}
