//! The durable engine: a single-voter Raft node (openraft) over [`LogStore`] and
//! [`StateMachine`], and the committer that gives it group commit.
//!
//! openraft 0.9 turns each `client_write` into one log append with its own fdatasync, one at a
//! time. The committer therefore gathers the records of many accounts that arrive while the
//! previous write is in flight into one [`LogBatch`], so many decisions share one fdatasync.
//! Each submitter is answered only once its batch is committed and applied.
//!
//! Order: one committer task drains one queue in arrival order and hands batches to openraft
//! in that order (up to `writes_in_flight_max` at once; by default one, since the apply is to
//! memory and a batch that waits for the write before it grows larger, which costs less per
//! record); openraft appends them in that order and the committer answers them in
//! that order, so an account's records reach the log, and its callers are answered, in the
//! order the account submitted them. If a
//! write fails, that batch and every later one fail ("the log failed"); nothing after a
//! failed batch is written, so no account's events are applied out of order.
//!
//! Thread: all of this runs on the engine's own thread (`tandem-engine`, a current-thread
//! tokio runtime), not on the caller's workers, so the commit path's hand-offs never queue
//! behind request and actor tasks (see [`Engine::open`]).

use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::Accounts;
use crate::faults::WriteFaults;
use crate::latch::FailureLatch;
use crate::log_store::LogStore;
use crate::pan_key::PanKey;
use crate::state_machine::{CheckpointSettings, StateMachine, StateReader};
use crate::types::{AccountRecord, LogBatch, NodeId, Setting, TandemRaft};

mod backup;
mod cluster;
mod commit;
mod config;
mod errors;
mod read_rounds;
mod timer;

pub use self::backup::{BACKUP_SNAPSHOT, BackupError, BackupInfo, restore};
use self::cluster::WriteTimes;
pub use self::cluster::{
    ClusterStatus, Formed, Leader, LeaderWatch, Leadership, MemberStatus, Role,
};
pub use self::commit::{Done, Slot};
use self::commit::{Submission, answer_loop, commit_loop};
pub use self::config::EngineConfig;
use self::errors::refused;
pub use self::errors::{CommitError, OpenError};
use self::timer::{Cadence, checkpoint_timer};
use crate::network::{LeaderReadIndex, NoNetwork};

/// A single node's id in its Raft group (and the id an existing single node keeps as node 1
/// of a new cluster).
pub const NODE_ID: NodeId = 1;

/// How long start-up waits for the log's and the state's directory locks before saying they
/// are in use.
const STATE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the checkpoint store, waiting a bounded time for its directory lock: the store
/// writes from threads of its own, so an engine of this process that was just dropped (a restart in
/// place) can hold the lock for a few milliseconds more. Another live process holding the
/// directory still fails, after the wait.
async fn open_state(
    path: &Path,
    settings: CheckpointSettings,
    observer: Option<crate::checkpoint::CheckpointObserver>,
) -> std::io::Result<StateMachine> {
    waiting_for_lock(|| StateMachine::open_observed(path, settings, observer.clone())).await
}

