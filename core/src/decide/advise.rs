//! An advice: the network decided (stand-in, STIP); the hold follows its decision, approved
//! past limits or funds, or posts unheld.

use super::*;

impl<'a> Decider<'a> {
    pub(super) fn advise(
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
    pub(super) fn hold_network_decided(
        &self,
        record: &mut Authorization,
        amount: Money,
        changes: &mut Changes,
    ) {
        let funding = self.fund(amount, true);
        changes.hold(&funding.legs);
        merge_legs(&mut record.legs, funding.legs);
        if let Some(charges) = self.usage_unenforced(record, amount) {
            changes.usage.extend(charges.iter().cloned());
            record.usage.extend(charges);
            record.usage_basis_minor += amount.amount_minor;
        }
    }

    /// Posts `amount` with no hold behind it (force post, clearing after expiry or above the
    /// hold): funded by policy, overdrawing if it must; usage is charged, not enforced.
    pub(super) fn post_unheld(
        &self,
        record: &mut Authorization,
        amount: Money,
        changes: &mut Changes,
    ) {
        if amount.amount_minor == 0 {
            return;
        }
        let funding = self.fund(amount, true);
        self.debit(changes, &funding.legs, &record.member);
        merge_legs(&mut record.posted, funding.legs);
        if let Some(charges) = self.usage_unenforced(record, amount) {
            changes.usage.extend(charges);
        }
    }
}
