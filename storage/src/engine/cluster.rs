//! The engine as a cluster member: forming the cluster, and what it reports of it.
//!
//! Forming (`Engine::form`) is safe to repeat on any member: a fresh member is initialized
//! with the given members (every member initialized with the same list writes the same first
//! entry, so initializing twice is harmless); a single node that already holds data (the
//! single-voter membership a data directory from before clustering carries) stays node 1,
//! learns its own address, adds the others as learners (they catch up by snapshot or log) and
//! then makes them voters; a member already in a larger cluster changes nothing.

use super::*;

/// What forming the cluster did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formed {
    /// This call formed it: from fresh members, or from a single node that held data.
    Now,
    /// It was formed already; nothing changed.
    Already,
}

/// A member's role, as the cluster's status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Learner,
    Candidate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Learner => "learner",
            Role::Candidate => "candidate",
        }
    }
}

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub node_id: NodeId,
    pub address: String,
    pub role: Role,
    /// The last log index the leader knows this member holds (on the leader only).
    pub matched_index: Option<u64>,
    /// Entries this member is behind the leader's log (on the leader only).
    pub lag_entries: Option<u64>,
    /// How long ago the first entry this member lacks was written (0 when it lacks none; on
    /// the leader only).
    pub lag_ms: Option<u64>,
}

/// The cluster as this node sees it (`GET /v1/cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    /// On the leader, the highest index a majority holds; elsewhere what this node applied
    /// (a follower applies what it learns is committed at once).
    pub commit_index: u64,
    pub applied_index: u64,
    /// The last index this node's log was purged up to (entries at or below it are only in
    /// its checkpoint: a member further behind is sent a snapshot).
    pub purged_index: u64,
    /// The index of this node's latest checkpoint offered as a snapshot.
    pub snapshot_index: u64,
    pub members: Vec<MemberStatus>,
}

/// When recent log indexes were written, for followers' lag in time: a bounded record kept
/// by the committer on the leader.
#[derive(Debug, Default)]
pub struct WriteTimes(std::sync::Mutex<VecDeque<(u64, std::time::Instant)>>);

/// Indexes [`WriteTimes`] remembers; a follower further behind is reported by the oldest.
const WRITE_TIMES_KEPT: usize = 4_096;

impl WriteTimes {
    pub(super) fn record(&self, index: u64, at: std::time::Instant) {
        let mut times = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if times.len() == WRITE_TIMES_KEPT {
            times.pop_front();
        }
        times.push_back((index, at));
    }

    /// How long ago the first index after `matched` was written; 0 when none is.
    fn lag_ms(&self, matched: u64) -> u64 {
        let times = self.0.lock().unwrap_or_else(|p| p.into_inner());
        times
            .iter()
            .find(|(index, _)| *index > matched)
            .map_or(0, |(_, at)| at.elapsed().as_millis() as u64)
    }
}

/// Who leads the cluster, as this node last learned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leader {
    /// This node leads: it decides writes.
    This,
    /// Another member leads, at its peer address.
    Other { id: NodeId, address: String },
    /// No leader is known (an election is under way, or this node is cut off).
    Unknown,
}

/// Tells who leads each time that may have changed (`Engine::leader_watch`).
pub struct LeaderWatch {
    server_metrics: tokio::sync::watch::Receiver<ServerMetrics>,
}

/// openraft's server metrics: vote, state, leader and membership only. openraft sends them
/// when one of those changes, not at every log write as it does `RaftMetrics`, so a task that
/// follows leadership wakes at elections, not on the authorization path.
type ServerMetrics = openraft::metrics::RaftServerMetrics<NodeId, BasicNode>;

/// Who leads, and in which term: a node that leads again in a later term leads anew (another
/// leader may have written between its two terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Leader,
    pub term: u64,
}

impl LeaderWatch {
    /// Who leads now, and in which term.
    pub fn current(&mut self) -> Leadership {
        leadership_of(&self.server_metrics.borrow_and_update())
    }

    /// Who leads, once that may have changed; `None` once the engine stopped (shut down, or
    /// fail-stopped on a log it could not write: nobody writes through it any more).
    pub async fn changed(&mut self) -> Option<Leadership> {
        self.server_metrics.changed().await.ok()?;
        let metrics = self.server_metrics.borrow_and_update();
        if metrics.state == openraft::ServerState::Shutdown {
            return None;
        }
        Some(leadership_of(&metrics))
    }
}

fn leadership_of(metrics: &ServerMetrics) -> Leadership {
    Leadership {
        leader: leader_of(metrics),
        term: metrics.vote.leader_id().get_term(),
    }
}

