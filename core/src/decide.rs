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
use crate::funding::{Leg, plan, take_from_legs};
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

/// Keeps an account's history within its limits by count (`limits.rs`): when this
/// decision's events would leave more closed lifecycles, forgettable recorded outcomes or
/// tombstones than an account keeps, the oldest go in the same decision (`Event::Forgotten`,
/// last), down to an eighth below the limit and at most `SWEEP_ITEMS_MAX` of each kind.
/// Nothing this decision touches is a candidate, nor an outcome of an open lifecycle (those
/// are pinned and not counted against the limit). Oldest is by `(closed_at, id)`, `(at, key)`
/// and `(at, id)`, so the choice is the same on every replay and replica. A sweep forgets by
/// time and is left alone.
///
/// Cost: the counts it compares are kept by `apply` (`open_holds`, and in the retention index
/// the outcomes pinned by open lifecycles), so a decision that stays within the limits reads
/// only its own events; one that passes a limit takes the oldest from the retention index
/// (`retention.rs`), walking what it forgets and what it skips. An account holding fewer
/// outcomes and closed lifecycles than the limits, pinned ones included, never builds the
/// index. Per decision that is O(log n) whatever the account keeps open.
fn bound_history(state: &Account, events: &mut Vec<Event>) {
    // The common case, on every decision, is one pass over the events and no allocation:
    // even if every lifecycle, outcome and tombstone they carry were new and forgettable,
    // and every lifecycle they close released all of its outcomes, the account stays within
    // its limits.
    let built = state.retention.built();
    let (mut records, mut recorded_at_most, mut tombstoned_at_most) = (0, 0, 0);
    for event in events.iter() {
        match event {
            Event::Movement(movement) => {
                if let Some(record) = &movement.authorization {
                    records += 1;
                    // Closing a lifecycle releases its pinned outcomes (counted in
                    // `outcomes.len()` already when the index is not built).
                    if !record.state.is_open()
                        && let Some(index) = built
                    {
                        recorded_at_most += index.outcomes_of(&record.id);
                    }
                }
            }
            Event::OutcomeRecorded(_) => recorded_at_most += 1,
            Event::Tombstoned { .. } => tombstoned_at_most += 1,
            Event::Forgotten { .. } => return,
            _ => {}
        }
    }
    let unpinned_before = state.outcomes.len() - built.map_or(0, |index| index.pinned());
    let lifecycles_within =
        state.authorizations.len() - state.open_holds + records <= CLOSED_LIFECYCLES_KEPT_MAX;
    let outcomes_within = unpinned_before + recorded_at_most <= OUTCOMES_KEPT_MAX;
    if lifecycles_within
        && outcomes_within
        && state.tombstones.len() + tombstoned_at_most <= TOMBSTONES_KEPT_MAX
    {
        return;
    }
    // What this decision's events do to each count, exactly.
    let mut touched: rustc_hash::FxHashMap<&AuthorizationId, bool> = Default::default();
    let mut recorded: Vec<(&IdempotencyKey, Option<&AuthorizationId>)> = Vec::new();
    let mut tombstoned: Vec<&AuthorizationId> = Vec::new();
    for event in events.iter() {
        match event {
            Event::Movement(movement) => {
                if let Some(record) = &movement.authorization {
                    touched.insert(&record.id, record.state.is_open());
                }
            }
            Event::OutcomeRecorded(record) => {
                recorded.push((&record.key, record.authorization.as_ref()));
            }
            Event::Tombstoned { authorization, .. } => tombstoned.push(authorization),
            _ => {}
        }
    }
    // The last record of a key is the one that stays.
    recorded.reverse();
    recorded.sort_by(|a, b| a.0.cmp(b.0));
    recorded.dedup_by(|a, b| a.0 == b.0);
    tombstoned.sort_unstable();
    tombstoned.dedup();
    let new_tombstones = tombstoned
        .iter()
        .filter(|id| !state.tombstones.contains_key(**id))
        .count();
    let closed_before = state.authorizations.len() - state.open_holds;
    let closed_after = touched.iter().fold(closed_before, |count, (id, open)| {
        let was_closed = state
            .authorizations
            .get(*id)
            .is_some_and(|a| !a.state.is_open());
        count + usize::from(!*open) - usize::from(was_closed)
    });
    let open = |id: &AuthorizationId| {
        touched
            .get(id)
            .copied()
            .unwrap_or_else(|| state.is_open_lifecycle(id))
    };
    // Closed lifecycles and forgettable outcomes come oldest first from the retention index
    // (built here the first time; `apply` keeps it): finding them costs what is forgotten.
    let index = (!(lifecycles_within && outcomes_within)).then(|| {
        state
            .retention
            .get_or_build(&state.outcomes, &state.authorizations)
    });
    let authorizations = index.map_or_else(Vec::new, |index| {
        oldest_in_order(
            closed_after,
            CLOSED_LIFECYCLES_KEPT_MAX,
            index.closed().map(|(_, id)| id),
            |id| !touched.contains_key(id),
        )
    });
    let outcomes = index.map_or_else(Vec::new, |index| {
        // Forgettable outcomes after this decision: the lifecycles it opens or closes pin or
        // release theirs, and each outcome it records replaces any under the same key.
        let mut unpinned_after = touched.iter().fold(
            state.outcomes.len() - index.pinned(),
            |count, (id, now_open)| {
                let outcomes = index.outcomes_of(id);
                match (state.is_open_lifecycle(id), *now_open) {
                    (true, false) => count + outcomes,
                    (false, true) => count - outcomes,
                    _ => count,
                }
            },
        );
        for (key, lifecycle) in &recorded {
            if let Some(old) = state.outcomes.get(*key)
                && !old.authorization.as_ref().is_some_and(open)
            {
                unpinned_after -= 1;
            }
            if !lifecycle.is_some_and(open) {
                unpinned_after += 1;
            }
        }
        oldest_in_order(
            unpinned_after,
            OUTCOMES_KEPT_MAX,
            index.forgettable().map(|(_, key)| key),
            |key| {
                recorded.binary_search_by(|(k, _)| k.cmp(&key)).is_err()
                    && !state
                        .outcomes
                        .get(key)
                        .and_then(|r| r.authorization.as_ref())
                        .is_some_and(|id| touched.contains_key(id))
            },
        )
    });
    let tombstones = oldest(
        state.tombstones.len() + new_tombstones,
        TOMBSTONES_KEPT_MAX,
        state.tombstones.len(),
        state
            .tombstones
            .iter()
            .filter(|(id, _)| !touched.contains_key(id) && tombstoned.binary_search(id).is_err())
            .map(|(id, at)| (*at, id)),
    );
    if !(authorizations.is_empty() && outcomes.is_empty() && tombstones.is_empty()) {
        events.push(Event::Forgotten {
            outcomes,
            authorizations,
            tombstones,
        });
    }
}

pub use crate::scan::history_items_scanned;
use crate::scan::scanned;

/// The first of `in_order` (oldest first) that `candidate` accepts, as many as bring `count`
/// items down to `kept_after_trim(max)` when `count` is over `max` (at most
/// `SWEEP_ITEMS_MAX`); none otherwise. Sorted by id.
fn oldest_in_order<'s, K: Ord + Clone + 's>(
    count: usize,
    max: usize,
    in_order: impl Iterator<Item = &'s K>,
    mut candidate: impl FnMut(&K) -> bool,
) -> Vec<K> {
    if count <= max {
        return Vec::new();
    }
    let wanted = (count - kept_after_trim(max)).min(SWEEP_ITEMS_MAX);
    let mut walked = 0;
    let mut ids: Vec<K> = in_order
        .inspect(|_| walked += 1)
        .filter(|id| candidate(id))
        .take(wanted)
        .cloned()
        .collect();
    scanned(walked);
    ids.sort_unstable();
    ids
}

/// The ids of the oldest `candidates` (by age, then id) to forget so that `count` items come
/// down to `kept_after_trim(max)`, when `count` is over `max`; none otherwise. Sorted by id.
/// `walked` is how many items the candidates are filtered from (what finding them costs).
fn oldest<'s, A: Ord, K: Ord + Clone + 's>(
    count: usize,
    max: usize,
    walked: usize,
    candidates: impl Iterator<Item = (A, &'s K)>,
) -> Vec<K> {
    if count <= max {
        return Vec::new();
    }
    scanned(walked);
    let wanted = (count - kept_after_trim(max)).min(SWEEP_ITEMS_MAX);
    let mut candidates: Vec<(A, &K)> = candidates.collect();
    if candidates.len() > wanted {
        candidates.select_nth_unstable(wanted);
        candidates.truncate(wanted);
    }
    let mut ids: Vec<K> = candidates.into_iter().map(|(_, id)| id.clone()).collect();
    ids.sort_unstable();
    ids
}

/// The command with its lifecycle found under a network's other keys: the first of the
/// body's id and `command.references` that names a lifecycle (directly, through a recorded
/// reference, or as a tombstone) is the one the command concerns. When none does, the body's
/// id stands, and a lifecycle the command opens is opened under it. Borrowed (no copy) unless
/// the id changes.
fn resolve_lifecycle<'c>(state: &Account, command: &'c Command) -> Cow<'c, Command> {
    let Some(id) = command.body.lifecycle() else {
        return Cow::Borrowed(command);
    };
    if state.references.is_empty() && command.references.is_empty() {
        return Cow::Borrowed(command);
    }
    let found = std::iter::once(id)
        .chain(&command.references)
        .find_map(|key| {
            if let Some(lifecycle) = state.references.get(key) {
                Some(lifecycle)
            } else if state.authorizations.contains_key(key) || state.tombstones.contains_key(key) {
                Some(key)
            } else {
                None
            }
        });
    match found {
        Some(lifecycle) if lifecycle != id => {
            let mut command = command.clone();
            if let Some(slot) = command.body.lifecycle_mut() {
                *slot = lifecycle.clone();
            }
            Cow::Owned(command)
        }
        _ => Cow::Borrowed(command),
    }
}

