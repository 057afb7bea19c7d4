//! The sweep: holds past their expiry released (at most `SWEEP_EXPIRIES_MAX` a decision) and
//! history past its retention forgotten by time.

use super::*;
use crate::scan::scanned;

impl<'a> Decider<'a> {
    pub(super) fn sweep(&mut self) -> Result<Outcome, DecideError> {
        let now = self.now();
        let retention = self.ctx.policy.outcome_retention_ms;
        // Due holds, oldest first, then by id: the front of the expiry index `apply` keeps,
        // so finding them costs what they are, not what the account holds.
        let due: Vec<&AuthorizationId> = self
            .state
            .open_expiries
            .iter()
            .take_while(|(expires_at, _)| *expires_at <= now)
            .take(SWEEP_EXPIRIES_MAX)
            .map(|(_, id)| id)
            .collect();
        scanned(due.len());
        for id in due {
            let Some(record) = self.state.authorizations.get(id) else {
                return Err(DecideError::Invariant(format!(
                    "the expiry index names {id}, which is not a lifecycle"
                )));
            };
            let mut record = record.clone();
            let mut changes = Changes::default();
            self.release_all(&mut record, &mut changes);
            let state = if record.cleared_minor > 0 {
                LifecycleState::Cleared
            } else {
                LifecycleState::Expired
            };
            self.close(&mut record, state);
            let member = record.member.clone();
            let currency = record.spend_currency();
            self.movement(Cause::Expired, &member, Some(record), changes, currency)?;
        }
        let past = |at: crate::time::Timestamp| at.saturating_add_millis(retention) <= now;
        // An outcome of a lifecycle is kept while the lifecycle is open and for the retention
        // window after it closed, so a repeat of its first message is still recognised.
        let lifecycle_kept = |id: &AuthorizationId| {
            self.state.authorizations.get(id).is_some_and(|a| {
                a.state.is_open() || a.closed_at.is_none_or(|closed| !past(closed))
            })
        };
        // What is past retention: from the front of the retention index when the account has
        // one (what is past is all it reads, so the sweeper's further rounds in one tick cost
        // no walk of the history), else a walk of the history (an account that never came
        // near a count limit). The same items either way.
        let (mut authorizations, mut outcomes): (Vec<AuthorizationId>, Vec<IdempotencyKey>) =
            match self.state.retention.built() {
                Some(index) => {
                    let closed: Vec<AuthorizationId> = index
                        .closed()
                        .skip_while(|(closed_at, _)| closed_at.is_none())
                        .take_while(|(closed_at, _)| closed_at.is_some_and(past))
                        .map(|(_, id)| id.clone())
                        .collect();
                    let mut walked = closed.len();
                    let outcomes = index
                        .forgettable()
                        .take_while(|(at, _)| past(*at))
                        .inspect(|_| walked += 1)
                        .filter(|(_, key)| {
                            !self
                                .state
                                .outcomes
                                .get(key)
                                .and_then(|r| r.authorization.as_ref())
                                .is_some_and(lifecycle_kept)
                        })
                        .map(|(_, key)| key.clone())
                        .collect();
                    scanned(walked);
                    (closed, outcomes)
                }
                None => {
                    scanned(self.state.authorizations.len() + self.state.outcomes.len());
                    let closed = self
                        .state
                        .authorizations
                        .values()
                        .filter(|a| !a.state.is_open() && a.closed_at.is_some_and(past))
                        .map(|a| a.id.clone())
                        .collect();
                    let outcomes = self
                        .state
                        .outcomes
                        .iter()
                        .filter(|(_, r)| {
                            past(r.at) && !r.authorization.as_ref().is_some_and(lifecycle_kept)
                        })
                        .map(|(k, _)| k.clone())
                        .collect();
                    (closed, outcomes)
                }
            };
        authorizations.sort();
        authorizations.truncate(SWEEP_ITEMS_MAX);
        outcomes.sort();
        outcomes.truncate(SWEEP_ITEMS_MAX);
        scanned(self.state.tombstones.len());
        let mut tombstones: Vec<AuthorizationId> = self
            .state
            .tombstones
            .iter()
            .filter(|(_, at)| past(**at))
            .map(|(id, _)| id.clone())
            .collect();
        tombstones.sort();
        tombstones.truncate(SWEEP_ITEMS_MAX);
        if !(authorizations.is_empty() && outcomes.is_empty() && tombstones.is_empty()) {
            self.events.push(Event::Forgotten {
                outcomes,
                authorizations,
                tombstones,
            });
        }
        Ok(accepted())
    }
}
