//! A reversal, full or partial, and the releases and closes the other steps share; a
//! refund's reversal credits back.

use super::*;

impl<'a> Decider<'a> {
    /// Releases `part` of `record`'s open hold (from the last leg backwards) and gives back
    /// the matching share of its usage charges: `part / basis` of each charge, where the basis
    /// is the spend the charges still stand for. Releasing the whole basis gives everything
    /// back, counts included; what was cleared stays charged.
    pub(super) fn release_part(
        &self,
        record: &mut Authorization,
        part: i64,
        changes: &mut Changes,
    ) {
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
    pub(super) fn give_back_usage(&self, record: &mut Authorization, changes: &mut Changes) {
        for charge in record.usage.drain(..) {
            changes.usage.push(charge.restoration());
        }
        record.usage_basis_minor = 0;
    }

    pub(super) fn release_all(&self, record: &mut Authorization, changes: &mut Changes) {
        let residual = record.residual_minor();
        self.release_part(record, residual, changes);
    }

    /// Closes a lifecycle whose hold was released by a reversal: `Reversed`, or `Cleared` when
    /// some of it had already cleared.
    pub(super) fn close_reversed(&self, record: &mut Authorization) {
        let state = if record.cleared_minor > 0 {
            LifecycleState::Cleared
        } else {
            LifecycleState::Reversed
        };
        self.close(record, state);
    }

    pub(super) fn close(&self, record: &mut Authorization, state: LifecycleState) {
        record.state = state;
        record.closed_at = Some(self.now());
        record.legs.clear();
    }

    pub(super) fn reverse(
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
    pub(super) fn reverse_refund(
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
    pub(super) fn credit_back(&self, record: &mut Authorization, part: i64, changes: &mut Changes) {
        let credited = take_from_legs(&mut record.posted, part, true);
        let covered: i64 = credited.iter().map(|l| l.covers_minor).sum();
        self.credit(changes, &credited, &record.member);
        record.credited_minor += covered;
    }
}
