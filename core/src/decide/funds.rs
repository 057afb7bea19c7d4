//! Money in and out by members: deposits, withdrawals (held, then completed or cancelled) and
//! settlements recorded between members.

use super::*;

impl<'a> Decider<'a> {
    pub(super) fn room_for_currency(&self, currency: Currency) -> bool {
        self.state.balances.contains_key(&currency)
            || self.state.balances.len() < BALANCES_PER_ACCOUNT_MAX
    }

    pub(super) fn deposit(
        &mut self,
        member: &MemberId,
        amount: Money,
    ) -> Result<Outcome, DecideError> {
        if !self.state.members.contains_key(member) {
            return Ok(rejected(RejectReason::UnknownMember));
        }
        if let Err(reason) = self.may(Action::Deposit) {
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

    pub(super) fn withdraw(
        &mut self,
        withdrawal: &AuthorizationId,
        member: &MemberId,
        amount: Money,
    ) -> Result<Outcome, DecideError> {
        if !self.state.members.contains_key(member) {
            return Ok(rejected(RejectReason::UnknownMember));
        }
        if let Err(reason) = self.may(Action::Withdraw { for_member: member }) {
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
        let expiry = self.ctx.policy.hold_expiry_ms;
        let mut record =
            self.open_record(withdrawal, member, SpendKind::Withdrawal, amount, expiry);
        record.authorized_minor = amount.amount_minor;
        record.legs = legs.clone();
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

    pub(super) fn finish_withdrawal(
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
        if let Err(reason) = self.may(Action::Withdraw {
            for_member: &record.member,
        }) {
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

    pub(super) fn record_settlement(
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
        if let Err(reason) = self.may(Action::Settle { from, to }) {
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
}
