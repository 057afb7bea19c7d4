//! The load tester as a cluster client: one [`Target`] per node of `--target a,b,c`, calls
//! spread over them in turn, and a call that fails for a reason a retry may cure (no leader
//! yet, a node gone, a connection cut) tried again, with the same request and so the same
//! idempotency key, on the next node. With one node nothing is retried: a single node's run
//! measures what it answers.
//!
//! What the report counts apart from declines and errors ([`ClusterCounts`]): requests that
//! were retried and how many retries they took, requests whose first answer was lost (in
//! doubt: decided or not, the retry tells), requests answered by another node than the one
//! first tried (failovers), and, for each leader killed during the run (`--kill-leader-after`),
//! how long after the kill the first approval of a request sent after it came back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tandem_proto::v1 as pb;

use crate::target::{AdminCall, Answer, Op, Protocol, Target};

/// How long a request is retried across nodes before its last error stands: past an election
/// (about half a second) and a node's restart, well inside a run.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// Why a call failed, for whether and how it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Refused before anything was decided (no leader, busy): retry.
    Refused,
    /// The answer was lost (a connection cut, a node killed, a timeout): the request may have
    /// been decided; a retry under the same key tells.
    InDoubt,
    /// Anything else: the answer stands.
    Final,
}

/// How a failed call's text (`target.rs`: a gRPC status, an HTTP status and body, a transport
/// error) is classified.
pub fn classify(error: &str) -> Failure {
    let lower = error.to_ascii_lowercase();
    let in_doubt = [
        "timeout",
        "in time",
        "may still complete",
        "transport error",
        "connection",
        "stream closed",
        "broken pipe",
        "http: ",
        "http body",
        "cancelled",
        "the link",
    ];
    // Never sent (a connection refused, a stream already closed), or refused unanswered.
    let refused = ["does not lead", "not_leader", "not sent", "connect error"];
    if refused.iter().any(|sign| lower.contains(sign)) {
        Failure::Refused
    } else if in_doubt.iter().any(|sign| lower.contains(sign)) {
        Failure::InDoubt
    } else if lower.starts_with("unavailable")
        || lower.starts_with("stream error 14:")
        || lower.contains("http 503")
    {
        Failure::Refused
    } else {
        Failure::Final
    }
}

/// What the report shows of a run against a cluster.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ClusterCounts {
    pub nodes: usize,
    /// Requests that needed more than one attempt.
    pub retried: u64,
    /// Attempts after the first, over all requests.
    pub retries: u64,
    /// Requests whose first answer was lost (decided or not); each was retried.
    pub in_doubt: u64,
    /// Requests answered by a node other than the one first tried.
    pub failovers: u64,
    /// Requests whose last error stood after [`RETRY_FOR`] of retries.
    pub gave_up: u64,
    pub kills: Vec<Kill>,
}

/// A leader killed during the run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Kill {
    /// Seconds into the run.
    pub at_s: f64,
    /// When, in milliseconds since the epoch (to line up with the nodes' logs).
    pub at_unix_ms: i64,
    /// What the kill command printed (the node it killed).
    pub killed: String,
    /// From the kill to the first approval of a request sent after it, ms; `None` if none came.
    pub first_approval_ms: Option<f64>,
    /// From the kill to the first approval of any request (one in flight at the kill
    /// included), ms.
    #[serde(default)]
    pub first_answer_ms: Option<f64>,
}

impl Kill {
    /// Notes an approval of a request sent at `sent`, answered at `answered`, for the kill at
    /// `at`.
    fn observe(&mut self, at: Instant, sent: Instant, answered: Instant) {
        let Some(since) = answered.checked_duration_since(at) else {
            return;
        };
        let ms = since.as_secs_f64() * 1_000.0;
        self.first_answer_ms.get_or_insert(ms);
        if sent >= at {
            self.first_approval_ms.get_or_insert(ms);
        }
    }
}

/// The leaders killed during the run.
#[derive(Default)]
struct Kills {
    done: Vec<(Instant, Kill)>,
    /// While a kill command runs, every approval as (sent, answered): the kill's own time is
    /// known only once the command returns, and a command that waits for the killed process
    /// to be gone can return after the new leader has approved writes.
    pending: Option<Vec<(Instant, Instant)>>,
}

impl Kills {
    /// An approval of a request sent at `sent`, answered at `answered`.
    fn approved(&mut self, sent: Instant, answered: Instant) {
        if let Some(pending) = self.pending.as_mut() {
            pending.push((sent, answered));
        } else if let Some((at, kill)) = self.done.last_mut() {
            kill.observe(*at, sent, answered);
        }
    }

