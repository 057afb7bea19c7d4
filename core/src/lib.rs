//! # tandem-core
//!
//! The shared-account authorization domain as a pure state machine: no I/O, no clock, no
//! randomness, no async. Everything outside (time, FX rates, policy windows) arrives through a
//! [`DecisionContext`].
//!
//! The two functions that matter:
//! - [`decide`]`(&state, &command, &ctx) -> Decision` — the answer plus the events to record;
//! - [`apply`]`(&mut state, &event)` — folds one event in; replaying events rebuilds state.
//!
//! Where to look:
//! - money and rates: `money.rs` (checked minor units), `currency.rs` (ISO 4217),
//!   `fx.rs` (rate tables and the two named roundings), `funding.rs` (which balances fund a
//!   spend, in legs);
//! - the account: `account.rs` (state and [`Account::validate`], the invariants), `kinds.rs`
//!   (its kind, status and per-currency balance), `small_map.rs` (its small sorted maps),
//!   `recorded.rs` (an outcome kept for repeats), `retention.rs` (the order retention forgets
//!   in), `member.rs`, `card.rs`, `permission.rs` (who may do what);
//! - controls: `controls.rs` (limits, categories, channels, countries), `usage.rs` (window
//!   counters), `time.rs` (UTC windows and card expiry);
//! - the lifecycle: `authorization.rs` (one hold and its history), `decide/` (all rules),
//!   `apply.rs`, `event.rs`, `command.rs`, `outcome.rs` (declines and their ISO 8583 codes);
//! - splits: `split.rs` (largest-remainder shares, settle-up);
//! - bounds: `limits.rs`; `scan.rs` counts the retained history decisions look at.
//!
//! The files stand in layers: none imports one that imports it back.
//!
//! `docs/domain-model.md` explains the model and every rounding rule.

pub mod account;
pub mod apply;
pub mod authorization;
pub mod card;
pub mod command;
pub mod context;
pub mod controls;
pub mod currency;
pub mod decide;
pub mod event;
pub mod funding;
pub mod fx;
pub mod ids;
pub mod kinds;
pub mod limits;
pub mod member;
pub mod money;
pub mod outcome;
pub mod permission;
pub mod recorded;
pub mod retention;
pub mod scan;
pub mod small_map;
pub mod split;
pub mod testkit;
pub mod time;
pub mod usage;
pub mod view;

pub use account::{Account, AccountKind, AccountStatus, Balance, InvariantViolation, SmallMap};
pub use apply::{apply, apply_owned, replay};
pub use authorization::{Authorization, LifecycleState, Merchant, SpendKind};
pub use card::{Card, CardStatus};
pub use command::{Actor, Command, CommandBody, Fingerprint, Spend};
pub use context::{DecisionContext, Policy};
pub use controls::{
    AmountLimit, Channel, Channels, Controls, Country, LimitScope, Mcc, WindowLimit,
};
pub use currency::Currency;
pub use decide::{DecideError, Decision, decide};
pub use event::{Cause, Entry, Event, Movement};
pub use funding::{FundingPolicy, Leg};
pub use fx::{RateTable, Rounding};
pub use ids::{AccountId, AuthorizationId, CardId, IdempotencyKey, MemberId};
pub use member::{Member, Role};
pub use money::Money;
pub use outcome::{ApprovalCode, BalanceView, DeclineReason, Outcome, RejectReason, ResponseCode};
pub use split::{SplitRule, Transfer};
pub use time::{Timestamp, Window, YearMonth};
pub use view::{BalanceSnapshot, LimitUsage, MemberUsage};
