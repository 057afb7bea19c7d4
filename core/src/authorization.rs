//! One authorization lifecycle (domain.md part B): the hold, what cleared against it, and the
//! usage it charged. Withdrawals use the same record (a hold, then a post).

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::controls::{Channel, Country, Mcc};
use crate::funding::Leg;
use crate::ids::{AuthorizationId, CardId, IdempotencyKey, MemberId};
use crate::money::Money;
use crate::time::Timestamp;
use crate::usage::UsageDelta;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleState {
    /// Approved; the hold is open.
    Pending,
    /// One or more clearings posted; some hold remains open.
    PartiallyCleared,
    /// Final clearing posted (or force-posted); no hold. Still open to credits.
    Cleared,
    /// Reversed before any clearing; hold released.
    Reversed,
    /// The validity window passed with no clearing; hold released. A late clearing still posts.
    Expired,
    /// Our answer reached the network too late (it answered 91 for us); hold released. The
    /// network's advice settles what happened.
    TimedOut,
}

impl LifecycleState {
    /// True while a hold may be open.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            LifecycleState::Pending | LifecycleState::PartiallyCleared
        )
    }
}

/// Why a lifecycle deserves a person's look (a dispute candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    /// Posted with no authorization we approved.
    ForcePosted,
    /// Cleared above what was authorized by more than the category's tolerance (20% for
    /// restaurants and bars, where tips are normal; any excess elsewhere).
    ClearedAboveTolerance,
}

/// The over-capture a category tolerates, in percent of the authorized amount.
pub fn clearing_tolerance_percent(mcc: Option<Mcc>) -> i64 {
    match mcc.map(Mcc::code) {
        Some(5812..=5814) => 20,
        _ => 0,
    }
}

/// What kind of spend a lifecycle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendKind {
    Purchase,
    /// Cash withdrawal (an ATM when the category is 6011).
    Cash,
    /// Purchase with cashback; the cashback part counts against cash limits.
    PurchaseWithCashback,
    /// Money sent out of the account by a member (not a card spend).
    Withdrawal,
    /// A merchant's credit to the card (recorded so it credits once and can be reversed).
    Refund,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Merchant {
    pub mcc: Mcc,
    pub country: Option<Country>,
    pub name: Option<CompactString>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub id: AuthorizationId,
    /// The idempotency key of the message that opened it (its outcome is rewritten on timeout).
    pub origin_key: IdempotencyKey,
    pub card: Option<CardId>,
    pub member: MemberId,
    pub kind: SpendKind,
    pub merchant: Option<Merchant>,
    pub channel: Option<Channel>,
    pub state: LifecycleState,
    /// The amount first asked for, in the spend's currency.
    pub requested: Money,
    /// Everything approved so far (first approval plus increments, after partial reversals),
    /// in the spend's currency.
    pub authorized_minor: i64,
    /// The open hold, per funding balance. Empty once closed.
    pub legs: Vec<Leg>,
    /// What was debited and not yet credited back, per funding balance.
    pub posted: Vec<Leg>,
    /// Total cleared, in the spend's currency.
    pub cleared_minor: i64,
    /// Total credited back after clearing, in the spend's currency.
    pub credited_minor: i64,
    /// Usage charges still standing (given back on reversal or expiry).
    pub usage: Vec<UsageDelta>,
    /// The part of the spend (spend currency) the standing usage charges are for; releasing
    /// part of a hold gives back that fraction of each charge.
    pub usage_basis_minor: i64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    /// The network decided it (stand-in advice or force post), not us.
    pub network_decided: bool,
    /// Incremental authorizations approved so far (bounded by `INCREMENTS_PER_LIFECYCLE_MAX`).
    pub increments: u32,
    /// Approved and posted at once (ISO 8583 0200), with no hold in between.
    pub single_message: bool,
    /// Set when the lifecycle is a dispute candidate.
    pub review: Option<ReviewReason>,
}

impl Authorization {
    /// Open hold, in the spend's currency.
    pub fn residual_minor(&self) -> i64 {
        self.legs.iter().map(|l| l.covers_minor).sum()
    }

    pub fn spend_currency(&self) -> crate::currency::Currency {
        self.requested.currency
    }
}
