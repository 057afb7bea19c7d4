//! `apply(&mut state, &event)`: folds one recorded event into the state. It decides nothing:
//! every amount, leg, share and usage change is in the event. A panic here means the event
//! stream is not one `decide` produced (a bug or a corrupted log), never a business outcome.

use crate::account::{
    Account, AccountStatus, Balance, RecordedOutcome, fitted_entry, fitted_insert,
};
use crate::card::Card;
use crate::currency::Currency;
use crate::event::{Event, Movement};
use crate::ids::AuthorizationId;
use crate::member::Member;
use crate::usage::{Usage, UsageSubject};

/// Applies a borrowed event (cloning what the state keeps). Replays and tests use this.
pub fn apply(state: &mut Account, event: &Event) {
    apply_owned(state, event.clone());
}

/// Applies an event by value, moving what the state keeps out of it: the path the actor
/// takes once the event has been encoded for the log.
pub fn apply_owned(state: &mut Account, event: Event) {
    match event {
        Event::AccountOpened { kind, at } => {
            state.kind = kind;
            state.status = AccountStatus::Active;
            state.opened_at = Some(at);
        }
        Event::AccountStatusChanged { status } => state.status = status,
        Event::MemberAdded { member, role } => {
            fitted_entry(&mut state.positions, &member);
            fitted_insert(
                &mut state.members,
                member.clone(),
                Member::new(member, role),
            );
        }
        Event::MemberRoleChanged { member, role } => {
            if let Some(found) = state.members.get_mut(&member) {
                found.role = role;
            }
        }
        Event::MemberRemoved { member } => {
            state.members.remove(&member);
        }
        Event::CardIssued {
            card,
            member,
            expiry,
        } => {
            fitted_insert(
                &mut state.cards,
                card.clone(),
                Card {
                    id: card,
                    member,
                    expiry,
                    status: crate::card::CardStatus::Active,
                    controls: Default::default(),
                    usage: Usage::default(),
                },
            );
        }
        Event::CardReplaced {
            card,
            new_card,
            expiry,
        } => {
            if let Some(old) = state.cards.get_mut(&card) {
                old.status = crate::card::CardStatus::Blocked;
                let replacement = Card {
                    id: new_card.clone(),
                    expiry,
                    status: crate::card::CardStatus::Active,
                    ..old.clone()
                };
                fitted_insert(&mut state.cards, new_card, replacement);
            }
        }
        Event::CardStatusChanged { card, status } => {
            if let Some(found) = state.cards.get_mut(&card) {
                found.status = status;
            }
        }
        Event::MemberControlsSet { member, controls } => {
            if let Some(found) = state.members.get_mut(&member) {
                found.controls = *controls;
            }
        }
        Event::CardControlsSet { card, controls } => {
            if let Some(found) = state.cards.get_mut(&card) {
                found.controls = *controls;
            }
        }
        Event::SplitRuleSet { rule } => state.split_rule = rule,
        Event::FundingPolicySet { policy } => state.funding_policy = policy,
        Event::Movement(movement) => apply_movement(state, *movement),
        Event::OutcomeRecorded(record) => {
            let record = *record;
            let indexed_key = state.retention.built().map(|_| record.key.clone());
            let replaced = state.outcomes.insert(
                record.key,
                Box::new(RecordedOutcome {
                    fingerprint: record.fingerprint,
                    outcome: record.outcome,
                    authorization: record.authorization,
                    at: record.at,
                }),
            );
            if let (Some(key), Some(index)) = (indexed_key, state.retention.get_mut()) {
                index.outcome_recorded(
                    &key,
                    replaced.as_deref(),
                    &state.outcomes,
                    &state.authorizations,
                );
            }
        }
        Event::Tombstoned { authorization, at } => {
            state.tombstones.insert(authorization, at);
        }
        Event::Forgotten {
            outcomes,
            authorizations,
            tombstones,
        } => {
            for key in &outcomes {
                let Some(old) = state.outcomes.remove(key) else {
                    continue;
                };
                if let Some(index) = state.retention.get_mut() {
                    index.outcome_forgotten(key, &old, &state.authorizations);
                }
            }
            for id in &authorizations {
                if let Some(removed) = state.authorizations.remove(id) {
                    assert!(!removed.state.is_open(), "forgot an open lifecycle {id}");
                    if let Some(index) = state.retention.get_mut() {
                        index.lifecycle_forgotten(&removed);
                    }
                }
            }
            if !authorizations.is_empty() && !state.references.is_empty() {
                let gone: rustc_hash::FxHashSet<&AuthorizationId> = authorizations.iter().collect();
                state
                    .references
                    .retain(|_, lifecycle| !gone.contains(lifecycle));
            }
            for id in &tombstones {
                state.tombstones.remove(id);
            }
        }
        Event::Referenced {
            reference,
            authorization,
        } => {
            state.references.insert(reference, authorization);
        }
    }
    state.seq += 1;
}

