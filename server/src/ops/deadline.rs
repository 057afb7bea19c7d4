//! The deadline rule of card traffic: a network stands in if it gets no answer in time, so a
//! decision not durable within its deadline is answered "issuer unavailable" (ISO 8583: 91),
//! and, where the network stood in ([`undone_when_late`]), a durable `MarkTimedOut` then
//! undoes whatever the late decision did (a hold it placed is released). Until that mark is
//! durable, repeats of the same key are answered the same way. It lives with the operations,
//! not in a gateway, so every way a request arrives (a link today, a request forwarded to the
//! leader with replication) keeps it.

use std::sync::Arc;
use std::time::Duration;

use tandem_core::{
    AccountId, Actor, AuthorizationId, Command, CommandBody, IdempotencyKey, Outcome,
};

use super::{OpError, card_traffic};
use crate::app::App;
use crate::keys::Principal;

/// What a decision under a deadline came to.
#[derive(Debug)]
pub enum Timed {
    /// Decided and durable in time.
    Answered(Outcome),
    /// Not durable in time (`just_now`), or a repeat of such a key whose timeout mark is not
    /// durable yet: answer "issuer unavailable"; the network stands in.
    Missed { just_now: bool },
}

/// Whether a decision that missed its deadline is undone: only where the network stood in
/// for it, that is a request for a decision to authorize (single or dual message) or to
/// increment. Everything else is the network's word or the cardholder's money coming back
/// (advices, clearings, force posts, reversals whether requested or advised, refunds) and is
/// applied whenever it lands, so a repeat of its key gets the true outcome. A balance inquiry
/// changes nothing and needs no undo.
pub fn undone_when_late(body: &CommandBody) -> bool {
    matches!(
        body,
        CommandBody::Authorize { .. } | CommandBody::Increment { .. }
    )
}

/// Attempts to record one timeout mark before giving up (with waits doubling from 50 ms to
/// 5 s between them, about a minute and a half in all).
pub const MARK_ATTEMPTS_MAX: u32 = 24;

/// Whether a timeout mark that failed with `error` on its `attempt`th try is tried again: only
/// errors that may pass (busy, the log failing for now), within [`MARK_ATTEMPTS_MAX`], and not
/// once the node is stopping.
fn retry_mark(error: &OpError, attempt: u32) -> bool {
    error.retryable() && error.code() != "shutting_down" && attempt < MARK_ATTEMPTS_MAX
}

/// A timeout mark to record: the late decision's lifecycle, by the same keys it was named
/// by, and its idempotency key.
struct Mark {
    lifecycle: AuthorizationId,
    references: Vec<AuthorizationId>,
    key: IdempotencyKey,
}

impl App {
    /// [`App::card_traffic`] under `deadline`: [`Timed::Missed`] past it, and the late
    /// decision undone or applied by the module's rule. The timeout mark names the body's
    /// lifecycle, by the same keys.
    pub async fn card_traffic_within(
        self: &Arc<Self>,
        principal: &Principal,
        account: &AccountId,
        command: Command,
        deadline: Duration,
    ) -> Result<Timed, OpError> {
        card_traffic::may_send(principal)?;
        let command = Command {
            body: card_traffic::checked(account, command.body)?,
            actor: Actor::Network,
            ..command
        };
        if self.deadlines.set().contains(&command.key) {
            return Ok(Timed::Missed { just_now: false });
        }
        let key = command.key.clone();
        let lifecycle = if undone_when_late(&command.body) {
            command.body.authorization().cloned()
        } else {
            None
        };
        let references = command.references.clone();
        let execute = self.execute_with_pan(principal, account, command, None);
        match tokio::time::timeout(deadline, execute).await {
            Ok(outcome) => outcome.map(Timed::Answered),
            Err(_) => {
                if let Some(lifecycle) = lifecycle {
                    let mark = Mark {
                        lifecycle,
                        references,
                        key,
                    };
                    self.mark_timed_out(principal.clone(), account.clone(), mark);
                }
                Ok(Timed::Missed { just_now: true })
            }
        }
    }

