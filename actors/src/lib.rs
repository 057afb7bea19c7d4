//! # tandem-actors
//!
//! Resident accounts live on shard actors (ractor): each account belongs to one shard, whose
//! mailbox is the account's total order.
//!
//! The files stand in layers, each using only those above it:
//! - `cell.rs`: the snapshot cell readers load without locking (model-checked with loom).
//! - `config.rs`: how the system runs (bounds, timers, sizes).
//! - `leadership.rs`: the gate that lets actors decide only while this node leads, from
//!   everything committed before its term.
//! - `view.rs`: an account's published side: its committed snapshot and change stream.
//! - `shared.rs`: what the actors and the system share (engine, config, rates, admission,
//!   views).
//! - `messages.rs`: what callers send an account and get back, and a shard's mailbox.
//! - `account.rs`: a resident account (decides, pipelines into the log) and the `Done` it
//!   hands the engine with each record (answers in decision order once durable, publishes
//!   snapshots, tells watchers).
//! - `shard.rs`: the shard actor: makes an account resident on its first message (loaded off
//!   the runtime's workers while the shard serves its other accounts), drops it when a commit
//!   fails, passivates it when idle.
//! - `system.rs`: routing to shards, admission limits, the supervisor that restarts a failed
//!   shard, and the expiry sweeper.
//!
//! `docs/actor-semantics.md` states the ordering, pipelining, failure and restart rules.

#[cfg(not(loom))]
pub mod account;
pub mod cell;
#[cfg(not(loom))]
pub mod config;
#[cfg(not(loom))]
mod leadership;
#[cfg(not(loom))]
pub mod messages;
#[cfg(not(loom))]
mod shard;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
pub mod system;
#[cfg(not(loom))]
pub mod view;

#[cfg(not(loom))]
pub use config::SystemConfig;
#[cfg(not(loom))]
pub use messages::{AccountMsg, ExecuteError};
#[cfg(not(loom))]
pub use system::AccountSystem;
/// What the server configures below the actors, so that it reaches `tandem-storage` only in
/// its wiring (`serve.rs`, `backup.rs`, `main.rs`).
#[cfg(not(loom))]
pub use tandem_storage::{
    BackupError, BackupInfo, ClusterStatus, DIRECTORY_CACHE_ENTRIES_DEFAULT, Derived, Formed,
    Leader, MemberStatus, Role, Setting, SettingsView, WriteFaults,
};
#[cfg(not(loom))]
pub use view::Change;
