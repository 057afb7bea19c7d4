//! Events: what a decision recorded. Applying them in order rebuilds an account exactly.
//! An event carries every computed value (legs, shares, usage deltas), so `apply` decides
//! nothing and an old log replays the same after the deciding code changes.

use serde::{Deserialize, Serialize};

use crate::authorization::Authorization;
use crate::card::CardStatus;
use crate::command::Fingerprint;
use crate::controls::Controls;
use crate::currency::Currency;
use crate::funding::FundingPolicy;
use crate::ids::{AuthorizationId, CardId, IdempotencyKey, MemberId};
use crate::kinds::{AccountKind, AccountStatus};
use crate::member::Role;
use crate::money::Money;
use crate::outcome::Outcome;
use crate::split::SplitRule;
use crate::time::{Timestamp, YearMonth};
use crate::usage::UsageDelta;

/// Why money moved. Only the causes for which [`Cause::may_overdraw`] is true can take an
/// available balance below zero: the network decided them, not us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Deposit,
    WithdrawalHeld,
    WithdrawalPosted,
    WithdrawalCancelled,
    Authorized,
    /// A single-message (0200) spend: approved and posted at once.
    FinancialPosted,
    Incremented,
    /// An incremental authorization on a lifecycle that had closed: a fresh hold.
    Reopened,
    PartiallyReversed,
    Reversed,
    Expired,
    TimedOut,
    StandInApproved,
    StandInAdjusted,
    StandInDeclined,
    Cleared,
    ClearedAboveHold,
    /// A clearing whose converted legs cost more or less at today's rate than when held.
    ClearedWithFxDifference,
    ClearedAfterExpiry,
    ForcePosted,
    Refunded,
    /// The network took back a refund it had credited.
    RefundReversed,
    CreditedAfterClearing,
    Settlement,
}

impl Cause {
    pub fn may_overdraw(self) -> bool {
        matches!(
            self,
            Cause::StandInApproved
                | Cause::StandInAdjusted
                | Cause::ClearedAboveHold
                | Cause::ClearedWithFxDifference
                | Cause::ClearedAfterExpiry
                | Cause::ForcePosted
                | Cause::RefundReversed
        )
    }
}

/// What an entry is, within its movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// The money the movement is about.
    #[default]
    Principal,
    /// The gain (positive) or loss (negative) from re-pricing a converted leg at clearing:
    /// the hold was converted at the authorization's rate, the clearing at the current one.
    FxDifference,
}

/// Money posted to one currency balance: the ledger changes by `amount_minor` (negative for a
/// debit), and each member's net position by their share; the shares sum to the amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub kind: EntryKind,
    pub currency: Currency,
    pub amount_minor: i64,
    pub shares: Vec<(MemberId, i64)>,
}

/// A change to balances: holds placed or released, entries posted, usage charged or given
/// back, and the lifecycle record as it stands afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub cause: Cause,
    pub at: Timestamp,
    /// The member it is attributed to (the spender, the depositor).
    pub member: MemberId,
    /// The lifecycle after this change, when there is one.
    pub authorization: Option<Box<Authorization>>,
    /// Signed change to `held`, per currency.
    pub held: Vec<Money>,
    pub entries: Vec<Entry>,
    pub usage: Vec<UsageDelta>,
    /// How far this change took available balances below zero, attributed to `member`.
    pub overdraft: Vec<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub outcome: Outcome,
    pub authorization: Option<AuthorizationId>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    AccountOpened {
        kind: AccountKind,
        at: Timestamp,
    },
    AccountStatusChanged {
        status: AccountStatus,
    },
    MemberAdded {
        member: MemberId,
        role: Role,
    },
    MemberRoleChanged {
        member: MemberId,
        role: Role,
    },
    MemberRemoved {
        member: MemberId,
    },
    CardIssued {
        card: CardId,
        member: MemberId,
        expiry: YearMonth,
    },
    CardStatusChanged {
        card: CardId,
        status: CardStatus,
    },
    /// A new card for the same member, inheriting the old card's controls and usage (so a
    /// replacement never resets a limit); the old card is blocked.
    CardReplaced {
        card: CardId,
        new_card: CardId,
        expiry: YearMonth,
    },
    MemberControlsSet {
        member: MemberId,
        controls: Box<Controls>,
    },
    CardControlsSet {
        card: CardId,
        controls: Box<Controls>,
    },
    SplitRuleSet {
        rule: SplitRule,
    },
    FundingPolicySet {
        policy: FundingPolicy,
    },
    Movement(Box<Movement>),
    OutcomeRecorded(Box<OutcomeRecord>),
    /// A reversal arrived for an authorization we have not seen; if it arrives, it is void.
    Tombstoned {
        authorization: AuthorizationId,
        at: Timestamp,
    },
    /// Housekeeping: outcomes, closed lifecycles and tombstones past their retention.
    Forgotten {
        outcomes: Vec<IdempotencyKey>,
        authorizations: Vec<AuthorizationId>,
        tombstones: Vec<AuthorizationId>,
    },
    /// A card network names lifecycle `authorization` also by `reference` (ISO 8583: the
    /// original's DE 90 key), so a later message naming it that way finds it. Forgotten with
    /// the lifecycle. New in storage format 2: keep it the last variant, so format-1 records
    /// decode unchanged.
    Referenced {
        reference: AuthorizationId,
        authorization: AuthorizationId,
    },
}
