//! Money moving: the changes one movement assembles (holds, entries, usage), the legs and
//! usage folded together, and the `Movement` event with its overdraft and balance after.

use super::*;

/// Adds `new` legs to `legs`, folding a leg into one of the same currency and rate, so a
/// lifecycle's legs stay as few as its funding balances.
pub(super) fn merge_legs(legs: &mut Vec<Leg>, new: Vec<Leg>) {
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
pub(super) fn merge_usage(charges: &mut Vec<UsageDelta>, new: Vec<UsageDelta>) {
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

/// Money changes being assembled for one movement.
#[derive(Default)]
pub(super) struct Changes {
    pub(super) held: Vec<Money>,
    pub(super) entries: Vec<Entry>,
    pub(super) usage: Vec<UsageDelta>,
}

impl Changes {
    pub(super) fn hold(&mut self, legs: &[Leg]) {
        self.held
            .extend(legs.iter().map(|l| Money::new(l.amount_minor, l.currency)));
    }

    pub(super) fn release(&mut self, legs: &[Leg]) {
        self.held
            .extend(legs.iter().map(|l| Money::new(-l.amount_minor, l.currency)));
    }

    pub(super) fn held_in(&self, currency: Currency) -> i64 {
        self.held
            .iter()
            .filter(|m| m.currency == currency)
            .map(|m| m.amount_minor)
            .sum()
    }

    pub(super) fn ledger_in(&self, currency: Currency) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.currency == currency)
            .map(|e| e.amount_minor)
            .sum()
    }

    /// Each currency this change touches, once (a change touches one to three currencies,
    /// so a scan beats building a set).
    pub(super) fn currencies(&self) -> impl Iterator<Item = Currency> + '_ {
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
    /// Debit entries for `legs`, split among members by the account's rule.
    pub(super) fn debit(&self, changes: &mut Changes, legs: &[Leg], payer: &MemberId) {
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
    pub(super) fn credit(&self, changes: &mut Changes, legs: &[Leg], payer: &MemberId) {
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
}

impl<'a> Decider<'a> {
    /// Records `record`'s movement and answers `Accepted` with the balance after it.
    pub(super) fn accept(
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
    pub(super) fn movement(
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
