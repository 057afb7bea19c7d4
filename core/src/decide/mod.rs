//! `decide(&state, &command, &ctx) -> Decision`: the whole business logic, pure.
//!
//! A decision is an [`Outcome`] (the answer) plus the [`Event`]s to record. Declines and
//! refusals are outcomes and are recorded too, so a repeat gets the same answer. `Err` means
//! the core could not decide (an invariant would break); nothing is recorded then.
//!
//! Order of checks for a spend (each the first that fails answers): idempotency key, sender's
//! permission, amount, card known, tombstone, lifecycle id already used, account active, card
//! status, member still present, card expiry, open-hold bound, account overdrawn, channel,
//! merchant category, country (member's controls, then the card's), limits (member's, then the
//! card's), funds (with partial approval when allowed).

use std::borrow::Cow;

use crate::account::{Account, AccountStatus};
use crate::authorization::{
    Authorization, LifecycleState, ReviewReason, SpendKind, clearing_tolerance_percent,
};
use crate::card::CardStatus;
use crate::command::{Command, CommandBody, Fingerprint, Spend};
use crate::context::DecisionContext;
use crate::controls::{Channel, Controls, LimitScope, Mcc, child_blocks};
use crate::currency::Currency;
use crate::event::{Cause, Entry, EntryKind, Event, Movement, OutcomeRecord};
use crate::funding::{FundingPlan, Leg, plan, take_from_legs};
use crate::fx::Rounding;
use crate::ids::{AuthorizationId, IdempotencyKey, MemberId};
use crate::limits::{
    AMOUNT_MINOR_MAX, BALANCES_PER_ACCOUNT_MAX, CARDS_PER_ACCOUNT_MAX, CLOSED_LIFECYCLES_KEPT_MAX,
    INCREMENTS_PER_LIFECYCLE_MAX, MEMBERS_PER_ACCOUNT_MAX, OPEN_HOLDS_PER_ACCOUNT_MAX,
    OUTCOMES_KEPT_MAX, SWEEP_EXPIRIES_MAX, SWEEP_ITEMS_MAX, TOMBSTONES_KEPT_MAX, kept_after_trim,
};
use crate::member::{Member, Role};
use crate::money::Money;
use crate::outcome::{ApprovalCode, BalanceView, DeclineReason, Outcome, RejectReason};
use crate::permission::{self, Action};
use crate::usage::{Usage, UsageDelta, UsageSubject};

mod advise;
mod authorize;
mod checks;
mod clear;
mod funds;
mod history;
mod idempotency;
mod increment;
mod members;
mod movement;
mod refund;
mod reverse;
mod sweep;
mod time_out;

use self::checks::{check_rules, spend_of, stands_counted};
use self::history::bound_history;
use self::idempotency::{record_references, resolve_lifecycle};
use self::movement::{Changes, merge_legs, merge_usage};

pub use crate::scan::history_items_scanned;

/// The answer to a command and what to record for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub events: Vec<Event>,
    /// True when this is a repeat answered from the recorded outcome (nothing to record).
    pub replayed: bool,
}

/// The core could not decide. Nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("invariant would break: {0}")]
    Invariant(String),
}

