//! Commands: what someone asks an account to do. Each names its idempotency key and who is
//! acting. The edges (gRPC, HTTP, ISO 8583) build these after checking shape.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::authorization::{Merchant, SpendKind};
use crate::card::CardStatus;
use crate::controls::{Channel, Controls};
use crate::funding::FundingPolicy;
use crate::ids::{AuthorizationId, CardId, IdempotencyKey, MemberId};
use crate::kinds::{AccountKind, AccountStatus};
use crate::member::Role;
use crate::money::Money;
use crate::split::SplitRule;
use crate::time::YearMonth;

/// Who is acting: a member, the platform or a network (not an actor of `tandem-actors`,
/// which are ractor's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// Tandem's operators (an admin key): may do any account management, no card traffic.
    Platform,
    /// A card network or processor: card traffic only.
    Network,
    /// A member of this account, limited by their role.
    Member(MemberId),
}

/// A card spend as the network describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    pub card: CardId,
    /// The whole amount, cashback included.
    pub amount: Money,
    /// The cashback part of `amount`, in the same currency (0 when none).
    pub cashback_minor: i64,
    pub kind: SpendKind,
    pub merchant: Merchant,
    pub channel: Channel,
    /// The expiry the terminal read (DE 14), when sent.
    pub presented_expiry: Option<YearMonth>,
    /// The terminal accepts an approval for less than asked.
    pub partial_allowed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandBody {
    OpenAccount {
        kind: AccountKind,
    },
    /// Freeze or unfreeze the whole account.
    SetAccountStatus {
        status: AccountStatus,
    },
    CloseAccount,
    AddMember {
        member: MemberId,
        role: Role,
    },
    UpdateMember {
        member: MemberId,
        role: Role,
    },
    RemoveMember {
        member: MemberId,
    },
    IssueCard {
        card: CardId,
        member: MemberId,
        expiry: YearMonth,
    },
    /// Issue `new_card` to the same member and block `card`.
    ReplaceCard {
        card: CardId,
        new_card: CardId,
        expiry: YearMonth,
    },
    SetCardStatus {
        card: CardId,
        status: CardStatus,
    },
    SetMemberControls {
        member: MemberId,
        controls: Controls,
    },
    SetCardControls {
        card: CardId,
        controls: Controls,
    },
    SetSplitRule {
        rule: SplitRule,
    },
    SetFundingPolicy {
        policy: FundingPolicy,
    },
    /// Money in, naming the member who paid it.
    Deposit {
        member: MemberId,
        amount: Money,
    },
    /// Money out by a member: a hold now, a post on completion.
    Withdraw {
        withdrawal: AuthorizationId,
        member: MemberId,
        amount: Money,
    },
    CompleteWithdrawal {
        withdrawal: AuthorizationId,
    },
    CancelWithdrawal {
        withdrawal: AuthorizationId,
    },
    /// `from` paid `to` outside the account (settling up): moves net positions only.
    RecordSettlement {
        from: MemberId,
        to: MemberId,
        amount: Money,
    },

    /// Authorization request (ISO 8583 0100), or with `single_message` a financial request
    /// (0200) that posts at once.
    Authorize {
        authorization: AuthorizationId,
        spend: Spend,
        single_message: bool,
    },
    /// Incremental authorization of an existing lifecycle.
    Increment {
        authorization: AuthorizationId,
        amount: Money,
    },
    /// Reversal. `replacement` is the new total the transaction should stand at (a partial
    /// reversal, DE 95); `None` reverses it fully.
    Reverse {
        authorization: AuthorizationId,
        replacement: Option<Money>,
    },
    /// Stand-in advice (0120): the network already answered; `network_approved` is its answer.
    Advise {
        authorization: AuthorizationId,
        spend: Spend,
        network_approved: bool,
    },
    /// Clearing (0220 or the clearing file). Unmatched, it is a force post.
    Clear {
        authorization: AuthorizationId,
        spend: Spend,
        final_clearing: bool,
    },
    /// A posting with no authorization.
    ForcePost {
        authorization: AuthorizationId,
        spend: Spend,
    },
    /// A merchant credit; `original` links it to a lifecycle when known (best effort).
    Refund {
        refund: AuthorizationId,
        spend: Spend,
        original: Option<AuthorizationId>,
    },
    BalanceInquiry {
        card: CardId,
    },
    /// The edge answered 91 because this authorization was not durable in time: release what
    /// it held and answer 91 to its repeats.
    MarkTimedOut {
        authorization: AuthorizationId,
        original_key: IdempotencyKey,
    },
    /// Housekeeping at `ctx.now`: expire holds that are due, forget old outcomes.
    Sweep,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub key: IdempotencyKey,
    pub actor: Actor,
    pub body: CommandBody,
    /// Other keys under which a card network names the body's lifecycle (ISO 8583: an
    /// original's DE 90 key, a message's DE 37 + PAN hash). `decide` finds the lifecycle
    /// under the body's id first, then under each of these in order; a lifecycle this
    /// command opens is recorded under each free one (`Event::Referenced`), so a later
    /// message that names it either way finds it. Empty for everything else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<AuthorizationId>,
}

