//! # tandem-storage
//!
//! The durable side of Tandem. The log is the truth; the checkpoint store (fjall) holds what is
//! applied from it.
//!
//! - `codec.rs`: the versioned encoding of events and account snapshots (format 1).
//! - `types.rs`: the openraft type configuration; a log entry is a [`LogBatch`] of many
//!   accounts' [`AccountRecord`]s.
//! - `log_store.rs`: the Raft log over `raft-log`, fdatasync'd by its flush worker; each entry
//!   framed with its log format (format 2: records say where an expiry entry moves from; format
//!   3: entries carry settings).
//! - `state_machine/`: what the log's entries are applied to: account snapshots and event
//!   tails, the card and PAN directories, the expiry index. `apply.rs` applies entries (its
//!   pure rules, the first owner and the expiry move, apart from the writes), `reader.rs` is
//!   the read side, `format1.rs` the older log format, `raft.rs` the openraft trait and the
//!   checkpoint builder.
//! - `settings.rs`: the cluster's settings (API keys, FX rates): named bytes written through
//!   the log, applied on every node, held in memory, read through values derived from them.
//! - `accounts.rs`: committed accounts in memory, kept current by the state machine, or
//!   lent to the account's actor, which holds the one copy while it runs.
//! - `keys.rs`: the state's key layout, shared by the state machine and the directories.
//! - `directory.rs`: the card and PAN directories and the bounded cache they are read through
//!   (they are keys of the state; nothing of them is loaded at open).
//! - `checkpoint.rs`: the checkpoint store: applies go to memory, and a checkpoint writes
//!   everything up to one log index to fjall in one batch with `last_applied` and syncs it
//!   before the log may be purged up to it; older data directories' sled is moved into it.
//!   `dirs.rs`: which directory holds it (a snapshot installed is written into a fresh one,
//!   switched to by one rename).
//! - `snapshot.rs`: a snapshot's data as it travels: a stream of records read from the store
//!   pinned at one index, or spooled into a file, never whole in memory.
//! - `engine/`: the single-voter Raft node (`mod.rs`), its config, its errors, the committer
//!   that group-commits and the answering task (`commit.rs`), the checkpoint timer, backup
//!   and restore; `network.rs`: the Raft network (none for a single voter; replication fills it);
//!   `latch.rs`: its failure latch (once a write fails, nothing later is written), loom-checked;
//!   `faults.rs`: the write faults tests and drills inject (the engine's config holds them, the
//!   log store reads them).
//!
//! `docs/durability.md` walks the path fsync by fsync.

#[cfg(not(loom))]
pub mod accounts;
#[cfg(not(loom))]
pub mod checkpoint;
#[cfg(not(loom))]
pub mod codec;
#[cfg(not(loom))]
mod directory;
#[cfg(not(loom))]
mod dirs;
#[cfg(not(loom))]
pub mod engine;
#[cfg(not(loom))]
pub mod faults;
#[cfg(not(loom))]
mod keys;
pub mod latch;
#[cfg(not(loom))]
pub mod log_store;
#[cfg(not(loom))]
pub mod network;
#[cfg(not(loom))]
pub mod pan_key;
#[cfg(not(loom))]
pub mod settings;
#[cfg(not(loom))]
pub mod snapshot;
#[cfg(not(loom))]
pub mod state_machine;
#[cfg(not(loom))]
pub mod types;

#[cfg(not(loom))]
pub use accounts::{Accounts, AppliedWatch, Lease};
#[cfg(not(loom))]
pub use directory::CACHE_ENTRIES_DEFAULT as DIRECTORY_CACHE_ENTRIES_DEFAULT;
#[cfg(not(loom))]
pub use engine::{
    BackupError, BackupInfo, ClusterStatus, CommitError, Done, Engine, EngineConfig, EngineStats,
    Formed, Leader, LeaderWatch, Leadership, MemberStatus, Role, Slot, restore,
};
#[cfg(not(loom))]
pub use faults::WriteFaults;
#[cfg(not(loom))]
pub use pan_key::PanKey;
#[cfg(not(loom))]
pub use settings::{Derived, Settings, SettingsView};
#[cfg(not(loom))]
pub use state_machine::{CheckpointSettings, LoadError, StateMachine, StateReader};
#[cfg(not(loom))]
pub use types::{AccountRecord, ExpiryMove, LogBatch, Setting};

/// The checkpoint store's directory inside a data directory (fjall). Data directories from
/// before decision 0023 hold sled's in `state/` instead, moved over at the first open.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// Where data directories from before decision 0023 hold sled's checkpoint.
pub const LEGACY_SLED_DIR: &str = "state";