/// Decides `command` against `state` at `ctx`. Pure: same inputs, same decision.
pub fn decide(
    state: &Account,
    command: &Command,
    ctx: &DecisionContext<'_>,
) -> Result<Decision, DecideError> {
    let fingerprint = command.body.fingerprint(&command.actor);
    if let Some(recorded) = state.outcomes.get(&command.key) {
        if recorded.fingerprint.matches(&fingerprint) {
            return Ok(Decision {
                outcome: recorded.outcome.clone(),
                events: Vec::new(),
                replayed: true,
            });
        }
        let outcome = if command.body.is_card_traffic() {
            Outcome::Declined {
                reason: DeclineReason::DuplicateKeyMismatch,
                balance: None,
            }
        } else {
            Outcome::Rejected {
                reason: RejectReason::DuplicateKeyMismatch,
            }
        };
        return Ok(Decision {
            outcome,
            events: Vec::new(),
            replayed: false,
        });
    }
    let resolved = resolve_lifecycle(state, command);
    let command: &Command = &resolved;
    let mut decider = Decider {
        state,
        ctx,
        command,
        events: Vec::with_capacity(2),
        moved: Vec::new(),
        moved_through: 0,
    };
    let outcome = decider.run()?;
    let mut events = decider.events;
    record_references(state, command, &mut events);
    // A refusal for lack of permission is not recorded: a caller who may not send a command
    // must not be able to claim its key before the one who may.
    let unauthorized = matches!(
        outcome,
        Outcome::Rejected {
            reason: RejectReason::NotPermitted | RejectReason::NotAMember
        }
    );
    if !matches!(command.body, CommandBody::Sweep) && !unauthorized {
        events.push(Event::OutcomeRecorded(Box::new(OutcomeRecord {
            key: command.key.clone(),
            fingerprint,
            outcome: outcome.clone(),
            authorization: command.body.authorization().cloned(),
            at: ctx.now,
        })));
    }
    bound_history(state, &mut events);
    Ok(Decision {
        outcome,
        events,
        replayed: false,
    })
}

fn declined(reason: DeclineReason) -> Outcome {
    Outcome::Declined {
        reason,
        balance: None,
    }
}

fn rejected(reason: RejectReason) -> Outcome {
    Outcome::Rejected { reason }
}

fn accepted() -> Outcome {
    Outcome::Accepted { balance: None }
}

/// An arithmetic result that must fit; overflowing means the core cannot decide safely.
fn checked(value: Option<i64>) -> Result<i64, DecideError> {
    value.ok_or_else(|| DecideError::Invariant("amount arithmetic overflowed".into()))
}

struct Decider<'a> {
    state: &'a Account,
    ctx: &'a DecisionContext<'a>,
    command: &'a Command,
    events: Vec<Event>,
    /// What this decision's movements in `events[..moved_through]` changed, per currency:
    /// `(currency, held, ledger)`. A sweep expiring many holds checks each against the ones
    /// before it without walking them again.
    moved: Vec<(Currency, i64, i64)>,
    moved_through: usize,
}

impl<'a> Decider<'a> {
    fn now(&self) -> crate::time::Timestamp {
        self.ctx.now
    }

    /// How the account's balances fund `amount` under its funding policy; with `overdraft`,
    /// whatever they do not cover still goes on a balance (`funding::plan`).
    fn fund(&self, amount: Money, overdraft: bool) -> FundingPlan {
        plan(
            amount,
            &self.state.balances,
            &self.state.funding_policy,
            self.ctx.rates,
            overdraft,
        )
    }

    /// Whether the command's actor may do `action` on this account (`permission::check`).
    fn may(&self, action: Action<'_>) -> Result<(), RejectReason> {
        permission::check(self.state, &self.command.actor, action)
    }

