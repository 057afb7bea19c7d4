//! The operations every gateway calls, and [`OpError`], their one error type.
//!
//! One file per family, each an `impl App` block of operations over core types and the
//! caller's `Principal`, returning core outcomes or one [`OpError`]. Every operation checks
//! the caller's scope before it looks anything up. The gateways (`crate::edge`) only decode
//! and encode their wire around these calls.
//!
//! - [`card_traffic`]: authorizations, increments, reversals, clearings, advices, force
//!   posts, refunds, balance inquiries, from every gateway (gRPC, the processor stream, HTTP,
//!   ISO 8583), and the rules they share; [`deadline`]: the card networks' deadline rule, and
//!   [`timing_out`] the keys it holds while a timeout mark is not durable.
//! - [`accounts`]: accounts, members, split rule, funding policy, deposits, withdrawals.
//! - [`cards`]: issuing and replacing cards (the card and PAN directories), status, controls.
//! - [`reads`]: balance, committed state (holds, positions), the entries feed.
//! - [`admin`]: API keys, FX rates, fault switches; [`cluster`]: the cluster's status and
//!   forming it.
//! - [`error`]: [`OpError`] and its stable codes (each gateway maps it in its own file);
//!   [`mod@route`]: where an account's commands run; [`forward`]: a write that reached a
//!   follower, carried to the leader.

pub mod accounts;
pub mod admin;
pub mod backup;
pub mod card_traffic;
pub mod cards;
pub mod cluster;
pub mod deadline;
pub mod error;
pub mod forward;
pub mod reads;
pub mod route;
pub mod timing_out;
pub mod watch;

pub use error::OpError;
pub use route::{Route, route};