/// After a decision that opened the command's lifecycle, records each of the command's other
/// keys that is free as a reference to it.
fn record_references(state: &Account, command: &Command, events: &mut Vec<Event>) {
    if command.references.is_empty() {
        return;
    }
    let Some(id) = command.body.lifecycle() else {
        return;
    };
    let opened = !state.authorizations.contains_key(id)
        && events.iter().any(|event| {
            matches!(event, Event::Movement(movement)
                if movement.authorization.as_ref().is_some_and(|a| &a.id == id))
        });
    if !opened {
        return;
    }
    for (n, reference) in command.references.iter().enumerate() {
        let free = reference != id
            && !command.references[..n].contains(reference)
            && !state.references.contains_key(reference)
            && !state.authorizations.contains_key(reference)
            && !state.tombstones.contains_key(reference);
        if free {
            events.push(Event::Referenced {
                reference: reference.clone(),
                authorization: id.clone(),
            });
        }
    }
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

/// Cash part of a spend, for cash (ATM) limits.
fn cash_minor(spend: &Spend) -> i64 {
    if spend.kind == SpendKind::Cash
        || spend.channel == Channel::Atm
        || spend.merchant.mcc == Mcc::ATM
    {
        spend.amount.amount_minor
    } else if spend.kind == SpendKind::PurchaseWithCashback {
        spend.cashback_minor
    } else {
        0
    }
}

/// Channel, category and country rules of one set of controls.
fn check_rules(controls: &Controls, spend: &Spend, is_child: bool) -> Result<(), DeclineReason> {
    let is_atm = spend.channel == Channel::Atm || spend.merchant.mcc == Mcc::ATM;
    if !controls.channels.permits(spend.channel)
        || (is_atm && !controls.channels.permits(Channel::Atm))
    {
        return Err(DeclineReason::ChannelNotPermitted);
    }
    if !controls.permits_mcc(spend.merchant.mcc) || (is_child && child_blocks(spend.merchant.mcc)) {
        return Err(DeclineReason::MerchantCategoryBlocked);
    }
    if let Some(country) = spend.merchant.country
        && controls.blocked_countries.contains(&country)
    {
        return Err(DeclineReason::CountryBlocked);
    }
    Ok(())
}

/// One lifecycle is one spend for count limits: more of a spend whose lifecycle already
/// stands counted (an increment, an advice raising the hold, a clearing above it) charges and
/// checks the amount only.
fn stands_counted(record: &Authorization) -> bool {
    record.usage.iter().any(|c| c.count > 0)
}

/// Adds `new` legs to `legs`, folding a leg into one of the same currency and rate, so a
/// lifecycle's legs stay as few as its funding balances.
fn merge_legs(legs: &mut Vec<Leg>, new: Vec<Leg>) {
    for leg in new {
        match legs
            .iter_mut()
            .find(|l| l.currency == leg.currency && l.rate == leg.rate)
        {
            Some(existing) => {
                existing.amount_minor += leg.amount_minor;
                existing.covers_minor += leg.covers_minor;
            }
            None => legs.push(leg),
        }
    }
}

/// Adds `new` usage charges to `charges`, folding charges to the same counter together.
fn merge_usage(charges: &mut Vec<UsageDelta>, new: Vec<UsageDelta>) {
    for charge in new {
        let same = |c: &&mut UsageDelta| {
            c.subject == charge.subject
                && c.scope == charge.scope
                && c.window == charge.window
                && c.window_id == charge.window_id
                && c.currency == charge.currency
                && c.epoch == charge.epoch
        };
        match charges.iter_mut().find(same) {
            Some(existing) => {
                existing.amount_minor += charge.amount_minor;
                existing.count += charge.count;
            }
            None => charges.push(charge),
        }
    }
}

/// An arithmetic result that must fit; overflowing means the core cannot decide safely.
fn checked(value: Option<i64>) -> Result<i64, DecideError> {
    value.ok_or_else(|| DecideError::Invariant("amount arithmetic overflowed".into()))
}

/// Builds a minimal spend view of an existing lifecycle, for increments and postings.
fn spend_of(record: &Authorization, amount: Money) -> Option<Spend> {
    Some(Spend {
        card: record.card.clone()?,
        amount,
        cashback_minor: 0,
        kind: record.kind,
        merchant: record.merchant.clone()?,
        channel: record.channel.unwrap_or(Channel::Chip),
        presented_expiry: None,
        partial_allowed: false,
    })
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

/// Money changes being assembled for one movement.
#[derive(Default)]
struct Changes {
    held: Vec<Money>,
    entries: Vec<Entry>,
    usage: Vec<UsageDelta>,
}

impl Changes {
    fn hold(&mut self, legs: &[Leg]) {
        self.held
            .extend(legs.iter().map(|l| Money::new(l.amount_minor, l.currency)));
    }

    fn release(&mut self, legs: &[Leg]) {
        self.held
            .extend(legs.iter().map(|l| Money::new(-l.amount_minor, l.currency)));
    }

    fn held_in(&self, currency: Currency) -> i64 {
        self.held
            .iter()
            .filter(|m| m.currency == currency)
            .map(|m| m.amount_minor)
            .sum()
    }

    fn ledger_in(&self, currency: Currency) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.currency == currency)
            .map(|e| e.amount_minor)
            .sum()
    }

    /// Each currency this change touches, once (a change touches one to three currencies,
    /// so a scan beats building a set).
    fn currencies(&self) -> impl Iterator<Item = Currency> + '_ {
        let all = self
            .held
            .iter()
            .map(|m| m.currency)
            .chain(self.entries.iter().map(|e| e.currency));
        let earlier = all.clone();
        all.enumerate()
            .filter(move |(index, currency)| !earlier.clone().take(*index).any(|c| c == *currency))
            .map(|(_, currency)| currency)
    }
}