    /// Records durably that `key`'s decision timed out, releasing any hold it placed, retrying
    /// while the error is retryable (a hold left behind would hold the member's money), at
    /// most [`MARK_ATTEMPTS_MAX`] times and not once the node is stopping. Until the mark is
    /// durable, repeats of `key` are answered as missed (91); if it never becomes durable,
    /// they stay answered so until the node restarts (never with the late decision, which the
    /// network overrode), the late hold stands until it expires, and the give-up is logged
    /// and counted (`tandem_timeout_marks_abandoned_total`).
    fn mark_timed_out(self: &Arc<Self>, principal: Principal, account: AccountId, mark: Mark) {
        let Mark {
            lifecycle,
            references,
            key,
        } = mark;
        self.deadlines.set().insert(key.clone());
        let app = self.clone();
        tokio::spawn(async move {
            let mark_key = IdempotencyKey::new(&format!("{key}:timeout"))
                .expect("a short key with a suffix is a valid key");
            let command = Command {
                key: mark_key,
                actor: Actor::Network,
                body: CommandBody::MarkTimedOut {
                    authorization: lifecycle,
                    original_key: key.clone(),
                },
                references,
            };
            let mut wait = Duration::from_millis(50);
            for attempt in 1..=MARK_ATTEMPTS_MAX {
                let marked = app
                    .execute_with_pan(&principal, &account, command.clone(), None)
                    .await;
                match marked {
                    Ok(_) => {
                        app.deadlines.set().remove(&key);
                        return;
                    }
                    Err(error) if retry_mark(&error, attempt) => {
                        tracing::warn!(%account, %error, attempt, "could not yet record a timed-out authorization; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    Err(error) => {
                        metrics::counter!("tandem_timeout_marks_abandoned_total").increment(1);
                        tracing::error!(
                            %account, %error, attempt,
                            "gave up recording a timed-out authorization: its repeats answer 91 \
                             until restart, and its hold stands until it expires"
                        );
                        return;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::testkit::{auth, card, money, spend};

    #[test]
    fn only_what_the_network_stood_in_for_is_undone_when_late() {
        let id = auth("a1");
        let bought = || spend("c1", money(10_00, "EUR"));
        let undone = [
            CommandBody::Authorize {
                authorization: id.clone(),
                spend: bought(),
                single_message: false,
            },
            CommandBody::Authorize {
                authorization: id.clone(),
                spend: bought(),
                single_message: true,
            },
            CommandBody::Increment {
                authorization: id.clone(),
                amount: money(5_00, "EUR"),
            },
        ];
        let applied = [
            CommandBody::Reverse {
                authorization: id.clone(),
                replacement: None,
            },
            CommandBody::Advise {
                authorization: id.clone(),
                spend: bought(),
                network_approved: true,
            },
            CommandBody::Clear {
                authorization: id.clone(),
                spend: bought(),
                final_clearing: true,
            },
            CommandBody::ForcePost {
                authorization: id.clone(),
                spend: bought(),
            },
            CommandBody::Refund {
                refund: id.clone(),
                spend: bought(),
                original: None,
            },
            CommandBody::BalanceInquiry { card: card("c1") },
        ];
        assert!(undone.iter().all(undone_when_late));
        assert!(!applied.iter().any(undone_when_late));
    }

    #[test]
    fn a_timeout_mark_is_retried_only_while_it_may_pass_and_a_bounded_number_of_times() {
        let busy = OpError::unavailable("busy", "the log is busy");
        assert!(retry_mark(&busy, 1));
        assert!(retry_mark(&busy, MARK_ATTEMPTS_MAX - 1));
        assert!(!retry_mark(&busy, MARK_ATTEMPTS_MAX), "bounded");
        let stopping = OpError::unavailable("shutting_down", "the node is stopping");
        assert!(!retry_mark(&stopping, 1), "not once the node stops");
        assert!(
            !retry_mark(&OpError::internal("a fault"), 1),
            "not what cannot pass"
        );
    }
}
