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

use openraft::error::{InstallSnapshotError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use std::collections::{BTreeMap, VecDeque};
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
use crate::state_machine::{SledSettings, StateMachine, StateReader};
use crate::types::{AccountRecord, LogBatch, NodeId, TandemRaft};

/// This node's id in the (single-voter) Raft group.
pub const NODE_ID: NodeId = 1;

#[derive(Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub sled: SledSettings,
    /// Records per log entry, at most (one group commit).
    pub batch_records_max: usize,
    /// Submissions waiting for the committer, at most; past it `submit` answers busy.
    pub queue_depth_max: usize,
    /// Log entries between checkpoints (each writes what was applied to the store and syncs it,
    /// then lets the log be purged up to it).
    pub snapshot_every_entries: u64,
    /// Time between checkpoints, whichever of the two comes first: it bounds the log's tail
    /// a restart replays and the applied writes held in memory.
    pub checkpoint_every: Duration,
    /// Log writes handed to openraft and not yet answered, at most: appending one batch
    /// overlaps applying the previous one.
    pub writes_in_flight_max: usize,
    /// Makes the log's writes fail with ENOSPC while set: how tests exercise a full disk.
    pub write_faults: WriteFaults,
    /// Told of every synced log append (the power-loss test's record of what is durable).
    pub sync_observer: Option<crate::log_store::SyncObserver>,
    /// Told of every durable checkpoint (the power-loss test copies the store's files there).
    pub checkpoint_observer: Option<crate::checkpoint::CheckpointObserver>,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("data_dir", &self.data_dir)
            .field("sled", &self.sled)
            .field("batch_records_max", &self.batch_records_max)
            .field("queue_depth_max", &self.queue_depth_max)
            .field("snapshot_every_entries", &self.snapshot_every_entries)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("writes_in_flight_max", &self.writes_in_flight_max)
            .field("sync_observer", &self.sync_observer.is_some())
            .field("checkpoint_observer", &self.checkpoint_observer.is_some())
            .finish_non_exhaustive()
    }
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            sled: SledSettings::default(),
            batch_records_max: 4_096,
            queue_depth_max: 65_536,
            snapshot_every_entries: 20_000,
            checkpoint_every: Duration::from_secs(1),
            // One: on two cores, overlapping writes only cut batches smaller (measured in
            // docs/BENCHMARKS.md, "one write in flight").
            writes_in_flight_max: 1,
            write_faults: WriteFaults::default(),
            sync_observer: None,
            checkpoint_observer: None,
        }
    }
}

/// Why a record was not committed. Every one is retryable: nothing was answered as done.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CommitError {
    /// The queue to the log is full: try again shortly.
    #[error("the log is busy")]
    Busy,
    /// The log failed a write; this and every later batch fail until the engine restarts.
    #[error("the log failed: {0}")]
    LogFailed(String),
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// This node does not lead the log (it is, or became, a follower): the write may still
    /// commit through the leader it reached before, so retry at the leader with the same
    /// idempotency key. Not a failure of the log: later writes are tried again.
    #[error("this node does not lead the log (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
}

/// What openraft's refusal of a write means for its callers.
pub(crate) fn refused(error: openraft::error::ClientWriteError<NodeId, BasicNode>) -> CommitError {
    match error {
        openraft::error::ClientWriteError::ForwardToLeader(forward) => CommitError::NotLeader {
            leader: forward.leader_id,
        },
        other => CommitError::LogFailed(other.to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
}

/// How long start-up waits for the log's and the state's directory locks before saying they
/// are in use.
const STATE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the checkpoint store, waiting a bounded time for its directory lock: the store
/// writes from threads of its own, so an engine of this process that was just dropped (a restart in
/// place) can hold the lock for a few milliseconds more. Another live process holding the
/// directory still fails, after the wait.
async fn open_state(
    path: &Path,
    settings: SledSettings,
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

struct Submission {
    /// `None` for a barrier: answered once everything submitted before it is.
    record: Option<AccountRecord>,
    done: Done,
}

/// What a submission's owner runs once its fate is known: the record's log index once it is
/// committed and applied, or why not. The engine runs these in submission order on its one
/// answering task (see `answer_loop`), so they must be short (publish, answer). Dropped
/// unrun (the engine stopped with it queued), it runs with [`CommitError::ShuttingDown`], so
/// every submission hears exactly once.
pub struct Done(Option<Finish>);

type Finish = Box<dyn FnOnce(Result<u64, CommitError>) + Send>;

impl Done {
    pub fn new(done: impl FnOnce(Result<u64, CommitError>) + Send + 'static) -> Self {
        Self(Some(Box::new(done)))
    }

    fn finish(mut self, result: Result<u64, CommitError>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(CommitError::ShuttingDown));
        }
    }
}

/// A place in the log's queue, taken before the caller commits itself to what it submits:
/// an actor takes one before it applies a decision, so a full queue refuses the decision
/// without changing the account.
pub struct Slot<'a>(mpsc::Permit<'a, Submission>);

