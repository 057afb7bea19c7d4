//! # tandem-actors
//!
//! One ractor actor per shared account; its mailbox is the account's total order.
//!
//! - `account.rs`: the account actor (decides, pipelines into the log) and its completion
//!   task (answers in decision order once durable, publishes snapshots, tells watchers).
//! - `system.rs`: routing to actors (started on first use, found through ractor's registry),
//!   admission limits, the supervisor that restarts a failed actor from durable state,
//!   passivation, and the expiry sweeper.
//! - `cell.rs`: the snapshot cell readers load without locking (model-checked with loom).
//!
//! `docs/actor-semantics.md` states the ordering, pipelining, failure and restart rules.

#[cfg(not(loom))]
pub mod account;
pub mod cell;
#[cfg(not(loom))]
pub mod system;

#[cfg(not(loom))]
pub use account::{AccountMsg, Change, ExecuteError};
#[cfg(not(loom))]
pub use system::{AccountSystem, SystemConfig};
