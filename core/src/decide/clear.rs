//! A clearing or force post: posting against the hold (partial or final, with the FX
//! difference at the posting rate) or, with none, posting unheld.

use super::*;

impl<'a> Decider<'a> {
    pub(super) fn clear(
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
    pub(super) fn clear_against_hold(
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
    pub(super) fn fx_difference(&self, changes: &mut Changes, leg: &Leg, payer: &MemberId) {
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
}
