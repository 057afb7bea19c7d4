//! A time-out: the edge gave up waiting for an authorization's answer; its hold, if any,
//! is released, and a late answer stays undone.

use super::*;

impl<'a> Decider<'a> {
    pub(super) fn mark_timed_out(
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
}