/// Who leads, by `metrics`.
fn leader_of(metrics: &ServerMetrics) -> Leader {
    match metrics.current_leader {
        Some(id) if id == metrics.id && metrics.state == openraft::ServerState::Leader => {
            Leader::This
        }
        Some(id) if id != metrics.id => metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map_or(Leader::Unknown, |node| Leader::Other {
                id,
                address: node.addr.clone(),
            }),
        _ => Leader::Unknown,
    }
}

/// How long a linearizable read waits for this node to apply up to the leader's read index.
const READ_INDEX_WAIT: Duration = Duration::from_secs(5);

impl Engine {
    /// A linearizable read point: once this answers, this node has applied everything
    /// committed before the call (a read index confirmed by the leader: on the leader by a
    /// round of heartbeats, on a follower by asking the leader, then waiting to apply up to
    /// it; a follower's concurrent reads share one question to the leader). Answers that
    /// index. Refused as [`CommitError::NotLeader`] (retryable) when no leader confirms.
    pub async fn linearizable_read(&self) -> Result<u64, CommitError> {
        let (leader_id, address) = match self.leader() {
            // The leader's read index is what settling a new term waits for.
            Leader::This => return self.settle_lead(READ_INDEX_WAIT).await,
            Leader::Other { id, address } => (id, address),
            Leader::Unknown => return Err(CommitError::NotLeader { leader: None }),
        };
        let not_leader = CommitError::NotLeader {
            leader: Some(leader_id),
        };
        let Some(reads) = &self.leader_reads else {
            return Err(not_leader);
        };
        // Shared with the reads that gather meanwhile (`read_rounds.rs`).
        let index = self
            .read_rounds
            .read_index(|| reads.read_index(leader_id, &address))
            .await
            .map_err(|_| not_leader.clone())?;
        self.raft
            .wait(Some(READ_INDEX_WAIT))
            .applied_index_at_least(Some(index), "applied up to the read index")
            .await
            .map_err(|_| not_leader)?;
        Ok(index)
    }

    /// Waits, on a node that has just come to lead, until it has applied every entry committed
    /// before its term: openraft's first entry of the term (a blank one) is committed by a
    /// majority and applied here, so the accounts at rest hold every decision any earlier
    /// leader acknowledged. Until then this node's actors must not decide: an account lent
    /// before would miss them (a second hold for a retried key, funds already spent).
    /// Refused as [`CommitError::NotLeader`] if it stops leading first; bounded by `wait`.
    pub async fn settle_lead(&self, wait: Duration) -> Result<u64, CommitError> {
        let not_leader = || CommitError::NotLeader {
            leader: self.raft.metrics().borrow().current_leader,
        };
        match tokio::time::timeout(wait, self.raft.ensure_linearizable()).await {
            Ok(Ok(read)) => Ok(read.map_or(0, |log| log.index)),
            Ok(Err(_)) | Err(_) => Err(not_leader()),
        }
    }

    /// How long this node has known no leader (an election under way, or cut off from the
    /// majority); `None` while it knows one.
    pub fn leaderless_for(&self) -> Option<Duration> {
        self.leaderless.for_how_long()
    }

    /// Who leads, as this node last learned it (its Raft metrics: a read lock, no waiting).
    pub fn leader(&self) -> Leader {
        leader_of(&self.raft.server_metrics().borrow())
    }

    /// Tells who leads each time that may have changed.
    pub fn leader_watch(&self) -> LeaderWatch {
        LeaderWatch {
            server_metrics: self.raft.server_metrics(),
        }
    }

    /// The highest index this node knows committed: on the leader the highest a majority
    /// holds, elsewhere what it applied. Every read reports it.
    pub fn commit_index(&self) -> u64 {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let applied = metrics.last_applied.map_or(0, |l| l.index);
        match &metrics.replication {
            Some(matched) => {
                let voters: Vec<NodeId> =
                    metrics.membership_config.membership().voter_ids().collect();
                majority_index(&voters, matched).unwrap_or(applied)
            }
            None => applied,
        }
    }