fn balance_mut(state: &mut Account, currency: Currency) -> &mut Balance {
    fitted_entry(&mut state.balances, &currency)
}

fn apply_movement(state: &mut Account, movement: Movement) {
    for held in &movement.held {
        let balance = balance_mut(state, held.currency);
        balance.held_minor = balance
            .held_minor
            .checked_add(held.amount_minor)
            .expect("held overflow");
    }
    for entry in &movement.entries {
        let shares: i64 = entry.shares.iter().map(|(_, s)| s).sum();
        assert_eq!(shares, entry.amount_minor, "shares must sum to the entry");
        let balance = balance_mut(state, entry.currency);
        balance.ledger_minor = balance
            .ledger_minor
            .checked_add(entry.amount_minor)
            .expect("ledger overflow");
        for (member, share) in &entry.shares {
            let position =
                fitted_entry(fitted_entry(&mut state.positions, member), &entry.currency);
            *position = position.checked_add(*share).expect("position overflow");
        }
    }
    for delta in &movement.usage {
        let usage = match &delta.subject {
            UsageSubject::Member(id) => state.members.get_mut(id).map(|m| &mut m.usage),
            UsageSubject::Card(id) => state.cards.get_mut(id).map(|c| &mut c.usage),
        };
        if let Some(usage) = usage {
            usage.apply(delta);
        }
    }
    for overdraft in &movement.overdraft {
        *fitted_entry(
            fitted_entry(&mut state.overdrafts, &overdraft.currency),
            &movement.member,
        ) += overdraft.amount_minor;
    }
    if !state.overdrafts.is_empty() {
        let touched = movement
            .held
            .iter()
            .map(|m| m.currency)
            .chain(movement.entries.iter().map(|e| e.currency));
        for currency in touched {
            if state.balance(currency).available_minor() >= 0 {
                state.overdrafts.remove(&currency);
            }
        }
    }
    if let Some(record) = movement.authorization {
        let now_open = record.state.is_open();
        let expiring = now_open && record.kind != crate::authorization::SpendKind::Withdrawal;
        let key = (record.expires_at, record.id.clone());
        let previous = state.authorizations.insert(record.id.clone(), record);
        if let Some(index) = state.retention.get_mut()
            && let Some(written) = state.authorizations.get(&key.1)
        {
            index.lifecycle_written(written, previous.as_deref(), &state.outcomes);
        }
        let was_open = previous.as_ref().is_some_and(|old| old.state.is_open());
        if let Some(old) = previous
            && old.state.is_open()
        {
            state
                .open_expiries
                .remove(&(old.expires_at, old.id.clone()));
        }
        if expiring {
            state.open_expiries.insert(key);
        }
        match (was_open, now_open) {
            (false, true) => state.open_holds += 1,
            (true, false) => state.open_holds -= 1,
            _ => {}
        }
    }
}

/// Rebuilds an account from its events.
pub fn replay<'e>(mut state: Account, events: impl IntoIterator<Item = &'e Event>) -> Account {
    for event in events {
        apply(&mut state, event);
    }
    state
}
