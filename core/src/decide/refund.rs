//! A refund: money back to the member who paid, as its own lifecycle.

use super::*;

impl<'a> Decider<'a> {
    pub(super) fn refund(
        &mut self,
        refund: &AuthorizationId,
        spend: &Spend,
    ) -> Result<Outcome, DecideError> {
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
}
