//! Forwarding: a write that reaches a member which does not lead is carried to the leader
//! (`tandem.raft.v1.Forward`, peer-authenticated) and answered from there, whichever gateway
//! it came through, so callers need not know who leads.
//!
//! What travels is the operation, decoded and checked already by the member it reached: the
//! caller's credential (an API key's SHA-256, never the token; or "an ISO 8583 link"), and a
//! [`Forwarded`] operation. The leader checks the credential against its own keys again (a key
//! revoked a moment ago is refused there), checks the caller's scope for the operation again,
//! and runs it as if called directly. It never forwards again: if it no longer leads it
//! answers [`OpError::NotLeader`], which is retryable.
//!
//! The unit is the write into the log (a command, settings) or an operation whose checks need
//! the leader's view to be safe (issuing or replacing a card: a PAN is unique across accounts
//! only if one node checks and writes it, under one lock).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_actors::Setting;
use tandem_core::{
    AccountId, Actor, AuthorizationId, CardId, Command, CommandBody, IdempotencyKey, MemberId,
    Outcome, YearMonth,
};

use super::OpError;
use super::card_traffic::may_send;
use super::route::Route;
use crate::app::App;
use crate::keys::{Credential, Principal};

/// How long a member waits for the leader's answer to a forwarded request. Card traffic has
/// its own, shorter deadline around it (`ops::deadline`).
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(10);

/// How long a write waits, across an election, for a leader to run it: past a leader's death
/// noticed and a new one elected and settled (about half a second; a second or so when
/// openraft's own timer has to call the election: `docs/replication.md`, "Failover"), so a
/// command sent as its leader dies is decided by the next one rather than refused. Callers' own deadlines (ISO 8583's 1.5 s, the request timeout) cut it
/// shorter; past it the answer is `not_leader`, retryable with the same idempotency key.
pub const FAILOVER_WAIT: Duration = Duration::from_secs(3);

/// How often a write waiting out an election looks for the new leader.
const ELECTION_POLL: Duration = Duration::from_millis(20);

/// How long a route that refused a write is passed over before it is tried again (a
/// leader that answered "not the leader" a moment ago may have been settling its term).
const SAME_ROUTE_AGAIN: Duration = Duration::from_millis(200);

/// When "the leader could not be reached" was last logged.
static UNREACHABLE_SAID: Every = Every::new(Duration::from_secs(1));

/// Something said at most once per `period`, from any thread.
struct Every {
    period: Duration,
    /// When it was last said, ms after `START`; 0 before the first time.
    last_ms: std::sync::atomic::AtomicU64,
}

static START: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

impl Every {
    const fn new(period: Duration) -> Self {
        Self {
            period,
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether to say it now; the caller that gets `true` says it.
    fn due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = START.elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= self.period.as_millis() as u64)
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// An operation carried to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded {
    /// One command on one account (card traffic, account and card management, deposits,
    /// withdrawals), with the keyed hash of a PAN it links. The command's fields travel one by
    /// one: `Command`'s own serde form skips empty references, which postcard (not
    /// self-describing) cannot decode.
    Execute {
        account: AccountId,
        key: IdempotencyKey,
        actor: Actor,
        body: CommandBody,
        references: Vec<AuthorizationId>,
        pan_hash: Option<String>,
    },
    /// Changes to the cluster's settings (API keys, revocations, FX rates): admin only.
    Settings(Vec<Setting>),
    /// `App::issue_card` with its PAN hashed already.
    IssueCard {
        account: AccountId,
        card: CardId,
        member: MemberId,
        pan_hash: Option<String>,
        expiry: YearMonth,
    },
    /// `App::replace_card` with its PAN hashed already.
    ReplaceCard {
        card: CardId,
        new_card: CardId,
        pan_hash: Option<String>,
        expiry: YearMonth,
    },
}

impl Forwarded {
    /// The label of the forwarded-requests metric.
    fn kind(&self) -> &'static str {
        match self {
            Forwarded::Execute { body, .. } => body.kind_name(),
            Forwarded::Settings(_) => "settings",
            Forwarded::IssueCard { .. } => "issue_card",
            Forwarded::ReplaceCard { .. } => "replace_card",
        }
    }

