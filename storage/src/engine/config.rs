//! What an engine is opened with: the data directory, the checkpoint store's settings, group
//! commit's bounds, the checkpoint cadence, and the test hooks (write faults, observers).

use super::*;

#[derive(Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// This node's id in its Raft group (1 for a single node).
    pub node_id: NodeId,
    /// The cluster's PAN hashing key (`--pan-key-file`); `None` for a single node, which
    /// keeps its own in the data directory.
    pub pan_key: Option<PanKey>,
    pub checkpoint: CheckpointSettings,
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
    /// Log entries kept behind a checkpoint when the log is purged up to it: a follower
    /// that lags by fewer catches up from the log, one that lags by more by a snapshot.
    pub log_kept_after_checkpoint: u64,
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
            .field("node_id", &self.node_id)
            .field("checkpoint", &self.checkpoint)
            .field("batch_records_max", &self.batch_records_max)
            .field("queue_depth_max", &self.queue_depth_max)
            .field("snapshot_every_entries", &self.snapshot_every_entries)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("log_kept_after_checkpoint", &self.log_kept_after_checkpoint)
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
            node_id: NODE_ID,
            pan_key: None,
            checkpoint: CheckpointSettings::default(),
            batch_records_max: 4_096,
            queue_depth_max: 65_536,
            snapshot_every_entries: 20_000,
            checkpoint_every: Duration::from_secs(1),
            log_kept_after_checkpoint: 1_000,
            // One: on two cores, overlapping writes only cut batches smaller (measured in
            // docs/BENCHMARKS.md, "one write in flight").
            writes_in_flight_max: 1,
            write_faults: WriteFaults::default(),
            sync_observer: None,
            checkpoint_observer: None,
        }
    }
}