impl Slot<'_> {
    /// Submits `record`, or a barrier if `None`; `done` runs once its fate is known, after
    /// every earlier submission's.
    pub fn submit(self, record: Option<AccountRecord>, done: Done) {
        self.0.send(Submission { record, done });
    }
}

/// Counters the engine keeps for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Log entries written (each one fdatasync of the log).
    pub batches: AtomicU64,
    /// Account records written.
    pub records: AtomicU64,
}

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
        let thread = EngineThread::start()?;
        let mut engine = thread
            .handle
            .spawn(Self::open_here(config))
            .await
            .map_err(|e| OpenError::Raft(format!("the engine thread stopped: {e}")))??;
        engine.thread = Some(thread);
        Ok(engine)
    }

    /// [`Engine::open`] on the current runtime (the engine thread's).
    async fn open_here(config: EngineConfig) -> Result<Engine, OpenError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let pan_key = PanKey::load_or_create(&config.data_dir)?;
        let started = std::time::Instant::now();
        let log = waiting_for_lock(|| LogStore::open(&config.data_dir.join("log")))
            .await?
            .with_faults(config.write_faults.clone())
            .with_sync_observer(config.sync_observer.clone());
        tracing::info!(log_ms = started.elapsed().as_millis(), "raft log opened");
        // A data directory from before decision 0023 keeps its checkpoint in sled: moved
        // into the store once, before the store opens.
        let state_dir = config.data_dir.join(crate::STATE_DIR);
        let sled_dir = config.data_dir.join(crate::SLED_STATE_DIR);
        waiting_for_lock(|| crate::checkpoint::move_from_sled(&sled_dir, &state_dir)).await?;
        let machine =
            open_state(&state_dir, config.sled, config.checkpoint_observer.clone()).await?;
        let reader = machine.reader();
        let fresh = log.state().0.is_none()
            && reader
                .applied()
                .map_err(|e| OpenError::Raft(e.to_string()))?
                .is_none();
        let raft_config = Config {
            cluster_name: "tandem".into(),
            heartbeat_interval: 250,
            election_timeout_min: 500,
            election_timeout_max: 1_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
            max_in_snapshot_log_to_keep: 1_000,
            ..Config::default()
        }
        .validate()
        .map_err(|e| OpenError::Raft(e.to_string()))?;
        let raft = Raft::new(NODE_ID, Arc::new(raft_config), NoNetwork, log, machine)
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        if fresh {
            let mut members = BTreeMap::new();
            members.insert(NODE_ID, BasicNode::default());
            raft.initialize(members)
                .await
                .map_err(|e| OpenError::Raft(e.to_string()))?;
        }
        // Ready once this node leads and has applied everything committed.
        raft.wait(None)
            .current_leader(NODE_ID, "single voter leads")
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        let last_log = raft.metrics().borrow().last_log_index;
        raft.wait(None)
            .applied_index_at_least(last_log, "replayed")
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
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
        let checkpoints = tokio::spawn(checkpoint_timer(
            raft.clone(),
            config.checkpoint_every,
            reader.accounts_shared(),
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
            pan_key,
            thread: None,
        })
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

    /// Writes a consistent copy of the node to `dir` (which must not exist or be empty): a
    /// fresh snapshot covering everything applied when this is called (so every answer given
    /// before it), and the PAN hashing key. [`restore`] turns it back into a data directory.
    pub async fn backup(&self, data_dir: &Path, dir: &Path) -> Result<BackupInfo, BackupError> {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(BackupError::NotEmpty(dir.display().to_string()));
        }
        // openraft builds the image on the state machine's task, between two applies: it is
        // the state exactly at the log index it names, which covers every answer given
        // before this call.
        let snapshot = self
            .raft
            .get_snapshot()
            .await
            .map_err(|e| BackupError::Raft(e.to_string()))?
            .ok_or_else(|| BackupError::Raft("nothing has been applied yet".into()))?;
        let covers = snapshot.meta.last_log_id.map_or(0, |l| l.index);
        let snapshot = crate::state_machine::encode_snapshot(snapshot)?;
        std::fs::create_dir_all(dir)?;
        write_copy(&dir.join(BACKUP_SNAPSHOT), &snapshot)?;
        let key = std::fs::read(data_dir.join(crate::pan_key::PAN_KEY_FILE))?;
        write_copy(&dir.join(crate::pan_key::PAN_KEY_FILE), &key)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(BackupInfo {
            covers_index: covers,
            bytes: snapshot.len() as u64 + key.len() as u64,
        })
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
        let _ = self.raft.shutdown().await;
    }

    /// Stops accepting work, lets queued batches finish, and shuts the Raft node down.
    pub async fn shutdown(mut self) {
        drop(self.queue);
        let _ = self.committer.await;
        let _ = self.answerer.await;
        self.checkpoints.abort();
        let _ = self.raft.shutdown().await;
        drop(self.raft);
        drop(self.reader);
        if let Some(thread) = self.thread.take() {
            thread.join().await;
        }
    }
}