    /// `command` on `account`, to forward.
    pub fn execute(account: &AccountId, command: Command, pan_hash: Option<String>) -> Self {
        let Command {
            key,
            actor,
            body,
            references,
        } = command;
        Forwarded::Execute {
            account: account.clone(),
            key,
            actor,
            body,
            references,
            pan_hash,
        }
    }
}

/// The outcome of a forwarded operation that answers one.
pub(crate) fn forwarded_outcome(answer: Answer) -> Result<Outcome, OpError> {
    answer?.ok_or_else(|| OpError::internal("the leader answered with no outcome"))
}

/// A forwarded request, as it travels.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    caller: Credential,
    operation: Forwarded,
}

/// The leader's answer: the operation's outcome (none for settings) or its error.
type Answer = Result<Option<Outcome>, OpError>;

impl App {
    /// [`App::execute`] for a command that issues a card with a PAN: the PAN's keyed hash
    /// goes into the same log record as the card (`AccountSystem::execute_with_pan`). Runs
    /// here, or at the leader (`ops::route`).
    ///
    /// Across a failover the command is tried again, under the same idempotency key, once a
    /// leader is known again (see [`FAILOVER_WAIT`]): a retry gets the original answer if the
    /// dead leader's decision was committed, and a first decision if not.
    pub(crate) async fn execute_with_pan(
        &self,
        principal: &Principal,
        account: &AccountId,
        command: Command,
        pan_hash: Option<String>,
    ) -> Result<Outcome, OpError> {
        let until = tokio::time::Instant::now() + FAILOVER_WAIT;
        // The route that last answered "not the leader", and when.
        let mut failed: Option<(Route, tokio::time::Instant)> = None;
        loop {
            let route = match (self.route(), &failed) {
                (Ok(route), Some((tried, at)))
                    if route == *tried && at.elapsed() < SAME_ROUTE_AGAIN =>
                {
                    None
                }
                (Ok(route), _) => Some(route),
                (Err(OpError::NotLeader { .. }), _) => None,
                (Err(error), _) => return Err(error),
            };
            let Some(route) = route else {
                // No leader known yet, or still the one that just failed: the election is
                // under way.
                if tokio::time::Instant::now() >= until {
                    return Err(OpError::NotLeader { leader: None });
                }
                tokio::time::sleep(ELECTION_POLL).await;
                continue;
            };
            let command = command.clone();
            let pan_hash = pan_hash.clone();
            let answer = match &route {
                Route::Here => {
                    self.execute_here(principal, account, command, pan_hash)
                        .await
                }
                Route::AtLeader { id, address } => {
                    let operation = Forwarded::execute(account, command, pan_hash);
                    forwarded_outcome(self.forward(principal, *id, address, operation).await)
                }
            };
            match answer {
                Err(OpError::NotLeader { .. }) if tokio::time::Instant::now() < until => {
                    metrics::counter!("tandem_failover_retries_total").increment(1);
                    failed = Some((route, tokio::time::Instant::now()));
                }
                answer => return answer,
            }
        }
    }

    /// Runs `operation` at the leader, `leader` at `address`, for `principal`: the leader's
    /// answer, or a retryable error when it gives none.
    pub(crate) async fn forward(
        &self,
        principal: &Principal,
        leader: u64,
        address: &str,
        operation: Forwarded,
    ) -> Answer {
        let kind = operation.kind();
        let not_leader = || OpError::NotLeader {
            leader: Some(format!("node {leader} at {address}")),
        };
        let Some(network) = self.peers_network.get() else {
            return Err(not_leader());
        };
        let request = Request {
            caller: principal.credential.clone(),
            operation,
        };
        let body = postcard::to_allocvec(&request)
            .map_err(|e| OpError::internal(format!("encoding a forwarded request: {e}")))?;
        let answer = network
            .forward(leader, address, body, FORWARD_DEADLINE)
            .await;
        let (label, answer) = match answer {
            Ok(bytes) => (
                "answered",
                postcard::from_bytes::<Answer>(&bytes).unwrap_or_else(|e| {
                    Err(OpError::internal(format!(
                        "the leader's answer does not decode: {e}"
                    )))
                }),
            ),
            Err(tandem_replication::ForwardFailed::Late) => (
                "late",
                Err(OpError::unavailable(
                    "leader_timeout",
                    "the leader did not answer in time; it may have decided this, so retry with the same idempotency key",
                )),
            ),
            Err(tandem_replication::ForwardFailed::Unreachable(why)) => {
                // Every write waiting out an election meets this every 200 ms: said once a
                // second at most (the metric counts them all).
                if UNREACHABLE_SAID.due() {
                    tracing::warn!(leader, address, %why, "the leader could not be reached");
                }
                ("unreachable", Err(not_leader()))
            }
        };
        metrics::counter!("tandem_forwarded_requests_total", "operation" => kind, "result" => label)
            .increment(1);
        answer
    }

