//! The deadline rule of card traffic: a network stands in if it gets no answer in time, so a
//! decision not durable within its deadline is answered "issuer unavailable" (ISO 8583: 91),
//! and a durable `MarkTimedOut` then undoes whatever the late decision did (a hold it placed
//! is released). Until that mark is durable, repeats of the same key are answered the same
//! way. It lives with the operations, not in a gateway, so every way a request arrives (a
//! link today, a request forwarded to the leader with replication) keeps it.

use std::sync::Arc;
use std::time::Duration;

use tandem_core::{
    AccountId, Actor, AuthorizationId, Command, CommandBody, IdempotencyKey, Outcome,
};

use super::OpError;
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

/// Whether a late decision is undone: a request for a decision is (the network stood in);
/// an advice or reversal is the network's word and is applied whenever it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    Undo,
    Apply,
}

/// A timeout mark to record: the late decision's lifecycle, by the same keys it was named
/// by, and its idempotency key.
struct Mark {
    lifecycle: AuthorizationId,
    references: Vec<AuthorizationId>,
    key: IdempotencyKey,
}

impl App {
    /// Executes card traffic `command` on `account` under `deadline` (see the module's rule).
    /// The timeout mark names the body's lifecycle, by the same keys; a balance inquiry has
    /// none and changes nothing, so a late one needs no undo.
    pub(super) async fn execute_within(
        self: &Arc<Self>,
        principal: &Principal,
        account: &AccountId,
        command: Command,
        deadline: Duration,
        late: Late,
    ) -> Result<Timed, OpError> {
        if self.deadlines.set().contains(&command.key) {
            return Ok(Timed::Missed { just_now: false });
        }
        let key = command.key.clone();
        let lifecycle = command.body.authorization().cloned();
        let references = command.references.clone();
        let execute = self.execute_with_pan(principal, account, command, None);
        match tokio::time::timeout(deadline, execute).await {
            Ok(outcome) => outcome.map(Timed::Answered),
            Err(_) => {
                if let (Late::Undo, Some(lifecycle)) = (late, lifecycle) {
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
    /// until durable (a hold left behind would hold the member's money); until then, repeats
    /// of `key` are answered as missed.
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
            loop {
                let marked = app
                    .execute_with_pan(&principal, &account, command.clone(), None)
                    .await;
                match marked {
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%account, %error, "could not yet record a timed-out authorization; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
            app.deadlines.set().remove(&key);
        });
    }
}
