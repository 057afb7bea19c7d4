//! An incremental authorization: more held on an open lifecycle, checked and charged for
//! the amount only.

use super::*;

impl<'a> Decider<'a> {
    pub(super) fn increment(
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
        let funding = self.fund(amount, false);
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
}