/// Asks openraft for a checkpoint every `every` (openraft skips it while one is being
/// written). The entry count policy asks too, whichever comes first.
///
/// With nothing applied since the last checkpoint there is nothing to write, but accounts at
/// rest still leave memory on the same rule a checkpoint applies (untouched since the last
/// tick, last change in the durable checkpoint, which then holds everything applied): an idle
/// node does not keep every account its last burst of traffic brought in.
async fn checkpoint_timer(raft: Raft<TandemRaft>, every: Duration, accounts: Arc<Accounts>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let last_applied = raft.metrics().borrow().last_applied;
        let checkpointed = raft.metrics().borrow().snapshot;
        if last_applied == checkpointed {
            if let Some(checkpointed) = checkpointed
                && accounts.resting() > 0
            {
                let accounts = accounts.clone();
                let evicting =
                    tokio::task::spawn_blocking(move || accounts.evict_clean(checkpointed.index));
                if evicting.await.is_err() {
                    return;
                }
            }
            continue;
        }
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
    }
}

/// A batch's `Done`s and what became of it, on their way to the answerer.
type Answer = (Vec<Done>, Result<u64, CommitError>);

/// Runs each batch's `Done`s in commit order. Off the committer, so the committer hands the
/// next batch to the log while the last one's callers are answered; one task, so the order
/// holds. Everything the committer answers goes through here, barriers and refusals too.
async fn answer_loop(mut answers: mpsc::UnboundedReceiver<Answer>) {
    while let Some((waiters, result)) = answers.recv().await {
        for waiter in waiters {
            waiter.finish(result.clone());
        }
    }
}

/// A write handed to openraft: its answer, who waits for it, and how many records it holds.
type InFlight = (
    <openraft::impls::OneshotResponder<TandemRaft> as openraft::raft::responder::Responder<
        TandemRaft,
    >>::Receiver,
    Vec<Done>,
    u64,
    std::time::Instant,
);

async fn commit_loop(
    raft: Raft<TandemRaft>,
    mut receiver: mpsc::Receiver<Submission>,
    answers: mpsc::UnboundedSender<Answer>,
    batch_records_max: usize,
    writes_in_flight_max: usize,
    failed: Arc<FailureLatch>,
    stats: Arc<EngineStats>,
) {
    // Writes handed to openraft and not yet answered, oldest first. openraft appends them in
    // the order they were handed over, so answering the oldest first keeps log order.
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // The last index the log committed, for barriers with nothing before them in flight.
    let mut committed = 0u64;
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            biased;
            written = async { (&mut in_flight.front_mut().expect("checked").0).await }, if !in_flight.is_empty() => {
                let (_, waiters, count, handed) = in_flight.pop_front().expect("checked");
                let result = match written {
                    Ok(Ok(response)) => Ok(response.log_id.index),
                    Ok(Err(error)) => Err(refused(error)),
                    Err(_) => Err(CommitError::LogFailed("openraft dropped the write".to_string())),
                };
                match result {
                    Ok(index) => {
                        committed = index;
                        stats.batches.fetch_add(1, Ordering::Relaxed);
                        stats.records.fetch_add(count, Ordering::Relaxed);
                        metrics::histogram!("tandem_commit_batch_records").record(count as f64);
                        metrics::histogram!("tandem_commit_seconds")
                            .record(handed.elapsed().as_secs_f64());
                        let _ = answers.send((waiters, Ok(index)));
                    }
                    Err(error @ CommitError::NotLeader { .. }) => {
                        // Not a failure of the log: the next write is tried (and refused the
                        // same way until this node leads again).
                        let _ = answers.send((waiters, Err(error)));
                    }
                    Err(error) => {
                        failed.trip();
                        tracing::error!(%error, "log write failed; refusing further batches");
                        let _ = answers.send((waiters, Err(error)));
                    }
                }
            }
            first = receiver.recv(), if open && in_flight.len() < writes_in_flight_max => {
                let Some(first) = first else {
                    open = false;
                    continue;
                };
                let mut pending = Vec::with_capacity(batch_records_max.min(1_024));
                pending.push(first);
                while pending.len() < batch_records_max {
                    match receiver.try_recv() {
                        Ok(next) => pending.push(next),
                        Err(_) => break,
                    }
                }
                if failed.is_tripped() {
                    let waiters = pending.into_iter().map(|s| s.done).collect();
                    let _ = answers.send((waiters, Err(CommitError::LogFailed("an earlier batch failed".into()))));
                    continue;
                }
                let mut records = Vec::with_capacity(pending.len());
                let mut waiters = Vec::with_capacity(pending.len());
                for submission in pending {
                    records.extend(submission.record);
                    waiters.push(submission.done);
                }
                if records.is_empty() {
                    // Only barriers: they wait for the last write in flight, or for nothing.
                    match in_flight.back_mut() {
                        Some(last) => last.1.extend(waiters),
                        None => {
                            let _ = answers.send((waiters, Ok(committed)));
                        }
                    }
                    continue;
                }
                let count = records.len() as u64;
                match raft.client_write_ff(LogBatch { records }).await {
                    Ok(responder) => {
                        in_flight.push_back((responder, waiters, count, std::time::Instant::now()))
                    }
                    Err(error) => {
                        failed.trip();
                        let message = error.to_string();
                        let _ = answers.send((waiters, Err(CommitError::LogFailed(message))));
                    }
                }
            }
        }
    }
}