    fn run(&mut self) -> Result<Outcome, DecideError> {
        let state = self.state;
        let body = &self.command.body;
        if state.status == AccountStatus::Unopened
            && !matches!(body, CommandBody::OpenAccount { .. })
        {
            return Ok(if body.is_card_traffic() {
                declined(DeclineReason::UnknownCard)
            } else {
                rejected(RejectReason::AccountNotOpen)
            });
        }
        if state.status == AccountStatus::Closed && !matches!(body, CommandBody::Sweep) {
            return Ok(if body.is_card_traffic() {
                declined(DeclineReason::AccountNotActive)
            } else {
                rejected(RejectReason::AccountClosed)
            });
        }
        let action = match body {
            CommandBody::OpenAccount { .. } => Action::OpenAccount,
            CommandBody::Sweep => Action::Housekeeping,
            b if b.is_card_traffic() => Action::CardTraffic,
            _ => Action::ManageAccount,
        };
        // Commands whose permission depends on their target check it in their handler.
        let checked_here = matches!(
            action,
            Action::OpenAccount | Action::Housekeeping | Action::CardTraffic
        ) || matches!(
            body,
            CommandBody::SetAccountStatus { .. }
                | CommandBody::CloseAccount
                | CommandBody::AddMember { .. }
                | CommandBody::UpdateMember { .. }
                | CommandBody::RemoveMember { .. }
                | CommandBody::SetSplitRule { .. }
                | CommandBody::SetFundingPolicy { .. }
        );
        if checked_here && let Err(reason) = permission::check(state, &self.command.actor, action) {
            return Ok(rejected(reason));
        }
        match body {
            CommandBody::OpenAccount { kind } => {
                if state.status != AccountStatus::Unopened {
                    return Ok(rejected(RejectReason::AccountAlreadyOpen));
                }
                self.events.push(Event::AccountOpened {
                    kind: *kind,
                    at: self.now(),
                });
                Ok(accepted())
            }
            CommandBody::SetAccountStatus { status } => self.set_account_status(*status),
            CommandBody::CloseAccount => self.close_account(),
            CommandBody::AddMember { member, role } => self.add_member(member, *role),
            CommandBody::UpdateMember { member, role } => self.update_member(member, *role),
            CommandBody::RemoveMember { member } => self.remove_member(member),
            CommandBody::IssueCard {
                card,
                member,
                expiry,
            } => self.issue_card(card, member, *expiry),
            CommandBody::ReplaceCard {
                card,
                new_card,
                expiry,
            } => self.replace_card(card, new_card, *expiry),
            CommandBody::SetCardStatus { card, status } => self.set_card_status(card, *status),
            CommandBody::SetMemberControls { member, controls } => {
                self.set_member_controls(member, controls)
            }
            CommandBody::SetCardControls { card, controls } => {
                self.set_card_controls(card, controls)
            }
            CommandBody::SetSplitRule { rule } => {
                if rule.validate().is_err() {
                    return Ok(rejected(RejectReason::InvalidSplitRule));
                }
                let names: Vec<&MemberId> = match rule {
                    crate::split::SplitRule::Weighted { weights } => {
                        weights.iter().map(|(m, _)| m).collect()
                    }
                    crate::split::SplitRule::Fixed { amounts, .. } => {
                        amounts.iter().map(|(m, _)| m).collect()
                    }
                    _ => Vec::new(),
                };
                if names.iter().any(|m| !state.members.contains_key(*m)) {
                    return Ok(rejected(RejectReason::UnknownMember));
                }
                self.events.push(Event::SplitRuleSet { rule: rule.clone() });
                Ok(accepted())
            }
            CommandBody::SetFundingPolicy { policy } => {
                if policy.validate().is_err() {
                    return Ok(rejected(RejectReason::InvalidFundingPolicy));
                }
                self.events.push(Event::FundingPolicySet {
                    policy: policy.clone(),
                });
                Ok(accepted())
            }
            CommandBody::Deposit { member, amount } => self.deposit(member, *amount),
            CommandBody::Withdraw {
                withdrawal,
                member,
                amount,
            } => self.withdraw(withdrawal, member, *amount),
            CommandBody::CompleteWithdrawal { withdrawal } => {
                self.finish_withdrawal(withdrawal, true)
            }
            CommandBody::CancelWithdrawal { withdrawal } => {
                self.finish_withdrawal(withdrawal, false)
            }
            CommandBody::RecordSettlement { from, to, amount } => {
                self.record_settlement(from, to, *amount)
            }
            CommandBody::Authorize {
                authorization,
                spend,
                single_message,
            } => self.authorize(authorization, spend, *single_message),
            CommandBody::Increment {
                authorization,
                amount,
            } => self.increment(authorization, *amount),
            CommandBody::Reverse {
                authorization,
                replacement,
            } => self.reverse(authorization, *replacement),
            CommandBody::Advise {
                authorization,
                spend,
                network_approved,
            } => self.advise(authorization, spend, *network_approved),
            CommandBody::Clear {
                authorization,
                spend,
                final_clearing,
            } => self.clear(authorization, spend, *final_clearing),
            CommandBody::ForcePost {
                authorization,
                spend,
            } => self.clear(authorization, spend, true),
            CommandBody::Refund { refund, spend, .. } => self.refund(refund, spend),
            CommandBody::BalanceInquiry { card } => self.balance_inquiry(card),
            CommandBody::MarkTimedOut {
                authorization,
                original_key,
            } => self.mark_timed_out(authorization, original_key),
            CommandBody::Sweep => self.sweep(),
        }
    }
}
