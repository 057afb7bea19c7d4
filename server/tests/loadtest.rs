//! A short load from tandem-loadtest against the real binary, over gRPC (unary and stream),
//! HTTP and ISO 8583, with realistic mixed traffic; the money audit at the end must be clean.

mod common;

use common::{ADMIN, Node};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tandem_loadtest::nodes::Nodes;
use tandem_loadtest::provision;
use tandem_loadtest::report::Recorder;
use tandem_loadtest::run::{Load, RunState, audit, run};
use tandem_loadtest::scenario::{Population, Scenario, Traffic};

/// Provisions, drives 3 s of `scenario`, and audits; with `hold_expiry` (the server's window)
/// it waits until holds approved during the run are old enough to have expired.
/// Connects to `url` (set-up and audit through `setup`, if given; `stream` for the gRPC
/// processor stream) and runs a short load of `scenario`, then its audit.
async fn load(
    (url, setup, stream): (&str, &str, bool),
    run_id: &str,
    scenario: Scenario,
    hold_expiry: Option<Duration>,
) -> tandem_loadtest::audit::AuditSummary {
    let target = Nodes::connect(url, setup, ADMIN, stream, 2)
        .await
        .expect("connect");
    let population = Population {
        run_id: run_id.to_owned(),
        accounts: 24,
        members_per_account: 3,
        kid_every: 4,
        currencies: vec!["EUR".into(), "GBP".into()],
        deposit_minor: 1_000_000,
        kid_deposit_minor: 20_000,
    };
    let target = Arc::new(target);
    provision::provision(&target, &population, 8)
        .await
        .expect("provision");
    let shared = Arc::new(RunState {
        target,
        traffic: Mutex::new(Traffic::new(scenario, population.clone(), 11)),
        recorder: Recorder::default(),
        ledger: Mutex::new(provision::ledger_of_deposits(&population)),
        population,
        watchers: None,
    });
    shared.ledger.lock().expect("ledger").hold_expiry_ms =
        hold_expiry.map(|d| d.as_millis() as i64);
    let elapsed = run(
        shared.clone(),
        &Load {
            rate: 400.0,
            duration: Duration::from_secs(3),
            closed_loop: None,
            outstanding_max: 10_000,
            seed: 5,
            quiet: true,
        },
    )
    .await;
    let report = shared.recorder.report(
        tandem_loadtest::report::RunContext {
            command_line: "test".into(),
            version: "test".into(),
            target: "test".into(),
            protocol: format!("{:?}", shared.target.protocol()),
            scenario: format!("{scenario:?}"),
            mode: "open loop".into(),
            cpus: 2,
            load_average_before: String::new(),
            load_average_after: String::new(),
        },
        elapsed,
    );
    assert!(report.total.count > 500, "{}", report.markdown());
    assert!(report.errors.is_empty(), "{}", report.markdown());
    if let Some(window) = hold_expiry {
        // Past the window plus a sweep or two: every hold of the run has had time to expire.
        tokio::time::sleep(window + Duration::from_secs(2)).await;
    }
    let summary = audit(&shared).await;
    assert_eq!(summary.accounts_checked, 24);
    assert!(summary.entries_checked > 0);
    assert!(
        summary.findings.is_empty(),
        "audit findings: {:#?}",
        summary.findings
    );
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_over_every_protocol_audits_clean() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    let grpc = format!("grpc://{}", node.grpc);
    let http = format!("http://{}", node.http);
    load((&grpc, "", false), "unary", Scenario::Mixed, None).await;
    load((&grpc, "", true), "stream", Scenario::Lifecycle, None).await;
    load((&http, "", false), "http", Scenario::Kids, None).await;
    // Card traffic as a network sends it; set-up, balance reads and the audit over HTTP.
    load(
        (&format!("iso8583://{}", node.iso8583), &http, false),
        "iso",
        Scenario::Mixed,
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_left_open_expire_within_a_short_run_and_the_audit_accounts_for_them() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start_with(
        dir.path(),
        &["--hold-expiry-secs", "2", "--sweep-every-secs", "1"],
    );
    let grpc = format!("grpc://{}", node.grpc);
    let summary = load(
        (&grpc, "", false),
        "expiry",
        Scenario::Lifecycle,
        Some(Duration::from_secs(2)),
    )
    .await;
    // The lifecycle scenario leaves about one hold in ten to expire.
    assert!(summary.holds_expired > 0, "{summary:?}");
}