impl Command {
    /// A command with no other keys for its lifecycle.
    pub fn new(key: IdempotencyKey, actor: Actor, body: CommandBody) -> Self {
        Self {
            key,
            actor,
            body,
            references: Vec::new(),
        }
    }
}

/// What "the same content" means for an idempotency key: who sent it, the command's type
/// (with the flags that change its meaning: final or not, approved or not), the lifecycle it
/// concerns, the card (or member, or other subject) and the amount with its currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fingerprint {
    Of {
        actor: Actor,
        kind: CompactString,
        authorization: Option<AuthorizationId>,
        subject: Option<CompactString>,
        amount: Option<Money>,
    },
    /// Matches any content: the outcome was recorded for a key whose message we never saw
    /// (a timeout marked before the request arrived).
    Any,
}

impl Fingerprint {
    pub fn matches(&self, other: &Fingerprint) -> bool {
        matches!(self, Fingerprint::Any) || matches!(other, Fingerprint::Any) || self == other
    }
}

impl CommandBody {
    /// A short stable name for the command type.
    pub fn kind_name(&self) -> &'static str {
        match self {
            CommandBody::OpenAccount { .. } => "open_account",
            CommandBody::SetAccountStatus { .. } => "set_account_status",
            CommandBody::CloseAccount => "close_account",
            CommandBody::AddMember { .. } => "add_member",
            CommandBody::UpdateMember { .. } => "update_member",
            CommandBody::RemoveMember { .. } => "remove_member",
            CommandBody::IssueCard { .. } => "issue_card",
            CommandBody::ReplaceCard { .. } => "replace_card",
            CommandBody::SetCardStatus { .. } => "set_card_status",
            CommandBody::SetMemberControls { .. } => "set_member_controls",
            CommandBody::SetCardControls { .. } => "set_card_controls",
            CommandBody::SetSplitRule { .. } => "set_split_rule",
            CommandBody::SetFundingPolicy { .. } => "set_funding_policy",
            CommandBody::Deposit { .. } => "deposit",
            CommandBody::Withdraw { .. } => "withdraw",
            CommandBody::CompleteWithdrawal { .. } => "complete_withdrawal",
            CommandBody::CancelWithdrawal { .. } => "cancel_withdrawal",
            CommandBody::RecordSettlement { .. } => "record_settlement",
            CommandBody::Authorize {
                single_message: false,
                ..
            } => "authorize",
            CommandBody::Authorize {
                single_message: true,
                ..
            } => "financial_request",
            CommandBody::Increment { .. } => "increment",
            CommandBody::Reverse { .. } => "reverse",
            CommandBody::Advise { .. } => "advise",
            CommandBody::Clear { .. } => "clear",
            CommandBody::ForcePost { .. } => "force_post",
            CommandBody::Refund { .. } => "refund",
            CommandBody::BalanceInquiry { .. } => "balance_inquiry",
            CommandBody::MarkTimedOut { .. } => "mark_timed_out",
            CommandBody::Sweep => "sweep",
        }
    }

    /// Traffic from a card network (answered with declines and ISO 8583 codes), as opposed
    /// to account management.
    pub fn is_card_traffic(&self) -> bool {
        matches!(
            self,
            CommandBody::Authorize { .. }
                | CommandBody::Increment { .. }
                | CommandBody::Reverse { .. }
                | CommandBody::Advise { .. }
                | CommandBody::Clear { .. }
                | CommandBody::ForcePost { .. }
                | CommandBody::Refund { .. }
                | CommandBody::BalanceInquiry { .. }
                | CommandBody::MarkTimedOut { .. }
        )
    }

    /// The lifecycle id of a card-traffic body (a refund's own; not a withdrawal's).
    pub fn lifecycle(&self) -> Option<&AuthorizationId> {
        match self {
            CommandBody::Authorize { authorization, .. }
            | CommandBody::Increment { authorization, .. }
            | CommandBody::Reverse { authorization, .. }
            | CommandBody::Advise { authorization, .. }
            | CommandBody::Clear { authorization, .. }
            | CommandBody::ForcePost { authorization, .. }
            | CommandBody::MarkTimedOut { authorization, .. } => Some(authorization),
            CommandBody::Refund { refund, .. } => Some(refund),
            _ => None,
        }
    }

    /// The lifecycle id of a card-traffic body, to change it (`decide` resolves a network's
    /// other keys to the lifecycle they name).
    pub fn lifecycle_mut(&mut self) -> Option<&mut AuthorizationId> {
        match self {
            CommandBody::Authorize { authorization, .. }
            | CommandBody::Increment { authorization, .. }
            | CommandBody::Reverse { authorization, .. }
            | CommandBody::Advise { authorization, .. }
            | CommandBody::Clear { authorization, .. }
            | CommandBody::ForcePost { authorization, .. }
            | CommandBody::MarkTimedOut { authorization, .. } => Some(authorization),
            CommandBody::Refund { refund, .. } => Some(refund),
            _ => None,
        }
    }

    /// The authorization lifecycle this command concerns, if any.
    pub fn authorization(&self) -> Option<&AuthorizationId> {
        match self {
            CommandBody::Withdraw { withdrawal, .. }
            | CommandBody::CompleteWithdrawal { withdrawal }
            | CommandBody::CancelWithdrawal { withdrawal } => Some(withdrawal),
            _ => self.lifecycle(),
        }
    }

    pub fn fingerprint(&self, actor: &Actor) -> Fingerprint {
        let text = |s: &str| Some(CompactString::new(s));
        let (subject, amount): (Option<CompactString>, Option<Money>) = match self {
            CommandBody::AddMember { member, .. }
            | CommandBody::UpdateMember { member, .. }
            | CommandBody::RemoveMember { member }
            | CommandBody::SetMemberControls { member, .. } => (text(member.as_str()), None),
            CommandBody::IssueCard { card, .. }
            | CommandBody::ReplaceCard { card, .. }
            | CommandBody::SetCardStatus { card, .. }
            | CommandBody::SetCardControls { card, .. }
            | CommandBody::BalanceInquiry { card } => (text(card.as_str()), None),
            CommandBody::Deposit { member, amount }
            | CommandBody::Withdraw { member, amount, .. } => {
                (text(member.as_str()), Some(*amount))
            }
            CommandBody::RecordSettlement { from, amount, .. } => {
                (text(from.as_str()), Some(*amount))
            }
            CommandBody::Authorize { spend, .. }
            | CommandBody::Advise { spend, .. }
            | CommandBody::Clear { spend, .. }
            | CommandBody::ForcePost { spend, .. }
            | CommandBody::Refund { spend, .. } => (text(spend.card.as_str()), Some(spend.amount)),
            CommandBody::Increment {
                authorization,
                amount,
            } => (text(authorization.as_str()), Some(*amount)),
            CommandBody::Reverse {
                authorization,
                replacement,
            } => (text(authorization.as_str()), *replacement),
            CommandBody::CompleteWithdrawal { withdrawal }
            | CommandBody::CancelWithdrawal { withdrawal } => (text(withdrawal.as_str()), None),
            CommandBody::MarkTimedOut { authorization, .. } => (text(authorization.as_str()), None),
            CommandBody::OpenAccount { .. }
            | CommandBody::SetAccountStatus { .. }
            | CommandBody::CloseAccount
            | CommandBody::SetSplitRule { .. }
            | CommandBody::SetFundingPolicy { .. }
            | CommandBody::Sweep => (None, None),
        };
        let kind = match self {
            CommandBody::Clear {
                final_clearing: true,
                ..
            } => "clear_final",
            CommandBody::Advise {
                network_approved: false,
                ..
            } => "advise_declined",
            _ => self.kind_name(),
        };
        Fingerprint::Of {
            actor: actor.clone(),
            kind: CompactString::const_new(kind),
            authorization: self.authorization().cloned(),
            subject,
            amount,
        }
    }
}