    /// The kill command returned: it killed at `at`.
    fn killed(&mut self, at: Instant, mut kill: Kill) {
        for (sent, answered) in self.pending.take().unwrap_or_default() {
            kill.observe(at, sent, answered);
        }
        self.done.push((at, kill));
    }
}

/// The nodes of the run.
pub struct Nodes {
    nodes: Vec<Target>,
    next: AtomicUsize,
    retried: AtomicU64,
    retries: AtomicU64,
    in_doubt: AtomicU64,
    failovers: AtomicU64,
    gave_up: AtomicU64,
    kills: Mutex<Kills>,
}

impl Nodes {
    /// Connects to every node of `targets` (comma separated); `admins` likewise for ISO 8583
    /// targets (one, or one per node).
    pub async fn connect(
        targets: &str,
        admins: &str,
        token: &str,
        stream: bool,
        connections: usize,
    ) -> Result<Self, String> {
        let targets: Vec<&str> = split(targets);
        let mut admins: Vec<&str> = split(admins);
        if admins.is_empty() {
            // Only an ISO 8583 target needs one, and says so.
            admins.push("");
        }
        if targets.is_empty() {
            return Err("--target names no node".into());
        }
        if admins.len() != 1 && admins.len() != targets.len() {
            return Err(format!(
                "--admin-target names {} nodes and --target {}: give one, or one per node",
                admins.len(),
                targets.len()
            ));
        }
        let mut nodes = Vec::with_capacity(targets.len());
        for (i, url) in targets.iter().enumerate() {
            let admin = admins[i.min(admins.len() - 1)];
            let mut node = Target::connect(url, admin, token, stream, connections).await?;
            if targets.len() > 1 {
                node.read_linearizable();
            }
            nodes.push(node);
        }
        if nodes.iter().any(|node| node.protocol != nodes[0].protocol) {
            return Err("every node of --target must be of one scheme".into());
        }
        Ok(Self {
            nodes,
            next: AtomicUsize::new(0),
            retried: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            in_doubt: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            kills: Mutex::new(Kills::default()),
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.nodes[0].protocol
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Sends `op`, retried across the nodes as the module says.
    pub async fn call(&self, op: Op) -> Result<Answer, String> {
        let started = Instant::now();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let result = self
            .retrying(first, |i| self.nodes[i].call(op.clone()))
            .await;
        if let Ok(Answer::Card(answer)) = &result
            && (answer.status == "approved" || answer.status == "partially_approved")
        {
            self.approved(started);
        }
        result
    }

    /// `call` on the node at index `first`, then on the next ones while the failure may pass.
    async fn retrying<T, F, Fut>(&self, first: usize, call: F) -> Result<T, String>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let n = self.nodes.len();
        let mut result = call(first % n).await;
        if n == 1 {
            return result;
        }
        let until = Instant::now() + RETRY_FOR;
        let mut attempt = 0;
        let mut doubt = false;
        while let Err(error) = &result {
            match classify(error) {
                Failure::Final => break,
                Failure::InDoubt => doubt = true,
                Failure::Refused => {}
            }
            if Instant::now() >= until {
                self.gave_up.fetch_add(1, Ordering::Relaxed);
                break;
            }
            attempt += 1;
            if attempt == 1 {
                self.retried.fetch_add(1, Ordering::Relaxed);
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            // Quick at first (another node may answer at once), then every 200 ms.
            let wait = Duration::from_millis((5u64 << attempt.min(6)).min(200));
            tokio::time::sleep(wait).await;
            result = call((first + attempt) % n).await;
        }
        if doubt {
            self.in_doubt.fetch_add(1, Ordering::Relaxed);
        }
        if result.is_ok() && attempt % n != 0 {
            self.failovers.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// An approval of a request sent at `started`: the first one sent after the latest kill
    /// times the failover.
    fn approved(&self, started: Instant) {
        let now = Instant::now();
        let mut kills = self.kills.lock().unwrap_or_else(|p| p.into_inner());
        kills.approved(started, now);
    }

    /// A kill command starts: approvals are kept until it says when it killed.
    pub fn killing(&self) {
        self.kills.lock().unwrap_or_else(|p| p.into_inner()).pending = Some(Vec::new());
    }

    /// The kill command failed: nothing was killed.
    pub fn kill_failed(&self) {
        self.kills.lock().unwrap_or_else(|p| p.into_inner()).pending = None;
    }

    /// Notes a leader killed at `at`, `at_s` into the run, by a command that printed `killed`.
    pub fn killed(&self, at: Instant, at_s: f64, killed: String) {
        let kill = Kill {
            at_s,
            at_unix_ms: crate::schedule::unix_ms() - at.elapsed().as_millis() as i64,
            killed,
            first_approval_ms: None,
            first_answer_ms: None,
        };
        let mut kills = self.kills.lock().unwrap_or_else(|p| p.into_inner());
        kills.killed(at, kill);
    }

    /// What the report shows; `None` for a single node.
    pub fn counts(&self) -> Option<ClusterCounts> {
        (self.nodes.len() > 1).then(|| ClusterCounts {
            nodes: self.nodes.len(),
            retried: self.retried.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            in_doubt: self.in_doubt.load(Ordering::Relaxed),
            failovers: self.failovers.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            kills: self
                .kills
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .done
                .iter()
                .map(|(_, kill)| kill.clone())
                .collect(),
        })
    }

    fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Reads an account's balance (for the audit), from any node that answers.
    pub async fn balance(&self, account: &str) -> Result<pb::BalanceSnapshot, String> {
        self.retrying(self.pick(), |i| self.nodes[i].balance(account))
            .await
    }

    pub async fn holds(&self, account: &str) -> Result<pb::Holds, String> {
        self.retrying(self.pick(), |i| self.nodes[i].holds(account))
            .await
    }

    pub async fn entries(&self, account: &str) -> Result<Vec<pb::PostedEntry>, String> {
        self.retrying(self.pick(), |i| self.nodes[i].entries(account))
            .await
    }

    pub async fn lifecycle_events(&self, account: &str) -> Result<Vec<pb::LifecycleEvent>, String> {
        self.retrying(self.pick(), |i| self.nodes[i].lifecycle_events(account))
            .await
    }

    /// One provisioning call, on any node that takes it (every node forwards writes to the
    /// leader).
    pub async fn admin(&self, call: AdminCall) -> Result<(), String> {
        let first = self.pick();
        if let AdminCall::Card(card) = &call {
            // An ISO 8583 node translates by the PANs it learnt: every node learns each.
            for node in &self.nodes {
                node.learn_pan(card);
            }
        }
        self.retrying(first, |i| self.nodes[i].admin(call.clone()))
            .await
    }
}

fn split(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_is_timed_from_its_own_moment_even_when_its_command_returns_late() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut kills = Kills {
            pending: Some(Vec::new()),
            ..Kills::default()
        };
        // The command starts at 0; the kill itself is at 100; the command returns at 2,000.
        kills.approved(ms(0), ms(50)); // before the kill: not counted
        kills.approved(ms(90), ms(700)); // in flight at the kill, answered by the new leader
        kills.approved(ms(710), ms(750)); // the first sent after the kill
        kills.approved(ms(800), ms(820));
        kills.killed(ms(100), Kill::default());
        let kill = &kills.done[0].1;
        assert_eq!(kill.first_answer_ms.map(f64::round), Some(600.0));
        assert_eq!(kill.first_approval_ms.map(f64::round), Some(650.0));
        // Later approvals change nothing.
        kills.approved(ms(900), ms(910));
        assert_eq!(
            kills.done[0].1.first_approval_ms.map(f64::round),
            Some(650.0)
        );
        assert!(kills.pending.is_none());
    }

    #[test]
    fn failures_are_retried_only_where_a_retry_may_cure_them() {
        // A node restarted and still replaying its log, on the processor stream
        // (UNAVAILABLE is gRPC code 14).
        assert_eq!(
            classify("stream error 14: recovering: the node is still recovering; retry shortly"),
            Failure::Refused
        );
        assert_eq!(
            classify("Unavailable: this node does not lead the account; retry shortly"),
            Failure::Refused
        );
        assert_eq!(
            classify(r#"POST /v1/authorizations: HTTP 503: {"code":"not_leader"}"#),
            Failure::Refused
        );
        assert_eq!(
            classify("Unavailable: too much work in flight; retry"),
            Failure::Refused
        );
        assert_eq!(
            classify(
                "Unavailable: no answer within the request timeout (10000 ms); it may still complete"
            ),
            Failure::InDoubt
        );
        assert_eq!(classify("Unknown: transport error"), Failure::InDoubt);
        assert_eq!(classify("the stream closed"), Failure::InDoubt);
        assert_eq!(
            classify("HTTP: client error (Connect): tcp connect error"),
            Failure::Refused,
            "never sent"
        );
        assert_eq!(
            classify("not sent: the stream had closed"),
            Failure::Refused
        );
        assert_eq!(
            classify("HTTP: connection closed before message completed"),
            Failure::InDoubt
        );
        assert_eq!(
            classify("InvalidArgument: amount_minor must be positive"),
            Failure::Final
        );
        assert_eq!(
            classify(r#"POST /v1/accounts: HTTP 409: {"code":"account_exists"}"#),
            Failure::Final
        );
    }
}
