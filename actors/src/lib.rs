//! # tandem-actors
//!
//! Resident accounts live on shard actors (ractor): each account belongs to one shard, whose
//! mailbox is the account's total order.
//!
//! - `account.rs`: a resident account (decides, pipelines into the log) and the `Done` it
//!   hands the engine with each record (answers in decision order once durable, publishes
//!   snapshots, tells watchers).
//! - `shard.rs`: the shard actor: makes an account resident on its first message (loaded off
//!   the runtime's workers while the shard serves its other accounts), drops it when a commit
//!   fails, passivates it when idle.
//! - `system.rs`: routing to shards, admission limits, the supervisor that restarts a failed
//!   shard, the published views, and the expiry sweeper.
//! - `cell.rs`: the snapshot cell readers load without locking (model-checked with loom).
//!
//! `docs/actor-semantics.md` states the ordering, pipelining, failure and restart rules.

#[cfg(not(loom))]
pub mod account;
pub mod cell;
#[cfg(not(loom))]
mod shard;
#[cfg(not(loom))]
pub mod system;

#[cfg(not(loom))]
pub use account::{AccountMsg, Change, ExecuteError};
#[cfg(not(loom))]
pub use system::{AccountSystem, SystemConfig};
