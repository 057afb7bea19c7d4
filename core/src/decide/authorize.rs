//! An authorization: the checks in the module's order, funding, the hold (or, single-message,
//! the posting); and a balance inquiry, which holds nothing.

use super::*;

impl<'a> Decider<'a> {
    pub(super) fn authorize(
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
        let funding = self.fund(spend.amount, false);
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
}

impl<'a> Decider<'a> {
    pub(super) fn balance_inquiry(
        &mut self,
        card: &crate::ids::CardId,
    ) -> Result<Outcome, DecideError> {
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
}
