//! How the account system runs: its bounds, timers and sizes ([`SystemConfig`]).

use std::time::Duration;
use tandem_core::Policy;

#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub policy: Policy,
    /// Decisions waiting for durability on one account, at most.
    pub in_flight_per_account_max: usize,
    /// Decisions waiting for durability across all accounts, at most.
    pub in_flight_max: usize,
    /// An actor idle this long stops; `None` keeps actors resident.
    pub idle_timeout: Option<Duration>,
    /// Events between account snapshots written to the log, at least.
    pub snapshot_every_events: u64,
    /// ... and at least this many per record the account keeps (lifecycles and outcomes):
    /// a snapshot re-encodes the whole account on its actor, holding up every decision
    /// queued behind it, so a large account snapshots rarely (a load replays at most this
    /// many events per record).
    pub snapshot_events_per_record: u64,
    /// How often the sweeper looks for due holds.
    pub sweep_every: Duration,
    /// Buffer of each account's change stream.
    pub watch_buffer: usize,
    /// Shard actors the resident accounts are spread over. Each runs one message at a time,
    /// so more shards than cores keep a slow decision (a large account's snapshot) from
    /// holding up many accounts; each costs a few kilobytes.
    pub shards: usize,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            in_flight_per_account_max: 1_024,
            in_flight_max: 65_536,
            idle_timeout: Some(Duration::from_secs(300)),
            snapshot_every_events: 512,
            snapshot_events_per_record: 8,
            sweep_every: Duration::from_secs(60),
            watch_buffer: 256,
            shards: 64,
        }
    }
}
