//! Three `tandem serve` processes on loopback, formed into one cluster by `tandem cluster
//! init`: one leader, its writes on every node, status on every node, the peer protocol
//! closed to API keys, and clear refusals of bad cluster settings.

// Amounts are written as major_minor (100_00 is 100.00) on purpose.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use common::cluster::*;
use common::{ADMIN, Node};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_form_one_cluster_and_every_node_reads_the_leaders_writes() {
    let mut members = Cluster::start(&[]);
    let ports = members.ports.clone();
    let nodes = members.take_nodes();

    let formed = cluster(&["init"], &nodes[1]);
    assert!(
        formed.status.success(),
        "{}",
        String::from_utf8_lossy(&formed.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&formed.stdout).unwrap(),
        json!({"formed": true})
    );
    let leader_id = leader(&nodes).await;
    let again = cluster(&["init"], &nodes[2]);
    assert!(again.status.success(), "init again exits 0");
    assert_eq!(
        serde_json::from_slice::<Value>(&again.stdout).unwrap(),
        json!({"formed": false}),
        "a no-op on any member"
    );

    let leader = &nodes[(leader_id - 1) as usize];
    leader
        .account("c", "joint", &[("ana", "owner")], Some(("EUR", 100_00)))
        .await;
    let (status_code, approved) = leader.authorize(ADMIN, "c-1", "c-ana-card", 12_00).await;
    assert_eq!(
        (status_code, &approved["status"]),
        (200, &json!("approved"))
    );
    let expected = leader.balance("c").await;
    for node in &nodes {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (code, balance) = node
                .call("GET", "/v1/accounts/c/balance", Some(ADMIN), None)
                .await;
            if code == 200 && balance["available"] == expected["available"] {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{code} {balance}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Every read carries the account's seq and the node's commit index; on every node they
    // converge to the leader's seq.
    let at_leader = leader.get("/v1/accounts/c/holds").await;
    assert!(at_leader["seq"].as_u64().unwrap() > 0, "{at_leader}");
    assert!(
        at_leader["commit_index"].as_u64().unwrap() > 0,
        "{at_leader}"
    );
    assert_eq!(at_leader["seq"], expected["seq"]);
    // A linearizable read on a follower sees a write acknowledged a moment before at the
    // leader, every time.
    let follower = nodes.iter().find(|n| !std::ptr::eq(*n, leader)).unwrap();
    for round in 0..10 {
        let key = format!("lin-{round}");
        let (code, approved) = leader.authorize(ADMIN, &key, "c-ana-card", 1_00).await;
        assert_eq!(code, 200, "{approved}");
        let written = approved["balance"].clone();
        assert!(written["available_minor"].is_i64(), "{approved}");
        let seen = follower
            .get("/v1/accounts/c/balance?consistency=linearizable")
            .await;
        let available = seen["balances"][0]["available_minor"].clone();
        assert_eq!(
            available, written["available_minor"],
            "round {round}: {seen}"
        );
        assert!(seen["commit_index"].as_u64().unwrap() > 0);
    }
    let (code, body) = follower
        .call(
            "GET",
            "/v1/accounts/c/balance?consistency=eventually",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("invalid_argument")),
        "{body}"
    );

    // Status from every node: the same leader and members; the CLI prints the same shape.
    let printed = cluster(&["status"], &nodes[0]);
    assert!(printed.status.success());
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed["node_id"], 1);
    assert_eq!(printed["leader_id"], leader_id);
    let members = printed["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for (i, member) in members.iter().enumerate() {
        assert_eq!(member["node_id"], i as u64 + 1);
        assert_eq!(member["address"], format!("127.0.0.1:{}", ports[i]));
    }
    let at_leader = status(leader).await;
    assert_eq!(at_leader["role"], "leader");
    assert!(at_leader["commit_index"].as_u64().unwrap() > 0);
    for member in at_leader["members"].as_array().unwrap() {
        assert!(member["lag_entries"].is_u64(), "{member}");
    }

    // The cluster's metrics: term, leadership, commit index, each follower's lag.
    let (_, metrics) = leader.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    for name in [
        "tandem_raft_term",
        "tandem_raft_is_leader 1",
        "tandem_raft_leader_changes_total",
        "tandem_raft_commit_index",
        "tandem_follower_lag_entries{node_id=\"2\"}",
        "tandem_follower_lag_ms{node_id=\"3\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // The peer protocol on the node's gRPC listener takes no API key, not even an admin's;
    // the forwarding RPC is the peer protocol's too.
    let peer = format!("http://127.0.0.1:{}", ports[0]);
    let mut client = tandem_proto::raft::raft_client::RaftClient::connect(peer.clone())
        .await
        .unwrap();
    let refused = client.vote(with_admin_key()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let mut forward = tandem_proto::raft::forward_client::ForwardClient::connect(peer)
        .await
        .unwrap();
    let refused = forward.call(with_admin_key()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    writes_through_every_node_land_once(&nodes, leader_id).await;
    a_follower_streams_the_leaders_changes(&nodes, leader_id).await;

    for node in nodes {
        assert!(node.stop().success());
    }
}

/// A peer-protocol message that carries the admin's API key instead of the peer token.
fn with_admin_key() -> tonic::Request<tandem_proto::raft::Message> {
    let mut request = tonic::Request::new(tandem_proto::raft::Message { body: vec![0] });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    request
}

/// A spend app's live balance stream on a follower (which runs no actors) gets every change
/// decided at the leader, from the records the follower applies, in order.
async fn a_follower_streams_the_leaders_changes(nodes: &[Node], leader_id: u64) {
    let leader = &nodes[(leader_id - 1) as usize];
    let follower = nodes
        .iter()
        .enumerate()
        .find(|(i, _)| *i as u64 + 1 != leader_id)
        .map(|(_, node)| node)
        .unwrap();
    let (code, mut body) = follower
        .sse("/v1/accounts/c/balance/stream", ADMIN, None)
        .await;
    assert_eq!(code, 200);
    let mut buffer = String::new();
    let (first, _) = common::next_event(&mut body, &mut buffer).await;
    let mut last = first;
    for round in 0..3 {
        let key = format!("watched-{round}");
        let (code, approved) = leader.authorize(ADMIN, &key, "c-ana-card", 50).await;
        assert_eq!(code, 200, "{approved}");
        let written = approved["balance"]["available_minor"].clone();
        loop {
            let (id, event) = common::next_event(&mut body, &mut buffer).await;
            assert!(id > last, "seq only increases: {id} after {last}");
            last = id;
            if event["balances"][0]["available_minor"] == written {
                break;
            }
        }
    }
}

/// Any node takes any write: each node opens an account and authorizes on it (followers
/// forward to the leader), a retry of the same key through another node is the same answer
/// and no second hold, a follower's gRPC unary authorization is decided at the leader, and
/// every node converges to the same balance and seq.
async fn writes_through_every_node_land_once(nodes: &[Node], leader_id: u64) {
    let (_, forwarded_before) = nodes[0].call("GET", "/metrics", None, None).await;
    for (i, node) in nodes.iter().enumerate() {
        let account = format!("w{i}");
        node.account(&account, "joint", &[("ana", "owner")], Some(("EUR", 50_00)))
            .await;
        let card = format!("{account}-ana-card");
        let (code, first) = node
            .authorize(ADMIN, &format!("{account}-a"), &card, 7_00)
            .await;
        assert_eq!(
            (code, &first["status"]),
            (200, &json!("approved")),
            "{first}"
        );
        // The same request through the next node: the original answer, once.
        let other = &nodes[(i + 1) % nodes.len()];
        let (code, again) = other
            .authorize(ADMIN, &format!("{account}-a"), &card, 7_00)
            .await;
        assert_eq!(code, 200, "{again}");
        assert_eq!(again["authorization_id"], first["authorization_id"]);
        let expected = nodes[(leader_id - 1) as usize].balance(&account).await;
        assert_eq!(
            expected["balances"][0]["available_minor"],
            json!(43_00),
            "one hold of 7.00: {expected}"
        );
        for reader in nodes {
            common::eventually("every node reads the same balance and seq", || async {
                let seen = reader.balance(&account).await;
                seen["balances"] == expected["balances"] && seen["seq"] == expected["seq"]
            })
            .await;
        }
    }
    // gRPC unary through a follower.
    let follower = nodes
        .iter()
        .enumerate()
        .find(|(i, _)| *i as u64 + 1 != leader_id)
        .map(|(_, node)| node)
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", follower.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tandem_proto::v1::authorizations_client::AuthorizationsClient::new(channel);
    let mut request = tonic::Request::new(tandem_proto::v1::AuthorizeRequest {
        idempotency_key: "w0-grpc".into(),
        card_id: "w0-ana-card".into(),
        amount_minor: 3_00,
        currency: "EUR".into(),
        mcc: "5812".into(),
        channel: "contactless".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    let answer = client.authorize(request).await.unwrap().into_inner();
    assert_eq!(answer.status, "approved", "{answer:?}");
    // A card no node knows is unknown everywhere (14 to a network), after asking the leader.
    let (code, unknown) = follower
        .authorize(ADMIN, "nobody-1", "no-such-card", 1_00)
        .await;
    assert_eq!(code, 200, "{unknown}");
    assert_eq!(unknown["status"], json!("declined"), "{unknown}");
    // Followers counted what they forwarded.
    let (_, metrics) = follower.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(
            "tandem_forwarded_requests_total{operation=\"authorize\",result=\"answered\"}"
        ),
        "{forwarded_before}"
    );
}

/// Bad cluster settings are refused at start, each saying what is wrong, and nothing is
/// written to the data directory.
#[test]
fn bad_cluster_settings_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let short_key = dir.path().join("short.key");
    std::fs::write(&short_key, "abcd\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&short_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let open_key = dir.path().join("open.key");
    std::fs::copy(&key, &open_key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let data = dir.path().join("data");
    let cases: [(&str, &Path, &str); 5] = [
        (
            "2=127.0.0.1:7002,3=127.0.0.1:7003",
            &key,
            "does not list this node",
        ),
        ("1=127.0.0.1,2=127.0.0.1:7002", &key, "HOST:PORT"),
        ("1=127.0.0.1:7001,x=127.0.0.1:7002", &key, "whole number"),
        ("1=127.0.0.1:7001", &short_key, "64 hex characters"),
        ("1=127.0.0.1:7001", &open_key, "0600"),
    ];
    for (peers, key, expected) in cases {
        let output = member_command(&data, 1, 0, peers, key)
            .output()
            .expect("tandem runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{peers}: started");
        assert!(stderr.contains(expected), "{peers}: {stderr}");
        assert!(!data.exists(), "{peers}: nothing written");
    }
    let no_key = Command::new(common::binary())
        .args(["serve", "--node-id", "1", "--peers", "1=127.0.0.1:7001"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("--pan-key-file"));
    // Wrong usage of `tandem cluster` exits 2; a node that cannot be reached, 3.
    let usage = Command::new(common::binary())
        .args(["cluster", "init", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let unreachable = Command::new(common::binary())
        .args([
            "cluster",
            "status",
            "--target",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--token", ADMIN])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
}

/// `scripts/cluster.sh up` brings three nodes up and forms them, `status` prints one leader
/// and three members, `down` stops them all.
#[test]
fn the_cluster_script_brings_three_nodes_up_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster.sh");

    // 30 ports from a base below the ephemeral range other tests' listeners draw from.
    let base = 10_000 + (std::process::id() % 200) * 100;
    let run = |action: &str| {
        Command::new("bash")
            .arg(script)
            .arg(action)
            .env("CLUSTER_DIR", dir.path())
            .env("PORT_BASE", base.to_string())
            .env("TANDEM_BIN", common::binary())
            .output()
            .expect("the script runs")
    };
    let up = run("up");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let printed = String::from_utf8_lossy(&up.stdout);
    assert!(printed.contains("node 3: grpc 127.0.0.1:"), "{printed}");
    assert!(printed.contains("admin token: "), "{printed}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = run("status");
        if status.status.success() {
            let value: Value = serde_json::from_slice(&status.stdout).unwrap();
            if value["leader_id"].is_u64() {
                break value;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    let down = run("down");
    assert!(down.status.success());
    for n in 1..=3 {
        assert!(!dir.path().join(format!("node{n}.pid")).exists());
    }
    let after = run("status");
    assert_eq!(after.status.code(), Some(3), "nothing answers any more");
}

/// A member's ISO 8583 link is answered with the leader's decisions (authorization, reversal
/// matched by DE 90, 0800, 14 for a card nobody knows); a member stopped and written past
/// catches up from the log, one stopped past a purge by a snapshot (and then holds the
/// leader's state, digest for digest); all three stopped and started again keep their state,
/// elect a leader and take writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_restart_and_catch_up_by_log_and_by_snapshot() {
    use common::iso::{Link, PAN, as_mti, authorization, message, original_data, text, with};

    let mut members = Cluster::start(&["--checkpoint-ms", "100", "--log-kept-entries", "8"]);
    assert!(cluster(&["init"], members.node(1)).status.success());
    let leader_id = leader_of(&members).await;
    let follower_id = (1..=3).find(|id| *id != leader_id).unwrap();

    // Card traffic on a follower's ISO 8583 link: set up through the follower too.
    let follower = members.node(follower_id);
    common::iso::setup(follower).await;
    let mut link = Link::connect(&follower.iso8583).await;
    let echo = link
        .ask(&message(
            "0800",
            &[(7, "1129101500"), (11, "000001"), (70, "301")],
        ))
        .await;
    assert_eq!((echo.mti.as_str(), text(&echo, 39)), ("0810", "00"));
    let first = authorization(PAN, "000101", "RRN000000101", 30_00);
    let approved = link.ask(&first).await;
    assert_eq!((approved.mti.as_str(), text(&approved, 39)), ("0110", "00"));
    let at_leader = members.node(leader_id).balance("j").await;
    assert_eq!(at_leader["balances"][0]["available_minor"], json!(70_00));
    let reversal = link
        .ask(&with(
            as_mti(&first, "0400"),
            &[(11, "000102"), (90, &original_data(&first))],
        ))
        .await;
    assert_eq!((reversal.mti.as_str(), text(&reversal, 39)), ("0410", "00"));
    let unknown = link
        .ask(&authorization(
            "4999999999999999",
            "000103",
            "RRN000000103",
            1_00,
        ))
        .await;
    assert_eq!(text(&unknown, 39), "14");
    let at_leader = members.node(leader_id).balance("j").await;
    assert_eq!(
        at_leader["balances"][0]["available_minor"],
        json!(100_00),
        "the reversal released the hold: {at_leader}"
    );
    drop(link);

    // A member stopped and written past (fewer entries than the log keeps): from the log.
    let lagging = (1..=3).rev().find(|id| *id != leader_id).unwrap();
    members.stop_member(lagging);
    for i in 0..2 {
        let (code, body) = members
            .node(leader_id)
            .authorize(ADMIN, &format!("past-{i}"), "j-plastic", 1_00)
            .await;
        assert_eq!(code, 200, "{body}");
    }
    members.start_member(lagging);
    let expected = members.node(leader_id).balance("j").await;
    converges(members.node(lagging), "j", &expected).await;
    let page = metrics_of(members.node(lagging)).await;
    assert_eq!(
        metric(&page, "tandem_snapshot_installs_total"),
        0.0,
        "caught up from the log, not by a snapshot"
    );

    // Stopped past a purge: the leader's log no longer holds what it misses.
    let applied = status(members.node(lagging)).await["applied_index"]
        .as_u64()
        .unwrap();
    members.stop_member(lagging);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut written = 0;
    while metric(
        &metrics_of(members.node(leader_id)).await,
        "tandem_raft_purged_index",
    ) <= applied as f64
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader never purged"
        );
        let (code, body) = members
            .node(leader_id)
            .authorize(ADMIN, &format!("purged-{written}"), "j-plastic", 10)
            .await;
        assert_eq!(code, 200, "{body}");
        written += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    members.start_member(lagging);
    common::eventually("the member installed a snapshot", || async {
        metric(
            &metrics_of(members.node(lagging)).await,
            "tandem_snapshot_installs_total",
        ) >= 1.0
    })
    .await;
    let expected = members.node(leader_id).balance("j").await;
    converges(members.node(lagging), "j", &expected).await;
    common::eventually("the member's state is the leader's", || async {
        let there = members.node(leader_id).get("/v1/cluster/digest").await;
        let here = members.node(lagging).get("/v1/cluster/digest").await;
        if there["applied_index"] != here["applied_index"] {
            return false;
        }
        assert_eq!(there["digest"], here["digest"], "at the same index");
        true
    })
    .await;

    // All three stopped and started again.
    for id in 1..=3 {
        members.stop_member(id);
    }
    for id in 1..=3 {
        members.start_member(id);
    }
    leader_of(&members).await;
    for node in members.running() {
        converges(node, "j", &expected).await;
    }
    for (id, node) in members.running().into_iter().enumerate() {
        let (code, body) = node
            .authorize(ADMIN, &format!("after-{id}"), "j-plastic", 1_00)
            .await;
        assert_eq!((code, &body["status"]), (200, &json!("approved")), "{body}");
    }
    for id in 1..=3 {
        members.stop_member(id);
    }
}

/// A member whose data directory is lost refuses to start under its id once the cluster
/// counts it (it would vote with amnesia), saying what to do, and writes nothing; the two
/// others keep taking writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_an_empty_data_directory_refuses_to_start() {
    let mut members = Cluster::start(&[]);
    assert!(cluster(&["init"], members.node(2)).status.success());
    let leader_id = leader_of(&members).await;
    let wiped = (1..=3).find(|id| *id != leader_id).unwrap();
    members.stop_member(wiped);
    let data = members.dir.path().join(format!("node{wiped}"));
    std::fs::remove_dir_all(&data).unwrap();

    let i = (wiped - 1) as usize;
    let mut child = member_command(&data, wiped, members.ports[i], &members.peers, &members.key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a member with an empty data directory started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!exited.success());
    assert!(stderr.contains("amnesia"), "{stderr}");
    assert!(!data.exists(), "nothing written: {stderr}");

    let leader = members.node(leader_id);
    leader
        .account("a", "joint", &[("ana", "owner")], Some(("EUR", 10_00)))
        .await;
    let (code, body) = leader.authorize(ADMIN, "a-1", "a-ana-card", 1_00).await;
    assert_eq!((code, &body["status"]), (200, &json!("approved")), "{body}");
    for id in (1..=3).filter(|id| *id != wiped) {
        members.stop_member(id);
    }
}
