//! Three `tandem serve` processes on loopback as one cluster's members, for the tests that
//! start, stop, kill and restart them (`cluster.rs`, `failover.rs`).

use super::{ADMIN, Node};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A loopback port free now, for a member's gRPC listener (the peers list needs each port
/// before start, and a restarted member binds the same one again).
///
/// Taken from below Linux's ephemeral range (32768–60999): a port there that a test frees
/// can be taken at once as the local port of any outgoing connection, and one was, in CI.
/// Each test process starts at its own offset and never hands a port out twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free port below the ephemeral range");
        let port = (FIRST + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("cluster-pan.key");
    super::succeeds(
        Command::new(super::binary())
            .args(["keygen", "--pan-key"])
            .arg(&key),
    );
    key
}

/// `tandem serve` as member `id` of `peers`.
pub fn member_command(data_dir: &Path, id: u64, port: u16, peers: &str, key: &Path) -> Command {
    member_command_with(data_dir, id, port, peers, key, &[])
}

/// `tandem serve` as member `id` of `peers`, with `extra` arguments.
pub fn member_command_with(
    data_dir: &Path,
    id: u64,
    port: u16,
    peers: &str,
    key: &Path,
    extra: &[&str],
) -> Command {
    let mut command = Command::new(super::binary());
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--grpc-listen",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "127.0.0.1:0",
            "--iso8583-listen",
            "127.0.0.1:0",
            "--node-id",
            &id.to_string(),
            "--peers",
            peers,
        ])
        .arg("--pan-key-file")
        .arg(key)
        .args(extra)
        .env("TANDEM_ADMIN_TOKEN", ADMIN);
    command
}

/// Three members on loopback, started with the same `extra` arguments, that a test can stop
/// and start again one by one (each keeps its data directory and ports).
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub ports: Vec<u16>,
    pub peers: String,
    pub extra: Vec<String>,
    pub nodes: Vec<Option<Node>>,
}

impl Cluster {
    pub fn start(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path());
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}=127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            dir,
            key,
            ports,
            peers,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            nodes: vec![None, None, None],
        };
        for id in 1..=3 {
            cluster.start_member(id);
        }
        cluster
    }

    pub fn start_member(&mut self, id: u64) {
        let i = (id - 1) as usize;
        let data = self.dir.path().join(format!("node{id}"));
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let command = member_command_with(&data, id, self.ports[i], &self.peers, &self.key, &extra);
        self.nodes[i] = Some(Node::spawn_command(command, &data, None));
    }

    /// SIGTERM to member `id`, which must exit cleanly.
    pub fn stop_member(&mut self, id: u64) {
        let node = self.nodes[(id - 1) as usize].take().expect("running");
        assert!(node.stop().success(), "node {id} stopped cleanly");
    }

    /// SIGKILL to member `id` (no drain, no clean shutdown: what a crashed machine does).
    pub fn kill_member(&mut self, id: u64) {
        let mut node = self.nodes[(id - 1) as usize].take().expect("running");
        node.child.kill().expect("SIGKILL");
        node.child.wait().expect("reaped");
    }

    /// The three running members, in id order, for a test that drives them as a slice (the
    /// data directories stay with the `Cluster`).
    pub fn take_nodes(&mut self) -> Vec<Node> {
        self.nodes
            .iter_mut()
            .map(|node| node.take().expect("running"))
            .collect()
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes[(id - 1) as usize].as_ref().expect("running")
    }

    pub fn running(&self) -> Vec<&Node> {
        self.nodes.iter().flatten().collect()
    }

    /// The running members' `grpc://` or `http://` URLs, comma separated (a load tester's
    /// `--target`).
    pub fn urls(&self, scheme: &str) -> String {
        self.running()
            .iter()
            .map(|node| match scheme {
                "http" => format!("http://{}", node.http),
                _ => format!("grpc://{}", node.grpc),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A metric's value in a Prometheus text page (0 when the series is not there yet).
pub fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn metrics_of(node: &Node) -> String {
    let (_, page) = node.call("GET", "/metrics", None, None).await;
    page.as_str().unwrap_or_default().to_owned()
}

/// Waits until every running member names the same leader; answers its id.
pub async fn leader_of(cluster: &Cluster) -> u64 {
    agreed_leader(&cluster.running()).await
}

/// Waits until `node` reads `account` as `expected` (balances and seq).
pub async fn converges(node: &Node, account: &str, expected: &Value) {
    super::eventually("the member reads the leader's balance and seq", || async {
        // A restarted member may not have reached the account yet: not found until it has.
        let (code, seen) = node
            .call(
                "GET",
                &format!("/v1/accounts/{account}/balance"),
                Some(ADMIN),
                None,
            )
            .await;
        code == 200 && seen["balances"] == expected["balances"] && seen["seq"] == expected["seq"]
    })
    .await;
}

pub fn cluster(args: &[&str], node: &Node) -> std::process::Output {
    Command::new(super::binary())
        .arg("cluster")
        .args(args)
        .args(["--target", &node.http, "--token", ADMIN])
        .output()
        .expect("tandem cluster runs")
}

pub async fn status(node: &Node) -> Value {
    node.get("/v1/cluster").await
}

/// Waits (bounded) until every node names the same leader; answers its id.
pub async fn leader(nodes: &[Node]) -> u64 {
    agreed_leader(&nodes.iter().collect::<Vec<_>>()).await
}

pub async fn agreed_leader(nodes: &[&Node]) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut leaders = Vec::new();
        for node in nodes {
            leaders.push(status(node).await["leader_id"].as_u64());
        }
        if leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]) {
            return leaders[0].unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