impl<'a> Decider<'a> {
    fn now(&self) -> crate::time::Timestamp {
        self.ctx.now
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

    // ----- account management -------------------------------------------------------------

    fn set_account_status(&mut self, status: AccountStatus) -> Result<Outcome, DecideError> {
        if !matches!(status, AccountStatus::Active | AccountStatus::Frozen) {
            return Ok(rejected(RejectReason::NotPermitted));
        }
        if self.state.status != status {
            self.events.push(Event::AccountStatusChanged { status });
        }
        Ok(accepted())
    }

    fn close_account(&mut self) -> Result<Outcome, DecideError> {
        if self.state.open_holds > 0 {
            return Ok(rejected(RejectReason::AccountHasOpenHolds));
        }
        if self.state.balances.values().any(|b| b.ledger_minor != 0) {
            return Ok(rejected(RejectReason::AccountHasBalance));
        }
        if self
            .state
            .positions
            .values()
            .flat_map(|p| p.values())
            .any(|v| *v != 0)
        {
            return Ok(rejected(RejectReason::MembersNotSettled));
        }
        self.events.push(Event::AccountStatusChanged {
            status: AccountStatus::Closed,
        });
        Ok(accepted())
    }

    fn owners(&self) -> usize {
        self.state
            .members
            .values()
            .filter(|m| m.role == Role::Owner)
            .count()
    }

    fn add_member(&mut self, member: &MemberId, role: Role) -> Result<Outcome, DecideError> {
        if self.state.members.contains_key(member) {
            return Ok(rejected(RejectReason::MemberExists));
        }
        if self.state.members.len() >= MEMBERS_PER_ACCOUNT_MAX {
            return Ok(rejected(RejectReason::TooManyMembers));
        }
        self.events.push(Event::MemberAdded {
            member: member.clone(),
            role,
        });
        Ok(accepted())
    }

    fn update_member(&mut self, member: &MemberId, role: Role) -> Result<Outcome, DecideError> {
        let Some(current) = self.state.members.get(member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if current.role == Role::Owner && role != Role::Owner && self.owners() == 1 {
            return Ok(rejected(RejectReason::LastOwner));
        }
        if current.role != role {
            self.events.push(Event::MemberRoleChanged {
                member: member.clone(),
                role,
            });
        }
        Ok(accepted())
    }

    fn remove_member(&mut self, member: &MemberId) -> Result<Outcome, DecideError> {
        let Some(current) = self.state.members.get(member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if current.role == Role::Owner && self.owners() == 1 {
            return Ok(rejected(RejectReason::LastOwner));
        }
        if self
            .state
            .positions
            .get(member)
            .is_some_and(|p| p.values().any(|v| *v != 0))
        {
            return Ok(rejected(RejectReason::MemberHasPosition));
        }
        if self
            .state
            .authorizations
            .values()
            .any(|a| a.state.is_open() && &a.member == member)
        {
            return Ok(rejected(RejectReason::AccountHasOpenHolds));
        }
        for card in self
            .state
            .cards
            .values()
            .filter(|c| &c.member == member && c.status != CardStatus::Blocked)
        {
            self.events.push(Event::CardStatusChanged {
                card: card.id.clone(),
                status: CardStatus::Blocked,
            });
        }
        self.events.push(Event::MemberRemoved {
            member: member.clone(),
        });
        Ok(accepted())
    }

    fn issue_card(
        &mut self,
        card: &crate::ids::CardId,
        member: &MemberId,
        expiry: crate::time::YearMonth,
    ) -> Result<Outcome, DecideError> {
        let Some(holder) = self.state.members.get(member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if let Err(reason) = permission::check(
            self.state,
            &self.command.actor,
            Action::IssueCardTo { member: holder },
        ) {
            return Ok(rejected(reason));
        }
        if self.state.cards.contains_key(card) {
            return Ok(rejected(RejectReason::CardExists));
        }
        if self.state.cards.len() >= CARDS_PER_ACCOUNT_MAX {
            return Ok(rejected(RejectReason::TooManyCards));
        }
        self.events.push(Event::CardIssued {
            card: card.clone(),
            member: member.clone(),
            expiry,
        });
        Ok(accepted())
    }

    fn replace_card(
        &mut self,
        card: &crate::ids::CardId,
        new_card: &crate::ids::CardId,
        expiry: crate::time::YearMonth,
    ) -> Result<Outcome, DecideError> {
        let Some(old) = self.state.cards.get(card) else {
            return Ok(rejected(RejectReason::UnknownCard));
        };
        if let Err(reason) = permission::check(
            self.state,
            &self.command.actor,
            Action::ReplaceCard { card: old },
        ) {
            return Ok(rejected(reason));
        }
        if !self.state.members.contains_key(&old.member) {
            return Ok(rejected(RejectReason::UnknownMember));
        }
        if self.state.cards.contains_key(new_card) {
            return Ok(rejected(RejectReason::CardExists));
        }
        if self.state.cards.len() >= CARDS_PER_ACCOUNT_MAX {
            return Ok(rejected(RejectReason::TooManyCards));
        }
        self.events.push(Event::CardReplaced {
            card: card.clone(),
            new_card: new_card.clone(),
            expiry,
        });
        Ok(accepted())
    }

    fn set_card_status(
        &mut self,
        card: &crate::ids::CardId,
        status: CardStatus,
    ) -> Result<Outcome, DecideError> {
        let Some(current) = self.state.cards.get(card) else {
            return Ok(rejected(RejectReason::UnknownCard));
        };
        if let Err(reason) = permission::check(
            self.state,
            &self.command.actor,
            Action::ChangeCardStatus {
                card: current,
                to: status,
            },
        ) {
            return Ok(rejected(reason));
        }
        if current.status == CardStatus::Blocked && status != CardStatus::Blocked {
            return Ok(rejected(RejectReason::CardBlocked));
        }
        if current.status != status {
            self.events.push(Event::CardStatusChanged {
                card: card.clone(),
                status,
            });
        }
        Ok(accepted())
    }

    fn set_member_controls(
        &mut self,
        member: &MemberId,
        controls: &Controls,
    ) -> Result<Outcome, DecideError> {
        let Some(target) = self.state.members.get(member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if let Err(reason) = permission::check(
            self.state,
            &self.command.actor,
            Action::SetControlsOf { member: target },
        ) {
            return Ok(rejected(reason));
        }
        if controls.validate().is_err() {
            return Ok(rejected(RejectReason::InvalidControls));
        }
        self.events.push(Event::MemberControlsSet {
            member: member.clone(),
            controls: Box::new(controls.clone()),
        });
        Ok(accepted())
    }

    fn set_card_controls(
        &mut self,
        card: &crate::ids::CardId,
        controls: &Controls,
    ) -> Result<Outcome, DecideError> {
        let Some(current) = self.state.cards.get(card) else {
            return Ok(rejected(RejectReason::UnknownCard));
        };
        let Some(holder) = self.state.members.get(&current.member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if let Err(reason) = permission::check(
            self.state,
            &self.command.actor,
            Action::SetControlsOf { member: holder },
        ) {
            return Ok(rejected(reason));
        }
        if controls.validate().is_err() {
            return Ok(rejected(RejectReason::InvalidControls));
        }
        self.events.push(Event::CardControlsSet {
            card: card.clone(),
            controls: Box::new(controls.clone()),
        });
        Ok(accepted())
    }

    // ----- money in and out by members -----------------------------------------------------

    fn room_for_currency(&self, currency: Currency) -> bool {
        self.state.balances.contains_key(&currency)
            || self.state.balances.len() < BALANCES_PER_ACCOUNT_MAX
    }

    fn deposit(&mut self, member: &MemberId, amount: Money) -> Result<Outcome, DecideError> {
        if !self.state.members.contains_key(member) {
            return Ok(rejected(RejectReason::UnknownMember));
        }
        if let Err(reason) = permission::check(self.state, &self.command.actor, Action::Deposit) {
            return Ok(rejected(reason));
        }
        if !(1..=AMOUNT_MINOR_MAX).contains(&amount.amount_minor) {
            return Ok(rejected(RejectReason::AmountOutOfRange));
        }
        if !self.room_for_currency(amount.currency) {
            return Ok(rejected(RejectReason::TooManyBalances));
        }
        let balance = self.state.balance(amount.currency);
        let position = self.state.position(member, amount.currency);
        if balance
            .ledger_minor
            .checked_add(amount.amount_minor)
            .is_none()
            || position.checked_add(amount.amount_minor).is_none()
        {
            return Ok(rejected(RejectReason::AmountOutOfRange));
        }
        let changes = Changes {
            entries: vec![Entry {
                kind: EntryKind::Principal,
                currency: amount.currency,
                amount_minor: amount.amount_minor,
                shares: vec![(member.clone(), amount.amount_minor)],
            }],
            ..Changes::default()
        };
        let balance = self.movement(Cause::Deposit, member, None, changes, amount.currency)?;
        Ok(Outcome::Accepted {
            balance: Some(balance),
        })
    }

    fn withdraw(
        &mut self,
        withdrawal: &AuthorizationId,
        member: &MemberId,
        amount: Money,
    ) -> Result<Outcome, DecideError> {
        if !self.state.members.contains_key(member) {
            return Ok(rejected(RejectReason::UnknownMember));
        }
        if let Err(reason) = permission::check(
            self.state,
            &self.command.actor,
            Action::Withdraw { for_member: member },
        ) {
            return Ok(rejected(reason));
        }
        if self.state.status != AccountStatus::Active {
            return Ok(rejected(RejectReason::AccountNotActive));
        }
        if !(1..=AMOUNT_MINOR_MAX).contains(&amount.amount_minor) {
            return Ok(rejected(RejectReason::AmountOutOfRange));
        }
        if self.state.authorizations.contains_key(withdrawal) {
            return Ok(rejected(RejectReason::DuplicateKeyMismatch));
        }
        if self.state.open_holds >= OPEN_HOLDS_PER_ACCOUNT_MAX {
            return Ok(rejected(RejectReason::AccountHasOpenHolds));
        }
        // In a group pot the money belongs to its members by position: one takes out only
        // what they have in. Joint and kid accounts are shared outright.
        if self.state.kind == crate::account::AccountKind::Group
            && self.state.position(member, amount.currency) < amount.amount_minor
        {
            return Ok(rejected(RejectReason::ExceedsOwnPosition));
        }
        if self.state.balance(amount.currency).available_minor() < amount.amount_minor {
            return Ok(rejected(RejectReason::InsufficientFunds));
        }
        let legs = vec![Leg {
            currency: amount.currency,
            amount_minor: amount.amount_minor,
            covers_minor: amount.amount_minor,
            rate: rust_decimal::Decimal::ONE,
        }];
        let record = Box::new(Authorization {
            id: withdrawal.clone(),
            origin_key: self.command.key.clone(),
            card: None,
            member: member.clone(),
            kind: SpendKind::Withdrawal,
            merchant: None,
            channel: None,
            state: LifecycleState::Pending,
            requested: amount,
            authorized_minor: amount.amount_minor,
            legs: legs.clone(),
            posted: Vec::new(),
            cleared_minor: 0,
            credited_minor: 0,
            usage: Vec::new(),
            usage_basis_minor: 0,
            created_at: self.now(),
            expires_at: self
                .now()
                .saturating_add_millis(self.ctx.policy.hold_expiry_ms),
            closed_at: None,
            network_decided: false,
            increments: 0,
            single_message: false,
            review: None,
        });
        let mut changes = Changes::default();
        changes.hold(&legs);
        let balance = self.movement(
            Cause::WithdrawalHeld,
            member,
            Some(record),
            changes,
            amount.currency,
        )?;
        Ok(Outcome::Approved {
            authorization: withdrawal.clone(),
            approved: amount,
            requested: amount,
            approval_code: ApprovalCode::from_sequence(self.state.seq + 1),
            balance,
        })
    }

    fn finish_withdrawal(
        &mut self,
        withdrawal: &AuthorizationId,
        complete: bool,
    ) -> Result<Outcome, DecideError> {
        let Some(record) = self
            .state
            .authorizations
            .get(withdrawal)
            .filter(|r| r.kind == SpendKind::Withdrawal)
        else {
            return Ok(rejected(RejectReason::UnknownWithdrawal));
        };
        if let Err(reason) = permission::check(
            self.state,
            &self.command.actor,
            Action::Withdraw {
                for_member: &record.member,
            },
        ) {
            return Ok(rejected(reason));
        }
        if !record.state.is_open() {
            return Ok(rejected(RejectReason::UnknownWithdrawal));
        }
        let mut record = record.clone();
        let currency = record.spend_currency();
        let mut changes = Changes::default();
        let legs = std::mem::take(&mut record.legs);
        changes.release(&legs);
        let cause = if complete {
            for leg in &legs {
                changes.entries.push(Entry {
                    kind: EntryKind::Principal,
                    currency: leg.currency,
                    amount_minor: -leg.amount_minor,
                    shares: vec![(record.member.clone(), -leg.amount_minor)],
                });
            }
            record.cleared_minor = record.authorized_minor;
            record.posted = legs;
            record.state = LifecycleState::Cleared;
            Cause::WithdrawalPosted
        } else {
            record.state = LifecycleState::Reversed;
            Cause::WithdrawalCancelled
        };
        record.closed_at = Some(self.now());
        self.accept(cause, record, changes, currency)
    }

    fn record_settlement(
        &mut self,
        from: &MemberId,
        to: &MemberId,
        amount: Money,
    ) -> Result<Outcome, DecideError> {
        // Former members keep their positions and can still be settled with.
        if !self.state.positions.contains_key(from)
            || !self.state.positions.contains_key(to)
            || from == to
        {
            return Ok(rejected(RejectReason::UnknownMember));
        }
        if let Err(reason) =
            permission::check(self.state, &self.command.actor, Action::Settle { from, to })
        {
            return Ok(rejected(reason));
        }
        if !(1..=AMOUNT_MINOR_MAX).contains(&amount.amount_minor) {
            return Ok(rejected(RejectReason::AmountOutOfRange));
        }
        if !self.room_for_currency(amount.currency) {
            return Ok(rejected(RejectReason::TooManyBalances));
        }
        let from_position = self.state.position(from, amount.currency);
        let to_position = self.state.position(to, amount.currency);
        if from_position.checked_add(amount.amount_minor).is_none()
            || to_position.checked_sub(amount.amount_minor).is_none()
        {
            return Ok(rejected(RejectReason::AmountOutOfRange));
        }
        let changes = Changes {
            entries: vec![Entry {
                kind: EntryKind::Principal,
                currency: amount.currency,
                amount_minor: 0,
                shares: vec![
                    (from.clone(), amount.amount_minor),
                    (to.clone(), -amount.amount_minor),
                ],
            }],
            ..Changes::default()
        };
        let balance = self.movement(Cause::Settlement, from, None, changes, amount.currency)?;
        Ok(Outcome::Accepted {
            balance: Some(balance),
        })
    }

    // ----- card traffic --------------------------------------------------------------------

    fn valid_amount(amount: Money) -> bool {
        (1..=AMOUNT_MINOR_MAX).contains(&amount.amount_minor)
    }

    fn decline_with_balance(&self, reason: DeclineReason, currency: Currency) -> Outcome {
        let balance = self
            .state
            .balances
            .contains_key(&currency)
            .then(|| self.state.balance_view(currency));
        Outcome::Declined { reason, balance }
    }

    /// Card, account and member checks shared by authorizations and increments.
    fn check_card(
        &self,
        spend: &Spend,
        check_expiry: bool,
    ) -> Result<(&'a crate::card::Card, &'a Member), DeclineReason> {
        let card = self
            .state
            .cards
            .get(&spend.card)
            .ok_or(DeclineReason::UnknownCard)?;
        if self.state.status != AccountStatus::Active {
            return Err(DeclineReason::AccountNotActive);
        }
        match card.status {
            CardStatus::Active => {}
            CardStatus::Frozen => return Err(DeclineReason::CardFrozen),
            CardStatus::Blocked => return Err(DeclineReason::CardBlocked),
        }
        let member = self
            .state
            .members
            .get(&card.member)
            .ok_or(DeclineReason::MemberRemoved)?;
        if check_expiry
            && (card.expiry.has_passed(self.now())
                || spend.presented_expiry.is_some_and(|e| e != card.expiry))
        {
            return Err(DeclineReason::CardExpired);
        }
        Ok((card, member))
    }

    /// The member's and the card's per-transaction limits against a transaction's total.
    fn check_per_transaction(
        &self,
        card: &crate::card::Card,
        member: &Member,
        total: Money,
    ) -> Result<(), DeclineReason> {
        for limit in [
            member.controls.per_transaction,
            card.controls.per_transaction,
        ]
        .into_iter()
        .flatten()
        {
            let counted = self
                .ctx
                .rates
                .convert(total, limit.currency, Rounding::UpToCover)
                .map_err(|_| DeclineReason::NoExchangeRate)?;
            if counted.amount_minor > limit.amount_minor {
                return Err(DeclineReason::PerTransactionLimitExceeded);
            }
        }
        Ok(())
    }

    /// Usage charges for `amount` of `spend` against both subjects' limits; with `enforce`,
    /// the first limit it would break declines it. `new_spend` is false for more of a spend
    /// already counted, which charges amounts but no count.
    fn usage_charges(
        &self,
        card: &crate::card::Card,
        member: &Member,
        spend: &Spend,
        amount: Money,
        enforce: bool,
        new_spend: bool,
    ) -> Result<Vec<UsageDelta>, DeclineReason> {
        let mut charges = Vec::new();
        let cash = if amount == spend.amount {
            cash_minor(spend)
        } else {
            cash_minor(spend).min(amount.amount_minor)
        };
        let subjects: [(UsageSubject, &Controls, &Usage); 2] = [
            (
                UsageSubject::Member(member.id.clone()),
                &member.controls,
                &member.usage,
            ),
            (
                UsageSubject::Card(card.id.clone()),
                &card.controls,
                &card.usage,
            ),
        ];
        let now = self.now();
        for (subject, controls, usage) in subjects {
            if let Some(limit) = controls.per_transaction
                && enforce
            {
                let counted = self
                    .ctx
                    .rates
                    .convert(amount, limit.currency, Rounding::UpToCover)
                    .map_err(|_| DeclineReason::NoExchangeRate)?;
                if counted.amount_minor > limit.amount_minor {
                    return Err(DeclineReason::PerTransactionLimitExceeded);
                }
            }
            for limit in &controls.window_limits {
                let counted_minor = match limit.scope {
                    LimitScope::All => amount.amount_minor,
                    LimitScope::Cash if cash > 0 => cash,
                    LimitScope::Cash => continue,
                };
                let counted = Money::new(counted_minor, amount.currency);
                let currency = limit.amount.map(|a| a.currency);
                let charge_minor = match limit.amount {
                    Some(a) => {
                        match self
                            .ctx
                            .rates
                            .convert(counted, a.currency, Rounding::UpToCover)
                        {
                            Ok(m) => m.amount_minor,
                            Err(_) if enforce => return Err(DeclineReason::NoExchangeRate),
                            Err(_) => continue,
                        }
                    }
                    None => 0,
                };
                if enforce {
                    let (used_minor, used_count) =
                        usage.current(limit.scope, limit.window, now, currency);
                    if let Some(a) = limit.amount
                        && used_minor.saturating_add(charge_minor) > a.amount_minor
                    {
                        return Err(DeclineReason::AmountLimitExceeded);
                    }
                    if let Some(count) = limit.count
                        && new_spend
                        && used_count.saturating_add(1) > count
                    {
                        return Err(DeclineReason::CountLimitExceeded);
                    }
                }
                charges.push(UsageDelta {
                    subject: subject.clone(),
                    scope: limit.scope,
                    window: limit.window,
                    window_id: limit.window.id(now),
                    currency,
                    epoch: usage.epoch_for(limit.scope, limit.window, now, currency),
                    amount_minor: charge_minor,
                    count: i32::from(new_spend),
                });
            }
        }
        Ok(charges)
    }

    /// A new lifecycle for `spend`, holding nothing yet: the caller adds legs, usage and the
    /// approved amount.
    fn new_record(
        &self,
        authorization: &AuthorizationId,
        spend: &Spend,
        member: &MemberId,
        network_decided: bool,
    ) -> Box<Authorization> {
        Box::new(Authorization {
            id: authorization.clone(),
            origin_key: self.command.key.clone(),
            card: Some(spend.card.clone()),
            member: member.clone(),
            kind: spend.kind,
            merchant: Some(spend.merchant.clone()),
            channel: Some(spend.channel),
            state: LifecycleState::Pending,
            requested: spend.amount,
            authorized_minor: 0,
            legs: Vec::new(),
            posted: Vec::new(),
            cleared_minor: 0,
            credited_minor: 0,
            usage: Vec::new(),
            usage_basis_minor: 0,
            created_at: self.now(),
            expires_at: self.now().saturating_add_millis(
                self.ctx.policy.hold_expiry_ms_for(Some(spend.merchant.mcc)),
            ),
            closed_at: None,
            network_decided,
            increments: 0,
            single_message: false,
            review: None,
        })
    }

    fn authorize(
        &mut self,
        authorization: &AuthorizationId,
        spend: &Spend,
        single_message: bool,
    ) -> Result<Outcome, DecideError> {
        let currency = spend.amount.currency;
        if !Self::valid_amount(spend.amount)
            || !(0..=spend.amount.amount_minor).contains(&spend.cashback_minor)
        {
            return Ok(self.decline_with_balance(DeclineReason::InvalidAmount, currency));
        }
        if !self.state.cards.contains_key(&spend.card) {
            return Ok(declined(DeclineReason::UnknownCard));
        }
        if self.state.tombstones.contains_key(authorization) {
            return Ok(self.decline_with_balance(DeclineReason::VoidedByEarlierReversal, currency));
        }
        if self.state.authorizations.contains_key(authorization) {
            return Ok(self.decline_with_balance(DeclineReason::DuplicateKeyMismatch, currency));
        }
        let (card, member) = match self.check_card(spend, true) {
            Ok(found) => found,
            Err(reason) => return Ok(self.decline_with_balance(reason, currency)),
        };
        if self.state.open_holds >= OPEN_HOLDS_PER_ACCOUNT_MAX && !single_message {
            return Ok(self.decline_with_balance(DeclineReason::TooManyOpenHolds, currency));
        }
        // Until an overdraft the network pushed through is cured, nothing new is approved.
        if self.state.is_overdrawn() {
            return Ok(self.decline_with_balance(DeclineReason::AccountOverdrawn, currency));
        }
        let is_child = member.role == Role::Child;
        if let Err(reason) = check_rules(&member.controls, spend, is_child)
            .and_then(|()| check_rules(&card.controls, spend, is_child))
        {
            return Ok(self.decline_with_balance(reason, currency));
        }
        let mut usage = match self.usage_charges(card, member, spend, spend.amount, true, true) {
            Ok(charges) => charges,
            Err(reason) => return Ok(self.decline_with_balance(reason, currency)),
        };
        let funding = plan(
            spend.amount,
            &self.state.balances,
            &self.state.funding_policy,
            self.ctx.rates,
            false,
        );
        let approved_minor = funding.covered_minor();
        if funding.uncovered_minor > 0 {
            if !(spend.partial_allowed && approved_minor > 0) {
                return Ok(self.decline_with_balance(DeclineReason::InsufficientFunds, currency));
            }
            // Charge usage for what is approved, not for what was asked.
            usage = self
                .usage_charges(
                    card,
                    member,
                    spend,
                    Money::new(approved_minor, currency),
                    false,
                    true,
                )
                .unwrap_or_default();
        }
        let mut record = self.new_record(authorization, spend, &member.id, false);
        record.legs = funding.legs;
        record.usage = usage.clone();
        record.authorized_minor = approved_minor;
        record.usage_basis_minor = approved_minor;
        let first_currency = record.legs.first().map_or(currency, |l| l.currency);
        let mut changes = Changes {
            usage,
            ..Changes::default()
        };
        let cause = if single_message {
            let legs = std::mem::take(&mut record.legs);
            self.debit(&mut changes, &legs, &record.member);
            record.posted = legs;
            record.cleared_minor = approved_minor;
            record.state = LifecycleState::Cleared;
            record.closed_at = Some(self.now());
            record.single_message = true;
            Cause::FinancialPosted
        } else {
            changes.hold(&record.legs);
            Cause::Authorized
        };
        let member_id = record.member.clone();
        let balance = self.movement(cause, &member_id, Some(record), changes, first_currency)?;
        Ok(Outcome::Approved {
            authorization: authorization.clone(),
            approved: Money::new(approved_minor, currency),
            requested: spend.amount,
            approval_code: ApprovalCode::from_sequence(self.state.seq + 1),
            balance,
        })
    }

    /// Debit entries for `legs`, split among members by the account's rule.
    fn debit(&self, changes: &mut Changes, legs: &[Leg], payer: &MemberId) {
        let members: Vec<&MemberId> = self.state.members.keys().collect();
        for leg in legs.iter().filter(|l| l.amount_minor != 0) {
            let shares = self
                .state
                .split_rule
                .shares(leg.amount(), payer, &members)
                .into_iter()
                .map(|(m, s)| (m, -s))
                .collect();
            changes.entries.push(Entry {
                kind: EntryKind::Principal,
                currency: leg.currency,
                amount_minor: -leg.amount_minor,
                shares,
            });
        }
    }

    /// Credit entries for `legs` (refunds, credits after clearing), split the same way.
    fn credit(&self, changes: &mut Changes, legs: &[Leg], payer: &MemberId) {
        let members: Vec<&MemberId> = self.state.members.keys().collect();
        for leg in legs.iter().filter(|l| l.amount_minor != 0) {
            let shares = self.state.split_rule.shares(leg.amount(), payer, &members);
            changes.entries.push(Entry {
                kind: EntryKind::Principal,
                currency: leg.currency,
                amount_minor: leg.amount_minor,
                shares,
            });
        }
    }

    fn increment(
        &mut self,
        authorization: &AuthorizationId,
        amount: Money,
    ) -> Result<Outcome, DecideError> {
        // Open lifecycles grow; expired or reversed ones take a fresh hold (domain.md part B).
        // Cleared and timed-out ones are settled and cannot be incremented.
        let Some(record) = self.state.authorizations.get(authorization).filter(|r| {
            r.kind != SpendKind::Withdrawal
                && (r.state.is_open()
                    || matches!(r.state, LifecycleState::Expired | LifecycleState::Reversed))
        }) else {
            return Ok(
                self.decline_with_balance(DeclineReason::UnknownAuthorization, amount.currency)
            );
        };
        if !Self::valid_amount(amount) || amount.currency != record.spend_currency() {
            return Ok(self.decline_with_balance(DeclineReason::InvalidAmount, amount.currency));
        }
        if record.increments >= INCREMENTS_PER_LIFECYCLE_MAX {
            return Ok(self.decline_with_balance(DeclineReason::TooManyIncrements, amount.currency));
        }
        if !record.state.is_open() && self.state.open_holds >= OPEN_HOLDS_PER_ACCOUNT_MAX {
            return Ok(self.decline_with_balance(DeclineReason::TooManyOpenHolds, amount.currency));
        }
        if self.state.is_overdrawn() {
            return Ok(self.decline_with_balance(DeclineReason::AccountOverdrawn, amount.currency));
        }
        let Some(spend) = spend_of(record, amount) else {
            return Ok(
                self.decline_with_balance(DeclineReason::UnknownAuthorization, amount.currency)
            );
        };
        let (card, member) = match self.check_card(&spend, false) {
            Ok(found) => found,
            Err(reason) => return Ok(self.decline_with_balance(reason, amount.currency)),
        };
        let is_child = member.role == Role::Child;
        if let Err(reason) = check_rules(&member.controls, &spend, is_child)
            .and_then(|()| check_rules(&card.controls, &spend, is_child))
        {
            return Ok(self.decline_with_balance(reason, amount.currency));
        }
        let usage =
            match self.usage_charges(card, member, &spend, amount, true, !stands_counted(record)) {
                Ok(charges) => charges,
                Err(reason) => return Ok(self.decline_with_balance(reason, amount.currency)),
            };
        // The per-transaction limit bounds the transaction, so an open lifecycle's increments
        // count with what it already authorized.
        if record.state.is_open() {
            let total = Money::new(
                record.authorized_minor.saturating_add(amount.amount_minor),
                amount.currency,
            );
            if let Err(reason) = self.check_per_transaction(card, member, total) {
                return Ok(self.decline_with_balance(reason, amount.currency));
            }
        }
        let funding = plan(
            amount,
            &self.state.balances,
            &self.state.funding_policy,
            self.ctx.rates,
            false,
        );
        if funding.uncovered_minor > 0 {
            return Ok(self.decline_with_balance(DeclineReason::InsufficientFunds, amount.currency));
        }
        let mut record = record.clone();
        let cause = if record.state.is_open() {
            Cause::Incremented
        } else {
            record.state = if record.cleared_minor > 0 {
                LifecycleState::PartiallyCleared
            } else {
                LifecycleState::Pending
            };
            record.closed_at = None;
            Cause::Reopened
        };
        let first_currency = funding.legs.first().map_or(amount.currency, |l| l.currency);
        let mut changes = Changes {
            usage: usage.clone(),
            ..Changes::default()
        };
        changes.hold(&funding.legs);
        merge_legs(&mut record.legs, funding.legs);
        merge_usage(&mut record.usage, usage);
        record.usage_basis_minor =
            checked(record.usage_basis_minor.checked_add(amount.amount_minor))?;
        record.authorized_minor =
            checked(record.authorized_minor.checked_add(amount.amount_minor))?;
        record.increments += 1;
        let extended = self.now().saturating_add_millis(
            self.ctx
                .policy
                .hold_expiry_ms_for(record.merchant.as_ref().map(|m| m.mcc)),
        );
        record.expires_at = record.expires_at.max(extended);
        let member_id = record.member.clone();
        let balance = self.movement(cause, &member_id, Some(record), changes, first_currency)?;
        Ok(Outcome::Approved {
            authorization: authorization.clone(),
            approved: amount,
            requested: amount,
            approval_code: ApprovalCode::from_sequence(self.state.seq + 1),
            balance,
        })
    }

    /// Releases `part` of `record`'s open hold (from the last leg backwards) and gives back
    /// the matching share of its usage charges: `part / basis` of each charge, where the basis
    /// is the spend the charges still stand for. Releasing the whole basis gives everything
    /// back, counts included; what was cleared stays charged.
    fn release_part(&self, record: &mut Authorization, part: i64, changes: &mut Changes) {
        let released = take_from_legs(&mut record.legs, part, true);
        changes.release(&released);
        let basis = record.usage_basis_minor;
        let part = part.min(basis);
        if part <= 0 {
            return;
        }
        for charge in &mut record.usage {
            let give_back = if part == basis {
                charge.clone()
            } else {
                let amount_minor = i64::try_from(
                    i128::from(charge.amount_minor) * i128::from(part) / i128::from(basis),
                )
                .expect("fits: below the charge");
                UsageDelta {
                    amount_minor,
                    count: 0,
                    ..charge.clone()
                }
            };
            charge.amount_minor -= give_back.amount_minor;
            charge.count -= give_back.count;
            if give_back.amount_minor != 0 || give_back.count != 0 {
                changes.usage.push(give_back.restoration());
            }
        }
        record.usage.retain(|c| c.amount_minor != 0 || c.count != 0);
        record.usage_basis_minor -= part;
    }

    /// Gives back every usage charge still standing on `record` (counts included).
    fn give_back_usage(&self, record: &mut Authorization, changes: &mut Changes) {
        for charge in record.usage.drain(..) {
            changes.usage.push(charge.restoration());
        }
        record.usage_basis_minor = 0;
    }

    fn release_all(&self, record: &mut Authorization, changes: &mut Changes) {
        let residual = record.residual_minor();
        self.release_part(record, residual, changes);
    }

    /// Closes a lifecycle whose hold was released by a reversal: `Reversed`, or `Cleared` when
    /// some of it had already cleared.
    fn close_reversed(&self, record: &mut Authorization) {
        let state = if record.cleared_minor > 0 {
            LifecycleState::Cleared
        } else {
            LifecycleState::Reversed
        };
        self.close(record, state);
    }

    fn close(&self, record: &mut Authorization, state: LifecycleState) {
        record.state = state;
        record.closed_at = Some(self.now());
        record.legs.clear();
    }

    fn reverse(
        &mut self,
        authorization: &AuthorizationId,
        replacement: Option<Money>,
    ) -> Result<Outcome, DecideError> {
        let Some(record) = self.state.authorizations.get(authorization) else {
            if !self.state.tombstones.contains_key(authorization) {
                self.events.push(Event::Tombstoned {
                    authorization: authorization.clone(),
                    at: self.now(),
                });
            }
            return Ok(accepted());
        };
        if record.kind == SpendKind::Withdrawal {
            return Ok(declined(DeclineReason::UnknownAuthorization));
        }
        let currency = record.spend_currency();
        // The new total the lifecycle should stand at (0 for a full reversal).
        let new_total = match replacement {
            None => 0,
            Some(m)
                if m.currency == currency && (0..=AMOUNT_MINOR_MAX).contains(&m.amount_minor) =>
            {
                m.amount_minor
            }
            Some(m) => {
                return Ok(self.decline_with_balance(DeclineReason::InvalidAmount, m.currency));
            }
        };
        if record.kind == SpendKind::Refund {
            return self.reverse_refund(record, new_total);
        }
        let mut record = record.clone();
        let mut changes = Changes::default();
        let effective_posted = record.cleared_minor - record.credited_minor;
        let cause = match record.state {
            LifecycleState::Pending | LifecycleState::PartiallyCleared => {
                let target_residual = (new_total - record.cleared_minor).max(0);
                let residual = record.residual_minor();
                if target_residual >= residual && new_total >= effective_posted {
                    return Ok(Outcome::Accepted {
                        balance: Some(self.state.balance_view(currency)),
                    });
                }
                if residual > target_residual {
                    self.release_part(&mut record, residual - target_residual, &mut changes);
                }
                if new_total < effective_posted {
                    self.credit_back(&mut record, effective_posted - new_total, &mut changes);
                }
                record.authorized_minor = record
                    .authorized_minor
                    .min(new_total.max(record.cleared_minor));
                if record.residual_minor() == 0 {
                    self.close_reversed(&mut record);
                    Cause::Reversed
                } else {
                    Cause::PartiallyReversed
                }
            }
            LifecycleState::Cleared if new_total < effective_posted => {
                self.credit_back(&mut record, effective_posted - new_total, &mut changes);
                Cause::CreditedAfterClearing
            }
            // Already released: a reversal never releases twice.
            _ => {
                return Ok(Outcome::Accepted {
                    balance: Some(self.state.balance_view(currency)),
                });
            }
        };
        self.accept(cause, record, changes, currency)
    }

    /// The network takes back (part of) a refund it credited: a debit of what is reversed,
    /// split like the refund, which may overdraw (the network decided it).
    fn reverse_refund(
        &mut self,
        record: &Authorization,
        new_total: i64,
    ) -> Result<Outcome, DecideError> {
        let currency = record.spend_currency();
        let remaining = record.cleared_minor - record.credited_minor;
        if new_total >= remaining {
            return Ok(Outcome::Accepted {
                balance: Some(self.state.balance_view(currency)),
            });
        }
        let mut record = Box::new(record.clone());
        let mut changes = Changes::default();
        let taken = take_from_legs(&mut record.posted, remaining - new_total, true);
        let reversed: i64 = taken.iter().map(|l| l.covers_minor).sum();
        self.debit(&mut changes, &taken, &record.member);
        record.credited_minor = checked(record.credited_minor.checked_add(reversed))?;
        self.accept(Cause::RefundReversed, record, changes, currency)
    }

    /// Credits `part` of what `record` posted back to the balances it came from.
    fn credit_back(&self, record: &mut Authorization, part: i64, changes: &mut Changes) {
        let credited = take_from_legs(&mut record.posted, part, true);
        let covered: i64 = credited.iter().map(|l| l.covers_minor).sum();
        self.credit(changes, &credited, &record.member);
        record.credited_minor += covered;
    }

    fn advise(
        &mut self,
        authorization: &AuthorizationId,
        spend: &Spend,
        network_approved: bool,
    ) -> Result<Outcome, DecideError> {
        let currency = spend.amount.currency;
        let ack = |s: &Self| {
            Ok(Outcome::Accepted {
                balance: Some(s.state.balance_view(currency)),
            })
        };
        if !Self::valid_amount(spend.amount) || self.state.tombstones.contains_key(authorization) {
            return ack(self);
        }
        let existing = self.state.authorizations.get(authorization);
        match existing {
            Some(record) if matches!(record.kind, SpendKind::Withdrawal | SpendKind::Refund) => {
                ack(self)
            }
            Some(record) if record.state.is_open() => {
                let mut record = record.clone();
                let mut changes = Changes::default();
                if !network_approved {
                    self.release_all(&mut record, &mut changes);
                    self.close_reversed(&mut record);
                    let member = record.member.clone();
                    let balance = self.movement(
                        Cause::StandInDeclined,
                        &member,
                        Some(record),
                        changes,
                        currency,
                    )?;
                    return Ok(Outcome::Accepted {
                        balance: Some(balance),
                    });
                }
                if spend.amount.currency != record.spend_currency()
                    || spend.amount.amount_minor == record.authorized_minor
                {
                    return ack(self);
                }
                if spend.amount.amount_minor < record.authorized_minor {
                    let part = (record.authorized_minor - spend.amount.amount_minor)
                        .min(record.residual_minor());
                    self.release_part(&mut record, part, &mut changes);
                    if record.residual_minor() == 0 {
                        self.close_reversed(&mut record);
                    }
                } else {
                    let delta = Money::new(
                        spend.amount.amount_minor - record.authorized_minor,
                        currency,
                    );
                    self.hold_network_decided(&mut record, delta, &mut changes);
                }
                record.authorized_minor = spend.amount.amount_minor;
                record.network_decided = true;
                self.accept(Cause::StandInAdjusted, record, changes, currency)
            }
            Some(record)
                if record.state == LifecycleState::TimedOut
                    && network_approved
                    && spend.amount.currency == record.spend_currency() =>
            {
                let mut record = record.clone();
                let mut changes = Changes::default();
                if record.single_message {
                    // A single-message spend the network approved in our place: it posts, as
                    // the 0200 itself would have.
                    self.post_unheld(&mut record, spend.amount, &mut changes);
                    record.cleared_minor =
                        checked(record.cleared_minor.checked_add(spend.amount.amount_minor))?;
                    record.state = LifecycleState::Cleared;
                    record.closed_at = Some(self.now());
                } else {
                    record.state = LifecycleState::Pending;
                    record.closed_at = None;
                    record.authorized_minor = 0;
                    self.hold_network_decided(&mut record, spend.amount, &mut changes);
                }
                record.authorized_minor = spend.amount.amount_minor;
                record.network_decided = true;
                self.accept(Cause::StandInApproved, record, changes, currency)
            }
            Some(_) => ack(self),
            None if network_approved => {
                let Some(card) = self.state.cards.get(&spend.card) else {
                    return ack(self);
                };
                let mut record = self.new_record(authorization, spend, &card.member, true);
                let mut changes = Changes::default();
                self.hold_network_decided(&mut record, spend.amount, &mut changes);
                record.authorized_minor = spend.amount.amount_minor;
                self.accept(Cause::StandInApproved, record, changes, currency)
            }
            None => ack(self),
        }
    }

    /// Adds `amount` to `record`'s hold without checks (the network decided), overdrawing
    /// if it must, and charges usage without enforcing limits.
    fn hold_network_decided(
        &self,
        record: &mut Authorization,
        amount: Money,
        changes: &mut Changes,
    ) {
        let funding = plan(
            amount,
            &self.state.balances,
            &self.state.funding_policy,
            self.ctx.rates,
            true,
        );
        changes.hold(&funding.legs);
        merge_legs(&mut record.legs, funding.legs);
        if let Some(spend) = spend_of(record, amount)
            && let (Some(card), Some(member)) = (
                self.state.cards.get(&spend.card),
                self.state.members.get(&record.member),
            )
            && let Ok(charges) =
                self.usage_charges(card, member, &spend, amount, false, !stands_counted(record))
        {
            changes.usage.extend(charges.iter().cloned());
            record.usage.extend(charges);
            record.usage_basis_minor += amount.amount_minor;
        }
    }

    /// Posts `amount` with no hold behind it (force post, clearing after expiry or above the
    /// hold): funded by policy, overdrawing if it must; usage is charged, not enforced.
    fn post_unheld(&self, record: &mut Authorization, amount: Money, changes: &mut Changes) {
        if amount.amount_minor == 0 {
            return;
        }
        let funding = plan(
            amount,
            &self.state.balances,
            &self.state.funding_policy,
            self.ctx.rates,
            true,
        );
        self.debit(changes, &funding.legs, &record.member);
        merge_legs(&mut record.posted, funding.legs);
        if let Some(spend) = spend_of(record, amount)
            && let (Some(card), Some(member)) = (
                self.state.cards.get(&spend.card),
                self.state.members.get(&record.member),
            )
            && let Ok(charges) =
                self.usage_charges(card, member, &spend, amount, false, !stands_counted(record))
        {
            changes.usage.extend(charges);
        }
    }

    fn clear(
        &mut self,
        authorization: &AuthorizationId,
        spend: &Spend,
        final_clearing: bool,
    ) -> Result<Outcome, DecideError> {
        let currency = spend.amount.currency;
        if !(0..=AMOUNT_MINOR_MAX).contains(&spend.amount.amount_minor) {
            return Ok(self.decline_with_balance(DeclineReason::InvalidAmount, currency));
        }
        let amount_minor = spend.amount.amount_minor;
        let mut changes = Changes::default();
        let (mut record, cause) = match self.state.authorizations.get(authorization) {
            Some(record) if matches!(record.kind, SpendKind::Withdrawal | SpendKind::Refund) => {
                return Ok(declined(DeclineReason::UnknownAuthorization));
            }
            Some(record) if record.state.is_open() && record.spend_currency() == currency => {
                if amount_minor == 0 && !final_clearing {
                    return Ok(Outcome::Accepted {
                        balance: Some(self.state.balance_view(currency)),
                    });
                }
                if amount_minor == 0 && record.cleared_minor == 0 {
                    // A final clearing of nothing: the merchant took nothing, as a reversal.
                    return self.reverse(authorization, None);
                }
                let mut record = record.clone();
                let cause = self.clear_against_hold(&mut record, amount_minor, &mut changes)?;
                if final_clearing {
                    let rest = record.residual_minor();
                    self.release_part(&mut record, rest, &mut changes);
                    self.close(&mut record, LifecycleState::Cleared);
                } else {
                    record.state = LifecycleState::PartiallyCleared;
                }
                (record, cause)
            }
            Some(record)
                if record.spend_currency() != currency
                    && let Ok(converted) = self.ctx.rates.convert(
                        spend.amount,
                        record.spend_currency(),
                        Rounding::UpToCover,
                    ) =>
            {
                // A clearing in another currency than its authorization clears the same
                // lifecycle, converted at today's rate (rounded up, as any spend).
                let converted = Spend {
                    amount: converted,
                    ..spend.clone()
                };
                return self.clear(authorization, &converted, final_clearing);
            }
            Some(record) if record.spend_currency() != currency => {
                // No rate to convert with: post it as its own amount and leave the hold to its
                // own lifecycle.
                let mut side = self.new_record(authorization, spend, &record.member, true);
                self.post_unheld(&mut side, spend.amount, &mut changes);
                let member = record.member.clone();
                let balance =
                    self.movement(Cause::ForcePosted, &member, None, changes, currency)?;
                return Ok(Outcome::Accepted {
                    balance: Some(balance),
                });
            }
            Some(_) if amount_minor == 0 => return Ok(accepted()),
            Some(record) => {
                // Closed (expired, reversed, timed out, cleared): the network's clearing posts.
                let mut record = record.clone();
                let cause = if record.state == LifecycleState::Expired {
                    Cause::ClearedAfterExpiry
                } else {
                    record.review = Some(ReviewReason::ForcePosted);
                    Cause::ForcePosted
                };
                self.post_unheld(&mut record, spend.amount, &mut changes);
                record.cleared_minor = checked(record.cleared_minor.checked_add(amount_minor))?;
                record.state = LifecycleState::Cleared;
                record.closed_at = Some(self.now());
                (record, cause)
            }
            None => {
                let Some(card) = self.state.cards.get(&spend.card) else {
                    return Ok(declined(DeclineReason::UnknownCard));
                };
                if self.state.tombstones.contains_key(authorization) && amount_minor == 0 {
                    return Ok(accepted());
                }
                let mut record = self.new_record(authorization, spend, &card.member, true);
                record.authorized_minor = amount_minor;
                record.review = Some(ReviewReason::ForcePosted);
                self.post_unheld(&mut record, spend.amount, &mut changes);
                record.cleared_minor = amount_minor;
                record.state = LifecycleState::Cleared;
                record.closed_at = Some(self.now());
                (record, Cause::ForcePosted)
            }
        };
        let tolerance = clearing_tolerance_percent(record.merchant.as_ref().map(|m| m.mcc));
        let tolerated = i128::from(record.authorized_minor) * i128::from(100 + tolerance);
        if record.review.is_none() && i128::from(record.cleared_minor) * 100 > tolerated {
            record.review = Some(ReviewReason::ClearedAboveTolerance);
        }
        let member = record.member.clone();
        let first = record.posted.first().map_or(currency, |l| l.currency);
        let balance = self.movement(cause, &member, Some(record), changes, first)?;
        Ok(Outcome::Accepted {
            balance: Some(balance),
        })
    }

    /// Posts `amount_minor` of a clearing against `record`'s open hold: the held legs first
    /// (a converted leg re-priced at today's rate, the difference booked as an FX entry), then
    /// any excess funded like a fresh spend, which may overdraw.
    fn clear_against_hold(
        &self,
        record: &mut Authorization,
        amount_minor: i64,
        changes: &mut Changes,
    ) -> Result<Cause, DecideError> {
        let currency = record.spend_currency();
        let residual = record.residual_minor();
        let consumed = take_from_legs(&mut record.legs, amount_minor.min(residual), false);
        changes.release(&consumed);
        self.debit(changes, &consumed, &record.member);
        let mut repriced_any = false;
        for leg in consumed {
            // Re-priced only when today's rate differs from the one the hold used, so a
            // partial clearing at an unchanged rate never books a rounding unit as FX.
            let rate_moved = self
                .ctx
                .rates
                .cross(currency, leg.currency)
                .is_ok_and(|rate| rate != leg.rate);
            let repriced = if leg.currency == currency || leg.covers_minor == 0 || !rate_moved {
                None
            } else {
                self.ctx
                    .rates
                    .convert(
                        Money::new(leg.covers_minor, currency),
                        leg.currency,
                        Rounding::UpToCover,
                    )
                    .ok()
                    .filter(|m| m.amount_minor != leg.amount_minor)
            };
            match repriced {
                Some(now) => {
                    // Cost more today: a loss (negative); cost less: a gain.
                    let difference = Leg {
                        amount_minor: now.amount_minor - leg.amount_minor,
                        ..leg.clone()
                    };
                    self.fx_difference(changes, &difference, &record.member);
                    merge_legs(
                        &mut record.posted,
                        vec![Leg {
                            amount_minor: now.amount_minor,
                            ..leg
                        }],
                    );
                    repriced_any = true;
                }
                None => merge_legs(&mut record.posted, vec![leg]),
            }
        }
        record.cleared_minor = checked(record.cleared_minor.checked_add(amount_minor))?;
        Ok(if amount_minor > residual {
            self.post_unheld(
                record,
                Money::new(amount_minor - residual, currency),
                changes,
            );
            Cause::ClearedAboveHold
        } else if repriced_any {
            Cause::ClearedWithFxDifference
        } else {
            Cause::Cleared
        })
    }

    /// An FX-difference entry: `leg.amount_minor` more (positive) or less (negative) debited
    /// than was held, split among members like the spend itself.
    fn fx_difference(&self, changes: &mut Changes, leg: &Leg, payer: &MemberId) {
        let members: Vec<&MemberId> = self.state.members.keys().collect();
        let magnitude = Money::new(leg.amount_minor.abs(), leg.currency);
        let sign = -leg.amount_minor.signum();
        let shares = self
            .state
            .split_rule
            .shares(magnitude, payer, &members)
            .into_iter()
            .map(|(m, share)| (m, share * sign))
            .collect();
        changes.entries.push(Entry {
            kind: EntryKind::FxDifference,
            currency: leg.currency,
            amount_minor: -leg.amount_minor,
            shares,
        });
    }

    fn refund(&mut self, refund: &AuthorizationId, spend: &Spend) -> Result<Outcome, DecideError> {
        let currency = spend.amount.currency;
        if !Self::valid_amount(spend.amount) {
            return Ok(self.decline_with_balance(DeclineReason::InvalidAmount, currency));
        }
        if let Some(existing) = self.state.authorizations.get(refund) {
            // The same refund under another key credits once.
            return Ok(
                if existing.kind == SpendKind::Refund && existing.requested == spend.amount {
                    Outcome::Accepted {
                        balance: Some(self.state.balance_view(currency)),
                    }
                } else {
                    self.decline_with_balance(DeclineReason::DuplicateKeyMismatch, currency)
                },
            );
        }
        let Some(card) = self.state.cards.get(&spend.card) else {
            return Ok(declined(DeclineReason::UnknownCard));
        };
        if !self.room_for_currency(currency) {
            return Ok(rejected(RejectReason::TooManyBalances));
        }
        if self
            .state
            .balance(currency)
            .ledger_minor
            .checked_add(spend.amount.amount_minor)
            .is_none()
        {
            return Ok(self.decline_with_balance(DeclineReason::InvalidAmount, currency));
        }
        let leg = Leg {
            currency,
            amount_minor: spend.amount.amount_minor,
            covers_minor: spend.amount.amount_minor,
            rate: rust_decimal::Decimal::ONE,
        };
        let mut changes = Changes::default();
        self.credit(&mut changes, std::slice::from_ref(&leg), &card.member);
        // A record of the credit, so a repeat under another key credits once and a network
        // reversal of the refund can take it back.
        let mut record = self.new_record(refund, spend, &card.member, true);
        record.kind = SpendKind::Refund;
        record.authorized_minor = spend.amount.amount_minor;
        record.cleared_minor = spend.amount.amount_minor;
        record.posted = vec![leg];
        record.state = LifecycleState::Cleared;
        record.closed_at = Some(self.now());
        let member = card.member.clone();
        let balance = self.movement(Cause::Refunded, &member, Some(record), changes, currency)?;
        Ok(Outcome::Accepted {
            balance: Some(balance),
        })
    }

    fn balance_inquiry(&mut self, card: &crate::ids::CardId) -> Result<Outcome, DecideError> {
        let Some(found) = self.state.cards.get(card) else {
            return Ok(declined(DeclineReason::UnknownCard));
        };
        if self.state.status != AccountStatus::Active {
            return Ok(declined(DeclineReason::AccountNotActive));
        }
        match found.status {
            CardStatus::Active => Ok(Outcome::Balances {
                balances: self.state.balance_views(),
            }),
            CardStatus::Frozen => Ok(declined(DeclineReason::CardFrozen)),
            CardStatus::Blocked => Ok(declined(DeclineReason::CardBlocked)),
        }
    }

    fn mark_timed_out(
        &mut self,
        authorization: &AuthorizationId,
        original_key: &IdempotencyKey,
    ) -> Result<Outcome, DecideError> {
        let unavailable = Outcome::Declined {
            reason: DeclineReason::IssuerUnavailable,
            balance: None,
        };
        let record = self.state.authorizations.get(authorization);
        if record.is_some_and(|r| matches!(r.kind, SpendKind::Withdrawal | SpendKind::Refund)) {
            // Not card traffic the edge answers for: nothing to undo, no answer to rewrite.
            return Ok(accepted());
        }
        match record {
            // The message that opened the lifecycle timed out, and nothing the network decided
            // has touched it since: undo what our late answer did.
            Some(record)
                if record.origin_key == *original_key
                    && !record.network_decided
                    && record.credited_minor == 0
                    && ((record.state == LifecycleState::Pending && record.cleared_minor == 0)
                        || (record.state == LifecycleState::Cleared && record.single_message)) =>
            {
                let mut record = record.clone();
                let mut changes = Changes::default();
                if record.single_message {
                    let posted = record.cleared_minor;
                    self.credit_back(&mut record, posted, &mut changes);
                    self.give_back_usage(&mut record, &mut changes);
                } else {
                    self.release_all(&mut record, &mut changes);
                }
                self.close(&mut record, LifecycleState::TimedOut);
                let member = record.member.clone();
                let currency = record.spend_currency();
                self.movement(Cause::TimedOut, &member, Some(record), changes, currency)?;
            }
            // Another message on this lifecycle (an increment) timed out: the lifecycle stands as
            // the network last knew it; only that message's answer becomes 91.
            Some(record) if record.origin_key != *original_key => {}
            // Cleared, or settled by an advice already: the network's word stands.
            Some(_) => return Ok(accepted()),
            None => {}
        }
        let previous = self.state.outcomes.get(original_key);
        if previous.is_some_and(|p| {
            matches!(
                p.outcome,
                Outcome::Declined {
                    reason: DeclineReason::IssuerUnavailable,
                    ..
                }
            )
        }) {
            return Ok(accepted());
        }
        self.events
            .push(Event::OutcomeRecorded(Box::new(OutcomeRecord {
                key: original_key.clone(),
                fingerprint: previous.map_or(Fingerprint::Any, |p| p.fingerprint.clone()),
                outcome: unavailable,
                authorization: Some(authorization.clone()),
                at: self.now(),
            })));
        Ok(accepted())
    }

    fn sweep(&mut self) -> Result<Outcome, DecideError> {
        let now = self.now();
        let retention = self.ctx.policy.outcome_retention_ms;
        // Due holds, oldest first, then by id: the front of the expiry index `apply` keeps,
        // so finding them costs what they are, not what the account holds.
        let due: Vec<&AuthorizationId> = self
            .state
            .open_expiries
            .iter()
            .take_while(|(expires_at, _)| *expires_at <= now)
            .take(SWEEP_EXPIRIES_MAX)
            .map(|(_, id)| id)
            .collect();
        scanned(due.len());
        for id in due {
            let Some(record) = self.state.authorizations.get(id) else {
                return Err(DecideError::Invariant(format!(
                    "the expiry index names {id}, which is not a lifecycle"
                )));
            };
            let mut record = record.clone();
            let mut changes = Changes::default();
            self.release_all(&mut record, &mut changes);
            let state = if record.cleared_minor > 0 {
                LifecycleState::Cleared
            } else {
                LifecycleState::Expired
            };
            self.close(&mut record, state);
            let member = record.member.clone();
            let currency = record.spend_currency();
            self.movement(Cause::Expired, &member, Some(record), changes, currency)?;
        }
        let past = |at: crate::time::Timestamp| at.saturating_add_millis(retention) <= now;
        // An outcome of a lifecycle is kept while the lifecycle is open and for the retention
        // window after it closed, so a repeat of its first message is still recognised.
        let lifecycle_kept = |id: &AuthorizationId| {
            self.state.authorizations.get(id).is_some_and(|a| {
                a.state.is_open() || a.closed_at.is_none_or(|closed| !past(closed))
            })
        };
        // What is past retention: from the front of the retention index when the account has
        // one (what is past is all it reads, so the sweeper's further rounds in one tick cost
        // no walk of the history), else a walk of the history (an account that never came
        // near a count limit). The same items either way.
        let (mut authorizations, mut outcomes): (Vec<AuthorizationId>, Vec<IdempotencyKey>) =
            match self.state.retention.built() {
                Some(index) => {
                    let closed: Vec<AuthorizationId> = index
                        .closed()
                        .skip_while(|(closed_at, _)| closed_at.is_none())
                        .take_while(|(closed_at, _)| closed_at.is_some_and(past))
                        .map(|(_, id)| id.clone())
                        .collect();
                    let mut walked = closed.len();
                    let outcomes = index
                        .forgettable()
                        .take_while(|(at, _)| past(*at))
                        .inspect(|_| walked += 1)
                        .filter(|(_, key)| {
                            !self
                                .state
                                .outcomes
                                .get(key)
                                .and_then(|r| r.authorization.as_ref())
                                .is_some_and(lifecycle_kept)
                        })
                        .map(|(_, key)| key.clone())
                        .collect();
                    scanned(walked);
                    (closed, outcomes)
                }
                None => {
                    scanned(self.state.authorizations.len() + self.state.outcomes.len());
                    let closed = self
                        .state
                        .authorizations
                        .values()
                        .filter(|a| !a.state.is_open() && a.closed_at.is_some_and(past))
                        .map(|a| a.id.clone())
                        .collect();
                    let outcomes = self
                        .state
                        .outcomes
                        .iter()
                        .filter(|(_, r)| {
                            past(r.at) && !r.authorization.as_ref().is_some_and(lifecycle_kept)
                        })
                        .map(|(k, _)| k.clone())
                        .collect();
                    (closed, outcomes)
                }
            };
        authorizations.sort();
        authorizations.truncate(SWEEP_ITEMS_MAX);
        outcomes.sort();
        outcomes.truncate(SWEEP_ITEMS_MAX);
        scanned(self.state.tombstones.len());
        let mut tombstones: Vec<AuthorizationId> = self
            .state
            .tombstones
            .iter()
            .filter(|(_, at)| past(**at))
            .map(|(id, _)| id.clone())
            .collect();
        tombstones.sort();
        tombstones.truncate(SWEEP_ITEMS_MAX);
        if !(authorizations.is_empty() && outcomes.is_empty() && tombstones.is_empty()) {
            self.events.push(Event::Forgotten {
                outcomes,
                authorizations,
                tombstones,
            });
        }
        Ok(accepted())
    }

    // ----- movements -----------------------------------------------------------------------

    /// Records `record`'s movement and answers `Accepted` with the balance after it.
    fn accept(
        &mut self,
        cause: Cause,
        record: Box<Authorization>,
        changes: Changes,
        currency: Currency,
    ) -> Result<Outcome, DecideError> {
        let member = record.member.clone();
        let balance = self.movement(cause, &member, Some(record), changes, currency)?;
        Ok(Outcome::Accepted {
            balance: Some(balance),
        })
    }

    /// Records one movement, computing the overdraft it causes (refusing to decide if a cause
    /// that may not overdraw would), and returns the view of `currency` afterwards.
    fn movement(
        &mut self,
        cause: Cause,
        member: &MemberId,
        authorization: Option<Box<Authorization>>,
        changes: Changes,
        currency: Currency,
    ) -> Result<BalanceView, DecideError> {
        // Earlier movements of this same decision (a sweep expiring several holds) count too:
        // their totals are folded in once each, when a later movement needs them, so a
        // decision with one movement allocates nothing for them.
        for event in &self.events[self.moved_through..] {
            if let Event::Movement(m) = event {
                let changed = m
                    .held
                    .iter()
                    .map(|h| (h.currency, h.amount_minor, 0))
                    .chain(m.entries.iter().map(|e| (e.currency, 0, e.amount_minor)));
                for (c, held, ledger) in changed {
                    match self
                        .moved
                        .iter_mut()
                        .find(|(currency, _, _)| *currency == c)
                    {
                        Some((_, h, l)) => {
                            *h += held;
                            *l += ledger;
                        }
                        None => self.moved.push((c, held, ledger)),
                    }
                }
            }
        }
        self.moved_through = self.events.len();
        let moved = &self.moved;
        let earlier = |c: Currency| -> (i64, i64) {
            moved
                .iter()
                .find(|(currency, _, _)| *currency == c)
                .map_or((0, 0), |&(_, held, ledger)| (held, ledger))
        };
        let mut overdraft = Vec::new();
        for c in changes.currencies() {
            let balance = self.state.balance(c);
            let (held_before, ledger_before) = earlier(c);
            let before = balance
                .ledger_minor
                .checked_add(ledger_before)
                .and_then(|l| l.checked_sub(balance.held_minor.checked_add(held_before)?))
                .ok_or_else(|| DecideError::Invariant(format!("{c} balance overflow")))?;
            let after = before
                .checked_add(changes.ledger_in(c))
                .and_then(|a| a.checked_sub(changes.held_in(c)))
                .ok_or_else(|| DecideError::Invariant(format!("{c} balance overflow")))?;
            let newly_negative = if after < 0 {
                -after - (-before).max(0)
            } else {
                0
            };
            if newly_negative > 0 {
                if !cause.may_overdraw() {
                    return Err(DecideError::Invariant(format!(
                        "{cause:?} would take {c} available to {after}"
                    )));
                }
                overdraft.push(Money::new(newly_negative, c));
            }
        }
        let (held_before, ledger_before) = earlier(currency);
        let balance = self.state.balance(currency);
        let overflow = || DecideError::Invariant(format!("{currency} balance overflow"));
        let ledger_minor = balance
            .ledger_minor
            .checked_add(ledger_before)
            .and_then(|l| l.checked_add(changes.ledger_in(currency)))
            .ok_or_else(overflow)?;
        let held_minor = balance
            .held_minor
            .checked_add(held_before)
            .and_then(|h| h.checked_add(changes.held_in(currency)))
            .ok_or_else(overflow)?;
        let view = BalanceView {
            currency,
            ledger_minor,
            held_minor,
            available_minor: ledger_minor - held_minor,
        };
        self.events.push(Event::Movement(Box::new(Movement {
            cause,
            at: self.now(),
            member: member.clone(),
            authorization,
            held: changes.held,
            entries: changes.entries,
            usage: changes.usage,
            overdraft,
        })));
        Ok(view)
    }
}