    /// A forwarded request, as the leader answers it (encoded).
    async fn answer_forwarded(&self, body: &[u8]) -> Answer {
        let request: Request = postcard::from_bytes(body)
            .map_err(|e| OpError::malformed(format!("a forwarded request does not decode: {e}")))?;
        let principal = match &request.caller {
            Credential::Token { sha256 } => self
                .keys
                .check_hash(sha256)
                .map_err(|_| OpError::recovering())?
                .ok_or_else(|| {
                    OpError::unauthenticated(
                        "the leader does not know this API key (revoked, or an admin token only the receiving node was given)",
                    )
                })?,
            Credential::Link => Principal::link(),
        };
        metrics::counter!("tandem_forwarded_requests_served_total", "operation" => request.operation.kind())
            .increment(1);
        match request.operation {
            Forwarded::Execute {
                account,
                key,
                actor,
                body,
                references,
                pan_hash,
            } => {
                self.may_execute(&principal, &account, &actor, &body)?;
                let command = Command {
                    key,
                    actor,
                    body,
                    references,
                };
                self.execute_here(&principal, &account, command, pan_hash)
                    .await
                    .map(Some)
            }
            Forwarded::Settings(settings) => {
                self.admin_only(&principal, "changing the cluster's settings")?;
                self.put_settings_here(settings).await.map(|()| None)
            }
            Forwarded::IssueCard {
                account,
                card,
                member,
                pan_hash,
                expiry,
            } => self
                .issue_card_here(&principal, &account, &card, member, pan_hash, expiry)
                .await
                .map(Some),
            Forwarded::ReplaceCard {
                card,
                new_card,
                pan_hash,
                expiry,
            } => self
                .replace_card_here(&principal, card, &new_card, pan_hash, expiry)
                .await
                .map(Some),
        }
    }

    /// The scope check again, at the leader: card traffic from a caller that may send it, as
    /// the network; anything else as the actor the caller's key is on the account.
    fn may_execute(
        &self,
        principal: &Principal,
        account: &AccountId,
        actor: &Actor,
        body: &CommandBody,
    ) -> Result<(), OpError> {
        if body.is_card_traffic() {
            may_send(principal)?;
            return if *actor == Actor::Network {
                Ok(())
            } else {
                Err(OpError::forbidden("card traffic is the network's"))
            };
        }
        if self.actor_for(principal, account)? == *actor {
            Ok(())
        } else {
            Err(OpError::forbidden(format!(
                "this key does not act as {actor:?} on {account}"
            )))
        }
    }
}

/// The leader's side of `tandem.raft.v1.Forward`: the app's operations.
pub struct Leader(pub Arc<App>);

impl tandem_replication::ForwardHandler for Leader {
    fn call(
        &self,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send + '_>> {
        Box::pin(async move {
            let answer = self.0.answer_forwarded(&body).await;
            postcard::to_allocvec(&answer).unwrap_or_else(|e| {
                let failed: Answer = Err(OpError::internal(format!(
                    "encoding the leader's answer: {e}"
                )));
                postcard::to_allocvec(&failed).unwrap_or_default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_warning_is_said_once_per_period() {
        let every = Every::new(Duration::from_millis(50));
        assert!(every.due(), "the first time is said");
        assert!(!every.due(), "again at once is not");
        std::thread::sleep(Duration::from_millis(60));
        assert!(every.due(), "once the period has passed, it is said again");
        assert!(!every.due());
    }
}