/// Runs `open` until it stops failing for a held directory lock, a bounded time (the log and
/// the store both lock their directories).
async fn waiting_for_lock<T>(mut open: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let started = std::time::Instant::now();
    loop {
        match open() {
            Err(busy)
                if busy.kind() == std::io::ErrorKind::WouldBlock
                    && started.elapsed() < STATE_LOCK_WAIT =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// How an engine takes part in its Raft group.
enum Membership {
    /// The only voter: initialized on a fresh directory, leads at once.
    SingleVoter,
    /// One member of a cluster, reached through a network.
    Cluster,
}

/// Counters the engine keeps for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Log entries written (each one fdatasync of the log).
    pub batches: AtomicU64,
    /// Account records written.
    pub records: AtomicU64,
    /// When recent log indexes were written (followers' lag in time).
    pub(crate) write_times: WriteTimes,
}

/// How often the leader sends each follower an append, entries or none (a heartbeat), ms.
/// It is also openraft's deadline for one append, the follower's fdatasync included, and
/// sets how often a follower looks at its election timer (every 1.5 heartbeats): 120 ms is
/// tens of times a loaded follower's append here, and a follower hears from a live leader
/// several times within the election timeout.
pub const HEARTBEAT_MS: u64 = 120;

/// The election timeout's range, ms (openraft picks each node's once, at random within it).
/// Its upper bound is also the leader's lease: a follower refuses to vote for another
/// candidate until it has heard nothing from its leader for that long. A cluster member calls
/// the election itself 30 ms past the lease when its peers agree it holds the greatest log
/// (`tandem_replication::prompt`): about 0.45 s from a leader's death to the first
/// acknowledged write on the next. openraft's own timer, the fallback, calls one once a
/// follower has heard nothing for the lease plus its timeout, seen at its next timer look:
/// 0.6–1.0 s (`docs/replication.md`, "Failover"; `benches/failover.sh` measures it). Shorter
/// would call elections on a leader a busy machine merely delayed.
pub const ELECTION_TIMEOUT_MS: (u64, u64) = (200, 400);

/// A running engine.
pub struct Engine {
    raft: Raft<TandemRaft>,
    reader: StateReader,
    queue: mpsc::Sender<Submission>,
    failed: Arc<FailureLatch>,
    stats: Arc<EngineStats>,
    committer: tokio::task::JoinHandle<()>,
    answerer: tokio::task::JoinHandle<()>,
    checkpoints: tokio::task::JoinHandle<()>,
    /// Counts leader changes and keeps the term gauge (`cluster::watch_leadership`).
    leadership: tokio::task::JoinHandle<()>,
    /// Since when no leader is known, kept by the same task.
    leaderless: Arc<cluster::Leaderless>,
    /// How a follower asks the leader for a read index (a cluster member only).
    leader_reads: Option<Arc<dyn LeaderReadIndex>>,
    /// A follower's linearizable reads, sharing their rounds to the leader.
    read_rounds: read_rounds::ReadRounds,
    pan_key: PanKey,
    /// Where the tasks above run; stopped when the engine is dropped.
    thread: Option<EngineThread>,
}

/// The engine's thread: a current-thread tokio runtime that runs until told to stop (or
/// until its `EngineThread` is dropped), then drops whatever still runs on it.
struct EngineThread {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EngineThread {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("tandem-engine-io")
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tandem-engine".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits until it is gone (the store and the log closed).
    async fn join(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        // Waits until the thread is gone, so the log and the store are closed when the engine is
        // (a restart in the same process finds their locks free). Stopping drops the
        // runtime's tasks and waits for a checkpoint being written, and needs nothing from
        // the caller's thread, so blocking here cannot deadlock, except on the engine thread
        // itself (the last holder dropped by one of its own tasks), where it is skipped.
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl Engine {
    /// Opens the data directory (creating it), starts the Raft node and, on a fresh
    /// directory, initializes it as the single voter. On return every committed entry has
    /// been applied: the state is ready to load accounts from.
    ///
    /// The commit path (the committer, openraft's core and state-machine tasks, the
    /// answering task and the checkpoint timer) runs on a thread of its own, `tandem-engine`,
    /// not on the caller's runtime: there its tasks would wait in the workers' run queue
    /// behind every request and actor task at each of their hand-offs, and a commit took
    /// 20–100 ms under load instead of about one fdatasync.
    pub async fn open(config: EngineConfig) -> Result<Engine, OpenError> {
        Self::open_on_thread(config, NoNetwork, Membership::SingleVoter, None).await
    }

    /// Opens the data directory as member `config.node_id` of a cluster whose peers
    /// `network` reaches. Nothing is initialized here: a fresh member waits to be made part of
    /// a cluster ([`Engine::initialize`] on one node), and any member serves writes only
    /// while it leads (elsewhere `submit` answers [`CommitError::NotLeader`]). On return the
    /// entries this node's checkpoint and log hold are applied; what the cluster committed
    /// after them arrives from the leader.
    pub async fn open_member<N>(config: EngineConfig, network: N) -> Result<Engine, OpenError>
    where
        N: openraft::RaftNetworkFactory<TandemRaft> + LeaderReadIndex + Clone,
    {
        let reads: Arc<dyn LeaderReadIndex> = Arc::new(network.clone());
        Self::open_on_thread(config, network, Membership::Cluster, Some(reads)).await
    }

    async fn open_on_thread<N>(
        config: EngineConfig,
        network: N,
        membership: Membership,
        reads: Option<Arc<dyn LeaderReadIndex>>,
    ) -> Result<Engine, OpenError>
    where
        N: openraft::RaftNetworkFactory<TandemRaft>,
    {
        let thread = EngineThread::start()?;
        let mut engine = thread
            .handle
            .spawn(Self::open_here(config, network, membership))
            .await
            .map_err(|e| OpenError::Raft(format!("the engine thread stopped: {e}")))??;
        engine.thread = Some(thread);
        engine.leader_reads = reads;
        Ok(engine)
    }

    /// [`Engine::open`] on the current runtime (the engine thread's).
    async fn open_here<N>(
        config: EngineConfig,
        network: N,
        membership: Membership,
    ) -> Result<Engine, OpenError>
    where
        N: openraft::RaftNetworkFactory<TandemRaft>,
    {
        std::fs::create_dir_all(&config.data_dir)?;
        let pan_key = match &config.pan_key {
            None => PanKey::load_or_create(&config.data_dir)?,
            Some(cluster) => PanKey::adopt(&config.data_dir, cluster)?,
        };
        let started = std::time::Instant::now();
        let log = waiting_for_lock(|| LogStore::open(&config.data_dir.join("log")))
            .await?
            .with_faults(config.write_faults.clone())
            .with_sync_observer(config.sync_observer.clone());
        tracing::info!(log_ms = started.elapsed().as_millis(), "raft log opened");
        // A data directory from before decision 0023 keeps its checkpoint in sled: moved
        // into the store once, before the store opens.
        let state_dir = config.data_dir.join(crate::CHECKPOINT_DIR);
        let sled_dir = config.data_dir.join(crate::LEGACY_SLED_DIR);
        waiting_for_lock(|| crate::checkpoint::move_from_sled(&sled_dir, &state_dir)).await?;
        let mut machine = open_state(
            &state_dir,
            config.checkpoint,
            config.checkpoint_observer.clone(),
        )
        .await?;
        machine.set_faults(config.write_faults.clone());
        let reader = machine.reader();
        let sends = machine.snapshot_sends();
        let fresh = log.state().0.is_none()
            && reader
                .applied()
                .map_err(|e| OpenError::Raft(e.to_string()))?
                .is_none();
        let raft_config = Config {
            cluster_name: "tandem".into(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_TIMEOUT_MS.0,
            election_timeout_max: ELECTION_TIMEOUT_MS.1,
            // The checkpoint timer asks for every checkpoint, by entries and by time, and
            // holds them while a snapshot is being sent (`timer.rs`).
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: config.log_kept_after_checkpoint,
            // A snapshot is streamed whole within one deadline.
            install_snapshot_timeout: 30_000,
            // An entry is one group commit of up to `batch_records_max` records: a few
            // entries per append keep a replication message to a few megabytes.
            max_payload_entries: 16,
            ..Config::default()
        }
        .validate()
        .map_err(|e| OpenError::Raft(e.to_string()))?;
        let node_id = config.node_id;
        let raft = Raft::new(node_id, Arc::new(raft_config), network, log, machine)
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        if let Membership::SingleVoter = membership {
            if fresh {
                let mut members = BTreeMap::new();
                members.insert(node_id, BasicNode::default());
                raft.initialize(members)
                    .await
                    .map_err(|e| OpenError::Raft(e.to_string()))?;
            }
            // Ready once this node leads and has applied everything committed.
            raft.wait(None)
                .current_leader(node_id, "single voter leads")
                .await
                .map_err(|e| OpenError::Raft(e.to_string()))?;
            let last_log = raft.metrics().borrow().last_log_index;
            raft.wait(None)
                .applied_index_at_least(last_log, "replayed")
                .await
                .map_err(|e| OpenError::Raft(e.to_string()))?;
        }
        let (queue, receiver) = mpsc::channel(config.queue_depth_max);
        let failed = Arc::new(FailureLatch::new());
        let stats = Arc::new(EngineStats::default());
        let (answers, answer_queue) = mpsc::unbounded_channel();
        let committer = tokio::spawn(commit_loop(
            raft.clone(),
            receiver,
            answers,
            config.batch_records_max,
            config.writes_in_flight_max,
            failed.clone(),
            stats.clone(),
        ));
        let answerer = tokio::spawn(answer_loop(answer_queue));
        let leaderless = Arc::new(cluster::Leaderless::default());
        let leadership = tokio::spawn(cluster::watch_leadership(raft.clone(), leaderless.clone()));
        let checkpoints = tokio::spawn(checkpoint_timer(
            raft.clone(),
            Cadence {
                every: config.checkpoint_every,
                every_entries: config.snapshot_every_entries,
            },
            reader.accounts_shared(),
            sends,
        ));
        Ok(Engine {
            raft,
            reader,
            queue,
            failed,
            stats,
            committer,
            answerer,
            checkpoints,
            leadership,
            leaderless,
            leader_reads: None,
            read_rounds: read_rounds::ReadRounds::default(),
            pan_key,
            thread: None,
        })
    }

    /// The Raft node, for the peer protocol's server (`tandem-replication`), which hands it
    /// the RPCs peers send.
    pub fn raft(&self) -> &Raft<TandemRaft> {
        &self.raft
    }

    /// Forms a cluster of `members` (id and gRPC address each) with this node among them.
    /// Once is enough, on any one member; a cluster that is already formed answers
    /// `Ok(false)` and changes nothing.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<bool, OpenError> {
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, address)| (id, BasicNode::new(address)))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(true),
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => Ok(false),
            Err(error) => Err(OpenError::Raft(error.to_string())),
        }
    }

    /// The data directory's PAN hashing key (generated at first start).
    pub fn pan_key(&self) -> &PanKey {
        &self.pan_key
    }

    /// Read access to the applied state.
    pub fn reader(&self) -> &StateReader {
        &self.reader
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Takes a place in the log's queue, or says at once why there is none (full, failed,
    /// stopping).
    pub fn reserve(&self) -> Result<Slot<'_>, CommitError> {
        if self.failed.is_tripped() {
            return Err(CommitError::LogFailed("an earlier batch failed".into()));
        }
        match self.queue.try_reserve() {
            Ok(permit) => Ok(Slot(permit)),
            Err(mpsc::error::TrySendError::Full(())) => Err(CommitError::Busy),
            Err(mpsc::error::TrySendError::Closed(())) => Err(CommitError::ShuttingDown),
        }
    }

    /// Queues `record` for the log. The answer is its log index once it is committed
    /// (fdatasync'd) and applied, or why not. Order is preserved per caller.
    pub fn submit(&self, record: AccountRecord) -> oneshot::Receiver<Result<u64, CommitError>> {
        let (answer, receiver) = oneshot::channel();
        match self.reserve() {
            Ok(slot) => slot.submit(
                Some(record),
                Done::new(move |result| {
                    let _ = answer.send(result);
                }),
            ),
            Err(error) => {
                let _ = answer.send(Err(error));
            }
        }
        receiver
    }

    /// Queues changes to the settings (`settings.rs`) for the log, in one entry with the
    /// records around them; answered as [`Engine::submit`] is, once applied on this node.
    pub fn submit_settings(
        &self,
        settings: Vec<Setting>,
    ) -> oneshot::Receiver<Result<u64, CommitError>> {
        let (answer, receiver) = oneshot::channel();
        let done = Done::new(move |result| {
            let _ = answer.send(result);
        });
        match self.reserve() {
            Ok(slot) => slot.submit_settings(settings, done),
            Err(error) => done.finish(Err(error)),
        }
        receiver
    }

    /// Writes a checkpoint of everything applied when this is called and waits until it is
    /// durable; the answer is the log index it covers (`None` before anything is applied).
    pub async fn checkpoint(&self) -> Result<Option<u64>, OpenError> {
        let Some(applied) = self.raft.metrics().borrow().last_applied else {
            return Ok(None);
        };
        let covered = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
            m.snapshot.is_some_and(|s| s.index >= applied.index)
        };
        if !covered(&self.raft.metrics().borrow()) {
            self.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| OpenError::Raft(e.to_string()))?;
            self.raft
                .wait(Some(Duration::from_secs(60)))
                .metrics(covered, "checkpoint durable")
                .await
                .map_err(|e| OpenError::Raft(e.to_string()))?;
        }
        let index = self.raft.metrics().borrow().snapshot.map(|s| s.index);
        Ok(index)
    }

    /// Shuts the Raft node down while others still hold the engine: later submissions fail
    /// as `LogFailed`. Everything answered before is already durable.
    pub async fn stop(&self) {
        self.checkpoints.abort();
        self.leadership.abort();
        let _ = self.raft.shutdown().await;
    }

    /// Stops accepting work, lets queued batches finish, and shuts the Raft node down.
    pub async fn shutdown(mut self) {
        drop(self.queue);
        let _ = self.committer.await;
        let _ = self.answerer.await;
        self.checkpoints.abort();
        self.leadership.abort();
        let _ = self.raft.shutdown().await;
        drop(self.raft);
        drop(self.reader);
        if let Some(thread) = self.thread.take() {
            thread.join().await;
        }
    }
}
