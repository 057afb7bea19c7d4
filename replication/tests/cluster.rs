//! Three engines in one process, each behind the peer protocol on its own loopback listener:
//! they elect one leader, replicate its writes to all, refuse callers that are not members,
//! and bring a follower that missed purged entries back by a snapshot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tandem_proto::raft::raft_client::RaftClient;
use tandem_replication::{GrpcNetwork, PEER_TOKEN_HEADER, RaftService};
use tandem_storage::{CommitError, Engine, EngineConfig, Setting};

const TOKEN: &str = "peer-token-of-the-test-cluster";

struct Node {
    engine: Engine,
    server: tokio::task::JoinHandle<()>,
}

/// Opens member `id` on `dir` and serves its peer protocol on `listener`.
async fn member(dir: &std::path::Path, id: u64, listener: tokio::net::TcpListener) -> Node {
    let config = EngineConfig {
        node_id: id,
        log_kept_after_checkpoint: 0,
        ..EngineConfig::new(dir)
    };
    let network = GrpcNetwork::new(id, TOKEN).unwrap();
    let engine = Engine::open_member(config, network).await.unwrap();
    let service = RaftService::new(engine.raft().clone(), TOKEN.to_owned()).into_server();
    let router = tonic::service::Routes::new(service).into_axum_router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Node { engine, server }
}

/// Members 1, 2, 3 on `dirs`, each on a fresh loopback listener: their addresses and nodes.
async fn members(dirs: &[tempfile::TempDir]) -> (BTreeMap<u64, String>, Vec<Option<Node>>) {
    let mut addresses = BTreeMap::new();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let id = i as u64 + 1;
        let (listener, address) = listener().await;
        addresses.insert(id, address.to_string());
        nodes.push(Some(member(dir.path(), id, listener).await));
    }
    (addresses, nodes)
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

fn setting(name: &str, value: &str) -> Setting {
    Setting {
        name: name.to_owned(),
        value: Some(value.as_bytes().to_vec()),
    }
}

