//! The leader of three `tandem serve` processes killed with SIGKILL under load: a new leader
//! is elected and serves; every acknowledged authorization survives exactly once; a request
//! in doubt, retried with its idempotency key on any node, gets the original answer, and no
//! key holds money twice; the new leader decides from everything committed before it led.

// Amounts are written as major_minor (100_00 is 100.00) on purpose.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use common::cluster::*;
use common::{ADMIN, Node};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Callers sending authorizations at once, each over the three nodes in turn.
const CALLERS: usize = 6;
/// Authorizations each caller sends: together more than the account's funds cover, so the
/// last ones are declined and a second hold for any key would show.
const PER_CALLER: usize = 30;
const DEPOSIT: i64 = 100_00;
const AMOUNT: i64 = 1_00;
/// How late the followers apply what they know committed.
const APPLY_LATE_MS: u64 = 200;
/// Approvals acknowledged before the leader is killed.
const KILL_AFTER_APPROVALS: usize = 25;

/// What a caller saw of one request the first time it sent it.
struct Sent {
    key: String,
    first: Result<(u16, Value), String>,
    took: Duration,
}

async fn send_all(nodes: &[&Node], caller: usize, approved: &AtomicUsize) -> Vec<Sent> {
    let mut sent = Vec::with_capacity(PER_CALLER);
    for n in 0..PER_CALLER {
        let key = format!("f-{caller}-{n}");
        let node = nodes[(caller + n) % nodes.len()];
        let started = Instant::now();
        let first = node
            .try_call(
                "POST",
                "/v1/authorizations",
                Some(ADMIN),
                Some(common::authorize_body(&key, "f-ana-card", AMOUNT)),
            )
            .await;
        if matches!(&first, Ok((200, body)) if body["status"] == "approved") {
            approved.fetch_add(1, Ordering::AcqRel);
        }
        sent.push(Sent {
            key,
            first,
            took: started.elapsed(),
        });
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_under_load_loses_nothing_acknowledged_and_doubles_nothing() {
    let mut members = Cluster::start(&["--fault-injection", "true"]);
    assert!(cluster(&["init"], members.node(1)).status.success());
    let old = leader_of(&members).await;
    members
        .node(old)
        .account("f", "joint", &[("ana", "owner")], Some(("EUR", DEPOSIT)))
        .await;
    let opened = members.node(old).balance("f").await;
    for node in members.running() {
        converges(node, "f", &opened).await;
    }
    // The followers apply late, as loaded ones may: whichever leads next has not yet applied
    // its predecessor's last commits when it is elected. Had it decided before applying them
    // it would approve money already spent, or hold a retried key twice.
    for follower in (1..=3).filter(|id| *id != old) {
        members.node(follower).slow_applies(APPLY_LATE_MS).await;
    }

    // The load, and the leader killed once enough of it is acknowledged.
    let approved = AtomicUsize::new(0);
    let pid = members.node(old).child.id().to_string();
    let (sent, killed_at) = {
        let nodes = members.running();
        let callers = (0..CALLERS).map(|caller| send_all(&nodes, caller, &approved));
        let killer = async {
            while approved.load(Ordering::Acquire) < KILL_AFTER_APPROVALS {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .expect("kill runs");
            assert!(killed.success());
            Instant::now()
        };
        let (sent, killed_at) = tokio::join!(futures_util::future::join_all(callers), killer);
        (sent.into_iter().flatten().collect::<Vec<_>>(), killed_at)
    };
    members.kill_member(old);
    let new = leader_of(&members).await;
    assert_ne!(new, old, "a new leader was elected");

    // Nothing hung: every request had an answer (or its connection failed) within the
    // request timeout.
    let slowest = sent.iter().map(|s| s.took).max().unwrap();
    assert!(
        slowest < Duration::from_secs(11),
        "a request took {slowest:?}"
    );
    let in_doubt = sent
        .iter()
        .filter(|s| !matches!(&s.first, Ok((200, _))))
        .count();
    eprintln!(
        "{} requests, {in_doubt} in doubt, slowest {slowest:?}, kill at {:?} after the first",
        sent.len(),
        killed_at.elapsed()
    );

    // Every key retried on the two survivors until answered: an acknowledged one gets its
    // original answer; one in doubt gets the decision made, or a new one, once.
    let survivors = members.running();
    let mut approvals = 0;
    for (i, request) in sent.iter().enumerate() {
        let node = survivors[i % survivors.len()];
        let deadline = Instant::now() + Duration::from_secs(30);
        let answer = loop {
            let body = common::authorize_body(&request.key, "f-ana-card", AMOUNT);
            match node
                .try_call("POST", "/v1/authorizations", Some(ADMIN), Some(body))
                .await
            {
                Ok((200, answer)) => break answer,
                Ok((503, problem)) => {
                    let code = problem["code"].as_str().unwrap_or_default();
                    assert!(
                        ["not_leader", "leader_timeout", "timeout"].contains(&code),
                        "only an election's refusals are retried: {problem}"
                    );
                }
                other => panic!("{}: {other:?}", request.key),
            }
            assert!(Instant::now() < deadline, "{} never answered", request.key);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Ok((200, first)) = &request.first {
            for field in [
                "status",
                "authorization_id",
                "approval_code",
                "response_code",
            ] {
                assert_eq!(
                    first[field], answer[field],
                    "{}: the original answer after failover",
                    request.key
                );
            }
        }
        if answer["status"] == "approved" {
            approvals += 1;
        }
    }
    assert_eq!(
        approvals,
        (DEPOSIT / AMOUNT) as usize,
        "the funds are spent exactly, each approval once"
    );

    // One hold per approval, nothing more, on every node, the restarted one too.
    let at_leader = members.node(new).balance("f").await;
    assert_eq!(
        at_leader["balances"][0],
        json!({"currency": "EUR", "ledger_minor": DEPOSIT, "held_minor": DEPOSIT, "available_minor": 0}),
        "{at_leader}"
    );
    members.start_member(old);
    for node in members.running() {
        converges(node, "f", &at_leader).await;
    }
    let leader = members.node(new);
    for node in members.running() {
        common::eventually("every member's state is the leader's", || async {
            let there = leader.get("/v1/cluster/digest").await;
            let here = node.get("/v1/cluster/digest").await;
            if there["applied_index"] != here["applied_index"] {
                return false;
            }
            assert_eq!(
                there["digest"], here["digest"],
                "{} at the same index {}",
                node.http, here["applied_index"]
            );
            true
        })
        .await;
    }
}

/// A member that has known no leader past an election says so: `/readyz` 503, an ISO 8583
/// echo 91, a write 503 with `Retry-After` (after waiting out what an election takes); once
/// a leader is elected again it serves, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_a_leader_says_so_until_one_is_elected() {
    use common::iso::{Link, message, text};

    let mut members = Cluster::start(&[]);
    assert!(cluster(&["init"], members.node(1)).status.success());
    let leader = leader_of(&members).await;
    let alone = (1..=3).find(|id| *id != leader).unwrap();
    members
        .node(leader)
        .account("l", "joint", &[("ana", "owner")], Some(("EUR", DEPOSIT)))
        .await;
    let opened = members.node(leader).balance("l").await;
    converges(members.node(alone), "l", &opened).await;
    let echo = message("0800", &[(7, "1206101500"), (11, "000001"), (70, "301")]);
    let mut link = Link::connect(&members.node(alone).iso8583).await;
    assert_eq!(text(&link.ask(&echo).await, 39), "00");

    for id in (1..=3).filter(|id| *id != alone) {
        members.kill_member(id);
    }
    let node = members.node(alone);
    common::eventually("readyz turns to 503", || async {
        node.try_call("GET", "/readyz", None, None).await
            == Ok((503, Value::String("no leader\n".into())))
    })
    .await;
    assert_eq!(text(&link.ask(&echo).await, 39), "91");
    let body = common::authorize_body("l-1", "l-ana-card", AMOUNT);
    let (status, headers, problem) = node
        .try_raw_with_headers(
            "POST",
            "/v1/authorizations",
            Some(ADMIN),
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, &problem["code"]),
        (503, &json!("not_leader")),
        "{problem}"
    );
    assert_eq!(headers.get("retry-after").unwrap(), "1");

    let back = (1..=3).find(|id| *id != alone).unwrap();
    members.start_member(back);
    leader_of(&members).await;
    let node = members.node(alone);
    common::eventually("readyz turns back to 200", || async {
        node.try_call("GET", "/readyz", None, None)
            .await
            .is_ok_and(|(code, _)| code == 200)
    })
    .await;
    assert_eq!(text(&link.ask(&echo).await, 39), "00");
    let (code, answer) = node.authorize(ADMIN, "l-1", "l-ana-card", AMOUNT).await;
    assert_eq!(
        (code, &answer["status"]),
        (200, &json!("approved")),
        "{answer}"
    );
}

/// The load tester over `targets` (comma separated; `stream` for the processor stream), with
/// a small lifecycle population provisioned: what the load-tester tests below run.
async fn provisioned(
    targets: &str,
    stream: bool,
    run_id: &str,
    seed: u64,
) -> Arc<tandem_loadtest::run::RunState> {
    use tandem_loadtest::scenario::{Population, Scenario, Traffic};
    let nodes = tandem_loadtest::nodes::Nodes::connect(targets, "", ADMIN, stream, 2)
        .await
        .unwrap();
    let population = Population {
        run_id: run_id.into(),
        accounts: 16,
        members_per_account: 2,
        kid_every: 4,
        currencies: vec!["EUR".into()],
        deposit_minor: 1_000_000,
        kid_deposit_minor: 20_000,
    };
    tandem_loadtest::provision::provision(&nodes, &population, 8)
        .await
        .unwrap();
    Arc::new(tandem_loadtest::run::RunState {
        target: Arc::new(nodes),
        traffic: std::sync::Mutex::new(Traffic::new(Scenario::Lifecycle, population.clone(), seed)),
        recorder: tandem_loadtest::report::Recorder::default(),
        ledger: std::sync::Mutex::new(tandem_loadtest::provision::ledger_of_deposits(&population)),
        population,
        watchers: None,
    })
}

/// Five seconds of open-loop load at `rate` per second.
fn five_seconds_at(rate: f64, seed: u64) -> tandem_loadtest::run::Load {
    tandem_loadtest::run::Load {
        rate,
        duration: Duration::from_secs(5),
        closed_loop: None,
        outstanding_max: 10_000,
        seed,
        quiet: true,
    }
}

/// The run's report, as the load tester would write it.
fn report_of(
    shared: &tandem_loadtest::run::RunState,
    target: &str,
    elapsed: Duration,
) -> tandem_loadtest::report::Report {
    shared.recorder.report(
        tandem_loadtest::report::RunContext {
            command_line: "test".into(),
            version: "test".into(),
            target: target.into(),
            protocol: format!("{:?}", shared.target.protocol()),
            scenario: "lifecycle".into(),
            mode: "open loop".into(),
            cpus: 2,
            load_average_before: String::new(),
            load_average_after: String::new(),
        },
        elapsed,
    )
}

/// The load tester as a cluster client: callers spread over the three nodes, the leader
/// killed with SIGKILL mid-run, every request answered (retried on another node under its
/// key where the first answer was lost), and the money audit over the cluster clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tester_rides_out_a_leader_kill_and_the_cluster_audits_clean() {
    use tandem_loadtest::run::{audit, run};

    let mut members = Cluster::start(&[]);
    assert!(cluster(&["init"], members.node(1)).status.success());
    let old = leader_of(&members).await;
    let targets = members.urls("grpc");
    let mut shared = provisioned(&targets, false, "failover", 3).await;
    // Spend apps' live balances: SSE streams over the three nodes, some on the leader.
    let http = members.urls("http");
    let accounts: Vec<String> = (0..shared.population.accounts)
        .map(|i| shared.population.account_id(i))
        .collect();
    let watchers =
        Arc::new(tandem_loadtest::watch::Watchers::new(6, &accounts, &http, ADMIN).unwrap());
    Arc::get_mut(&mut shared).unwrap().watchers = Some(watchers.clone());
    let (stop_watching, watching) = tokio::sync::watch::channel(false);
    let holders: Vec<_> = (0..6)
        .map(|i| {
            let (watchers, stop) = (watchers.clone(), watching.clone());
            tokio::spawn(async move { watchers.hold(i, stop).await })
        })
        .collect();
    let nodes = shared.target.clone();
    let pid = members.node(old).child.id().to_string();
    let killer = async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let at = Instant::now();
        assert!(
            std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        nodes.killed(at, 1.5, format!("node {old}"));
    };
    let load = five_seconds_at(300.0, 9);
    let (elapsed, ()) = tokio::join!(run(shared.clone(), &load), killer);
    members.kill_member(old);
    let mut report = report_of(&shared, &targets, elapsed);
    report.cluster = nodes.counts();
    let counts = report.cluster.clone().unwrap();
    eprintln!("{}", report.markdown());
    assert!(report.errors.is_empty(), "{}", report.markdown());
    assert_eq!(counts.gave_up, 0);
    assert!(
        counts.retried > 0,
        "requests met the dead leader and were retried"
    );
    assert!(
        counts.kills[0].first_approval_ms.is_some(),
        "approvals resumed after the kill"
    );
    let summary = audit(&shared).await;
    assert!(summary.entries_checked > 0);
    assert!(summary.findings.is_empty(), "{:#?}", summary.findings);

    // The watchers on the dead node resumed on another with Last-Event-ID, and every change
    // answered on a watched account reached its watchers.
    let until = Instant::now() + Duration::from_secs(5);
    while watchers.unmatched() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_watching.send(true).unwrap();
    for holder in holders {
        holder.await.unwrap();
    }
    let watched = watchers.counts();
    eprintln!("{watched:?}");
    assert!(watched.matched > 0, "{watched:?}");
    assert_eq!(watched.missed, 0, "{watched:?}");
    assert!(watched.reconnects >= 1, "{watched:?}");

    // The survivor with the greater log called the election as soon as the dead leader's
    // lease allowed, rather than after openraft's random timeout.
    let mut prompt = 0.0;
    for node in members.running() {
        prompt += metric(&metrics_of(node).await, "tandem_prompt_elections_total");
    }
    assert!(prompt >= 1.0, "no prompt election was called");
}

/// A follower killed with SIGKILL under load and started again while the load goes on: the
/// cluster serves throughout (no request lost), the load tester's streams to it are opened
/// again once it is back, the follower catches up, and all three hold the same state, digest
/// for digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_and_restarted_under_load_catches_up() {
    use tandem_loadtest::run::{audit, run};

    let mut members = Cluster::start(&["--checkpoint-ms", "200", "--log-kept-entries", "50"]);
    assert!(cluster(&["init"], members.node(1)).status.success());
    let leader = leader_of(&members).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // Processor streams to all three nodes: the ones to the killed follower are opened again
    // once it is back.
    let target = members.urls("grpc");
    let shared = provisioned(&target, true, "follower", 4).await;
    let drill = async {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        members.kill_member(follower);
        // Down long enough for the leader to purge past it (a snapshot), then back while
        // the load goes on.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        tokio::task::block_in_place(|| members.start_member(follower));
    };
    let load = five_seconds_at(400.0, 4);
    let (elapsed, ()) = tokio::join!(run(shared.clone(), &load), drill);
    let report = report_of(&shared, &target, elapsed);
    assert!(report.errors.is_empty(), "{}", report.markdown());
    assert!(report.approved.count > 500, "{}", report.markdown());
    let summary = audit(&shared).await;
    assert!(summary.findings.is_empty(), "{:#?}", summary.findings);
    let there = members.node(leader);
    let here = members.node(follower);
    // Counted since its restart: the load reached it again over its reopened streams.
    let forwarded = metric(
        &metrics_of(here).await,
        r#"tandem_forwarded_requests_total{operation="authorize",result="answered"}"#,
    );
    assert!(
        forwarded > 0.0,
        "the restarted follower got no traffic back"
    );
    common::eventually(
        "the restarted follower holds the leader's state",
        || async {
            let a = there.get("/v1/cluster/digest").await;
            let b = here.get("/v1/cluster/digest").await;
            if a["applied_index"] != b["applied_index"] {
                return false;
            }
            assert_eq!(a["digest"], b["digest"], "at the same index");
            true
        },
    )
    .await;
}