    /// Forms the cluster of `members` (id → peer address), this node among them (see the
    /// module docs).
    pub async fn form(&self, members: BTreeMap<NodeId, String>) -> Result<Formed, OpenError> {
        let raft_error = |e: &dyn std::fmt::Display| OpenError::Raft(e.to_string());
        let metrics = self.raft.metrics().borrow().clone();
        let this = metrics.id;
        if !members.contains_key(&this) {
            return Err(OpenError::Raft(format!(
                "node {this} is not among the members it was asked to form"
            )));
        }
        let voters: BTreeSet<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        if metrics.membership_config.log_id().is_none() && voters.is_empty() {
            return self
                .initialize(members)
                .await
                .map(|formed| if formed { Formed::Now } else { Formed::Already });
        }
        let wanted: BTreeSet<NodeId> = members.keys().copied().collect();
        if voters != BTreeSet::from([this]) || wanted.len() == 1 {
            return Ok(Formed::Already);
        }
        // A single node with data: it leads itself (once its election timeout passes after a
        // start), and stays the leader while the others join.
        self.raft
            .wait(Some(Duration::from_secs(10)))
            .current_leader(this, "the single voter leads")
            .await
            .map_err(|e| raft_error(&e))?;
        let mut own = BTreeMap::new();
        own.insert(this, BasicNode::new(members[&this].clone()));
        self.raft
            .change_membership(openraft::ChangeMembers::SetNodes(own), false)
            .await
            .map_err(|e| raft_error(&e))?;
        for (id, address) in &members {
            if *id != this {
                self.raft
                    .add_learner(*id, BasicNode::new(address.clone()), true)
                    .await
                    .map_err(|e| raft_error(&e))?;
            }
        }
        self.raft
            .change_membership(wanted, false)
            .await
            .map_err(|e| raft_error(&e))?;
        Ok(Formed::Now)
    }

    /// The cluster as this node sees it.
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let role_of = |id: NodeId| {
            if Some(id) == metrics.current_leader {
                Role::Leader
            } else if voters.contains(&id) {
                Role::Follower
            } else {
                Role::Learner
            }
        };
        let role = match metrics.state {
            openraft::ServerState::Leader => Role::Leader,
            openraft::ServerState::Candidate => Role::Candidate,
            openraft::ServerState::Learner => Role::Learner,
            _ => role_of(metrics.id),
        };
        let last_log = metrics.last_log_index.unwrap_or(0);
        let applied_index = metrics.last_applied.map_or(0, |l| l.index);
        let matched: BTreeMap<NodeId, u64> = metrics
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| (*id, log.map_or(0, |l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        let commit_index = match &metrics.replication {
            Some(replication) => {
                let voters: Vec<NodeId> = voters.iter().copied().collect();
                majority_index(&voters, replication).unwrap_or(applied_index)
            }
            None => applied_index,
        };
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched_index = matched.get(id).copied();
                MemberStatus {
                    node_id: *id,
                    address: node.addr.clone(),
                    role: role_of(*id),
                    matched_index,
                    lag_entries: matched_index.map(|m| last_log.saturating_sub(m)),
                    lag_ms: matched_index.map(|m| self.stats.write_times.lag_ms(m)),
                }
            })
            .collect();
        ClusterStatus {
            node_id: metrics.id,
            role,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            commit_index,
            applied_index,
            purged_index: metrics.purged.map_or(0, |l| l.index),
            snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
            members,
        }
    }
}

/// Since when this node has known no leader (`None` while it knows one).
#[derive(Default)]
pub(super) struct Leaderless(std::sync::Mutex<Option<std::time::Instant>>);

impl Leaderless {
    fn follow(&self, known: bool) {
        let mut since = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match (known, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(std::time::Instant::now()),
            (false, Some(_)) => {}
        }
    }

    fn for_how_long(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|since| since.elapsed())
    }
}

/// Follows the Raft node's server metrics (sent on elections and membership changes only):
/// counts leader changes (`tandem_raft_leader_changes_total`) and keeps the term and whether
/// this node leads as gauges, until the node stops.
pub(super) async fn watch_leadership(raft: Raft<TandemRaft>, leaderless: Arc<Leaderless>) {
    let mut metrics = raft.server_metrics();
    let mut leader = None;
    loop {
        {
            let now = metrics.borrow_and_update();
            leaderless.follow(now.current_leader.is_some());
            if now.current_leader != leader {
                if leader.is_some() || now.current_leader.is_some() {
                    metrics::counter!("tandem_raft_leader_changes_total").increment(1);
                }
                leader = now.current_leader;
            }
            metrics::gauge!("tandem_raft_term").set(now.vote.leader_id().get_term() as f64);
            let leads = matches!(now.state, openraft::ServerState::Leader);
            metrics::gauge!("tandem_raft_is_leader").set(if leads { 1.0 } else { 0.0 });
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The highest log index a majority of `voters` holds, by the leader's replication metrics.
fn majority_index(
    voters: &[NodeId],
    matched: &BTreeMap<NodeId, Option<openraft::LogId<NodeId>>>,
) -> Option<u64> {
    let mut held: Vec<u64> = voters
        .iter()
        .map(|id| matched.get(id).copied().flatten().map_or(0, |l| l.index))
        .collect();
    held.sort_unstable_by(|a, b| b.cmp(a));
    held.get(voters.len() / 2).copied()
}