fn value(engine: &Engine, name: &str) -> Option<String> {
    let view = engine.reader().settings().current();
    view.get(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn leader_of(nodes: &[Option<Node>]) -> u64 {
    let mut leader = None;
    eventually("a leader every live node knows", || {
        let known: Vec<Option<u64>> = nodes
            .iter()
            .flatten()
            .map(|n| n.engine.raft().metrics().borrow().current_leader)
            .collect();
        leader = known[0];
        leader.is_some() && known.iter().all(|k| *k == leader)
    })
    .await;
    leader.unwrap()
}

fn node(nodes: &[Option<Node>], id: u64) -> &Engine {
    &nodes[(id - 1) as usize].as_ref().expect("running").engine
}

/// Waits until `follower` has applied what `leader` has, then compares their states' digests.
async fn holds_the_leaders_state(nodes: &[Option<Node>], follower: u64, leader: u64, when: &str) {
    let applied = node(nodes, leader).raft().metrics().borrow().last_applied;
    eventually(&format!("the same index applied {when}"), || {
        node(nodes, follower).raft().metrics().borrow().last_applied == applied
    })
    .await;
    assert_eq!(
        node(nodes, follower).reader().digest().unwrap(),
        node(nodes, leader).reader().digest().unwrap(),
        "the follower's state {when} is the leader's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_one_leader_replicate_and_catch_up_by_snapshot() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (addresses, mut nodes) = members(&dirs).await;
    assert!(node(&nodes, 1).initialize(addresses.clone()).await.unwrap());
    let leader = leader_of(&nodes).await;
    assert!(
        !node(&nodes, 2).initialize(addresses.clone()).await.unwrap(),
        "a formed cluster is formed once; again, on any member, is a no-op"
    );

    // A write at the leader is answered once a majority holds it, and reaches every member.
    node(&nodes, leader)
        .submit_settings(vec![setting("k", "one")])
        .await
        .unwrap()
        .unwrap();
    for id in 1..=3 {
        eventually("the write on every member", || {
            value(node(&nodes, id), "k").as_deref() == Some("one")
        })
        .await;
    }
    // A follower refuses writes, naming the leader: retryable, not a failure.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let refused = node(&nodes, follower)
        .submit_settings(vec![setting("k", "two")])
        .await
        .unwrap();
    assert_eq!(
        refused,
        Err(CommitError::NotLeader {
            leader: Some(leader)
        })
    );

    // A linearizable read on a follower sees a write the leader acknowledged a moment before:
    // the follower asks the leader for its read index and applies up to it first.
    for round in 0..20 {
        let name = format!("fresh{round}");
        let index = node(&nodes, leader)
            .submit_settings(vec![setting(&name, "acknowledged")])
            .await
            .unwrap()
            .unwrap();
        let read = node(&nodes, follower).linearizable_read().await.unwrap();
        assert!(
            read >= index,
            "read index {read} before the write at {index}"
        );
        assert_eq!(
            value(node(&nodes, follower), &name).as_deref(),
            Some("acknowledged"),
            "round {round}"
        );
    }
    assert!(node(&nodes, leader).linearizable_read().await.is_ok());

    // A follower stops; the others write on and purge their log behind a checkpoint.
    let lagging = (1..=3).rev().find(|id| *id != leader).unwrap();
    let stopped = nodes[(lagging - 1) as usize].take().unwrap();
    let held_when_stopped = stopped
        .engine
        .raft()
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);
    stopped.server.abort();
    stopped.engine.shutdown().await;
    for i in 0..50 {
        node(&nodes, leader)
            .submit_settings(vec![setting(&format!("n{i}"), &i.to_string())])
            .await
            .unwrap()
            .unwrap();
    }
    // Values large enough that the snapshot is sent in several chunks.
    for i in 0..3 {
        node(&nodes, leader)
            .submit_settings(vec![setting(&format!("big{i}"), &"x".repeat(700_000))])
            .await
            .unwrap()
            .unwrap();
    }
    // The leader purges only what no replication has in flight: the stopped member's retries
    // may hold it a moment, so checkpoint until it has purged past all the member holds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let purged = loop {
        node(&nodes, leader).checkpoint().await.unwrap();
        let purged = node(&nodes, leader)
            .raft()
            .metrics()
            .borrow()
            .purged
            .map_or(0, |p| p.index);
        if purged > held_when_stopped {
            break purged;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader never purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Back on its address, it is sent a snapshot, and ends up holding what the leader holds.
    let address: SocketAddr = addresses[&lagging].parse().unwrap();
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    nodes[(lagging - 1) as usize] =
        Some(member(dirs[(lagging - 1) as usize].path(), lagging, listener).await);
    eventually("the snapshot installed", || {
        value(node(&nodes, lagging), "n49").as_deref() == Some("49")
    })
    .await;
    // Its metrics tell of the snapshot once openraft has finished installing it, a moment
    // after the state is readable.
    eventually("caught up by a snapshot, not the purged log", || {
        node(&nodes, lagging)
            .raft()
            .metrics()
            .borrow()
            .snapshot
            .is_some_and(|s| s.index >= purged)
    })
    .await;
    holds_the_leaders_state(&nodes, lagging, leader, "after the install").await;
    // It was installed into a fresh checkpoint directory, switched to by the pointer file;
    // the spool and the replaced directory are gone.
    let data_dir = dirs[(lagging - 1) as usize].path();
    assert_eq!(
        std::fs::read_to_string(data_dir.join("checkpoint.current")).unwrap(),
        "checkpoint-1\n"
    );
    eventually("the replaced checkpoint directory removed", || {
        !data_dir.join("checkpoint").exists()
    })
    .await;
    let left: Vec<String> = std::fs::read_dir(data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("snapshot."))
        .collect();
    assert!(left.is_empty(), "spool files left: {left:?}");
    // Restarted, it opens the installed checkpoint and still holds the leader's state.
    let restarted = nodes[(lagging - 1) as usize].take().unwrap();
    restarted.server.abort();
    restarted.engine.shutdown().await;
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    nodes[(lagging - 1) as usize] = Some(member(data_dir, lagging, listener).await);
    holds_the_leaders_state(&nodes, lagging, leader, "after a restart").await;
    for n in nodes.into_iter().flatten() {
        n.server.abort();
        n.engine.shutdown().await;
    }
}

/// Only members, with the cluster's peer token, may call the peer protocol: no token, a
/// wrong one, or an API key as a bearer token are each refused, and nothing reaches Raft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_protocol_refuses_callers_without_the_cluster_token() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, address) = listener().await;
    let node = member(dir.path(), 1, listener).await;
    let mut client = RaftClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let vote = tandem_proto::raft::Message {
        body: postcard::to_allocvec(&openraft::raft::VoteRequest::<u64>::new(
            openraft::Vote::new(5, 2),
            None,
        ))
        .unwrap(),
    };
    let attempts: [(&str, &str); 3] = [
        ("x-none", "nothing"),
        (PEER_TOKEN_HEADER, "not-the-cluster-token"),
        ("authorization", "Bearer tdm_an_admin_api_key"),
    ];
    for (header, value) in attempts {
        let mut request = tonic::Request::new(vote.clone());
        request
            .metadata_mut()
            .insert(header, value.parse().unwrap());
        let status = client.vote(request).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{header}: {status:?}"
        );
    }
    let vote_now = node.engine.raft().metrics().borrow().vote;
    assert_eq!(vote_now.leader_id().term, 0, "no vote was granted or seen");
    // With the token, the same request is answered.
    let mut request = tonic::Request::new(vote);
    request
        .metadata_mut()
        .insert(PEER_TOKEN_HEADER, TOKEN.parse().unwrap());
    client.vote(request).await.expect("a member is answered");
    node.server.abort();
    node.engine.shutdown().await;
}

/// A single node's data directory becomes node 1 of a new cluster: forming it adds the
/// others, who receive everything it held; forming again, on any member, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_nodes_data_becomes_node_1_of_a_new_cluster() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let single = Engine::open(EngineConfig::new(dirs[0].path()))
        .await
        .unwrap();
    for i in 0..20 {
        single
            .submit_settings(vec![setting(&format!("old{i}"), "kept")])
            .await
            .unwrap()
            .unwrap();
    }
    single.checkpoint().await.unwrap();
    single
        .submit_settings(vec![setting("tail", "in the log only")])
        .await
        .unwrap()
        .unwrap();
    single.shutdown().await;

    let (addresses, nodes) = members(&dirs).await;
    assert_eq!(
        node(&nodes, 1).form(addresses.clone()).await.unwrap(),
        tandem_storage::Formed::Now
    );
    assert_eq!(leader_of(&nodes).await, 1, "node 1 kept leading");
    for id in 2..=3 {
        assert_eq!(
            node(&nodes, id).form(addresses.clone()).await.unwrap(),
            tandem_storage::Formed::Already
        );
    }
    node(&nodes, 1)
        .submit_settings(vec![setting("new", "after forming")])
        .await
        .unwrap()
        .unwrap();
    for id in 2..=3 {
        eventually("everything on the new members", || {
            let engine = node(&nodes, id);
            value(engine, "old0").as_deref() == Some("kept")
                && value(engine, "tail").is_some()
                && value(engine, "new").is_some()
        })
        .await;
    }
    let status = node(&nodes, 1).status();
    assert_eq!(status.role, tandem_storage::Role::Leader);
    assert_eq!(status.leader_id, Some(1));
    let voters: Vec<(u64, &str)> = status
        .members
        .iter()
        .map(|m| (m.node_id, m.role.as_str()))
        .collect();
    assert_eq!(
        voters,
        vec![(1, "leader"), (2, "follower"), (3, "follower")]
    );
    assert_eq!(
        status.members[0].address, addresses[&1],
        "node 1 learned its own address"
    );
    eventually("the followers caught up", || {
        node(&nodes, 1)
            .status()
            .members
            .iter()
            .all(|m| m.lag_entries == Some(0))
    })
    .await;
    let follower = node(&nodes, 3).status();
    assert_eq!(
        (follower.role, follower.leader_id),
        (tandem_storage::Role::Follower, Some(1))
    );
    for n in nodes.into_iter().flatten() {
        n.server.abort();
        n.engine.shutdown().await;
    }
}