/// A single voter never talks to peers; openraft still wants a network. Every call answers
/// "unreachable", which openraft treats as a transient network error.
#[derive(Clone, Copy)]
pub struct NoNetwork;

#[derive(Debug)]
struct NoPeers;

impl std::fmt::Display for NoPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a single-voter node has no peers")
    }
}

impl std::error::Error for NoPeers {}

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(openraft::error::Unreachable::new(&NoPeers))
}

impl RaftNetworkFactory<TandemRaft> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> Self::Network {
        NoNetwork
    }
}

impl RaftNetwork<TandemRaft> for NoNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TandemRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TandemRaft>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }
}

/// The snapshot file's name inside a backup directory.
pub const BACKUP_SNAPSHOT: &str = "snapshot.bin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The log index the copy covers: every decision answered before the backup began.
    pub covers_index: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not empty; back up into a new directory")]
    NotEmpty(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
}

fn write_copy(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Builds a data directory at `data_dir` (which must not exist or be empty) from a backup
/// made by [`Engine::backup`]. Starting an engine on it serves the backed-up state.
pub async fn restore(backup: &Path, data_dir: &Path) -> Result<u64, BackupError> {
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        return Err(BackupError::NotEmpty(data_dir.display().to_string()));
    }
    let snapshot = std::fs::read(backup.join(BACKUP_SNAPSHOT))?;
    let key = std::fs::read(backup.join(crate::pan_key::PAN_KEY_FILE))?;
    std::fs::create_dir_all(data_dir)?;
    write_copy(&data_dir.join(crate::pan_key::PAN_KEY_FILE), &key)?;
    let mut machine =
        StateMachine::open(&data_dir.join(crate::STATE_DIR), SledSettings::default())?;
    let covers = machine.restore(&snapshot).await?;
    machine.sync()?;
    drop(machine);
    // The log starts empty, purged up to the snapshot: openraft resumes after it.
    let mut log = LogStore::open(&data_dir.join("log"))?;
    if let Some(last) = covers {
        openraft::storage::RaftLogStorage::purge(&mut log, last)
            .await
            .map_err(|e| BackupError::Raft(e.to_string()))?;
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(covers.map_or(0, |l| l.index))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replication seam: a write this node cannot lead is a retryable refusal naming the
    /// leader, not a failure of the log.
    #[test]
    fn a_write_refused_for_not_leading_is_retryable_and_names_the_leader() {
        let forward = openraft::error::ForwardToLeader::<NodeId, BasicNode>::new(
            2,
            BasicNode::new("127.0.0.1:7002"),
        );
        assert_eq!(
            refused(openraft::error::ClientWriteError::ForwardToLeader(forward)),
            CommitError::NotLeader { leader: Some(2) }
        );
        let unknown = openraft::error::ForwardToLeader::<NodeId, BasicNode>::empty();
        assert_eq!(
            refused(openraft::error::ClientWriteError::ForwardToLeader(unknown)),
            CommitError::NotLeader { leader: None }
        );
    }
}
