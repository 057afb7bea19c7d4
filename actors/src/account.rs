//! One actor per shared account. Its mailbox is the account's total order.
//!
//! Pipelining: the actor decides on its in-memory state (which already includes decisions not
//! yet durable), hands the encoded events to the engine, and moves on. Each decision goes to
//! the account's completion task in decision order; that task awaits the commits one by one,
//! so callers are answered and the snapshot is published only once the decision is durable —
//! and always in decision order.
//!
//! One copy of the account: the actor's state after decision N is exactly the committed state
//! once N commits, because commits complete in decision order and a failed commit fails every
//! later one (and restarts the actor from durable state). So the actor takes each decision's
//! balance snapshot from its own state, and the completion task publishes it when the commit
//! lands; nothing applies an event twice. A decision with no events (a
//! decline that repeats, a replay) is answered in the same queue, after every earlier decision
//! is durable, so no answer ever depends on something that could still be lost.
//!
//! Failure: when a commit fails, that decision and every later one get a retryable error, and
//! the actor is told to stop; its supervisor starts it again from durable state.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

use tandem_core::{
    Account, AccountId, BalanceSnapshot, Cause, Command, Decision, DecisionContext, Event, Outcome,
    Timestamp, apply_owned, decide,
};
use tandem_storage::codec::encode_account;
use tandem_storage::{AccountRecord, CommitError, LoadError};

use crate::cell::SnapshotCell;
use crate::system::Shared;

/// What callers get when the engine could not give an answer. Every variant is retryable:
/// nothing was answered as done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    /// Over the per-account or global in-flight limit (ISO 8583 response 91 at the edge).
    #[error("busy: too much work in flight")]
    Busy,
    /// The log could not make the decision durable.
    #[error("the log failed: {0}")]
    LogFailed(String),
    /// The account's actor stopped before answering (passivated or restarting).
    #[error("the account restarted before answering")]
    Interrupted,
    /// The core could not decide (an invariant would break).
    #[error("could not decide: {0}")]
    CouldNotDecide(String),
    /// The stored account could not be loaded.
    #[error("could not load the account: {0}")]
    LoadFailed(String),
}

pub type Reply = oneshot::Sender<Result<Outcome, ExecuteError>>;

/// A change to an account, as watchers receive it.
#[derive(Debug, Clone)]
pub struct Change {
    pub snapshot: Arc<BalanceSnapshot>,
    /// The causes of the money movements in this change (empty for other changes).
    pub causes: Vec<Cause>,
}

pub enum AccountMsg {
    Execute {
        command: Command,
        reply: Reply,
    },
    /// Stop if idle (passivation).
    IdleCheck,
    /// The log failed a commit: stop, to be restarted from durable state.
    LogFailed(String),
}

/// The published side of an account: its latest committed snapshot and its change stream.
pub struct AccountView {
    pub snapshot: SnapshotCell<BalanceSnapshot>,
    /// Created by the first watcher: most accounts are never watched, and a channel
    /// pre-allocates its whole buffer.
    pub changes: std::sync::OnceLock<broadcast::Sender<Change>>,
}

/// One entry of the completion queue.
struct Completion {
    commit: Option<oneshot::Receiver<Result<u64, CommitError>>>,
    /// The account's balances once this decision is committed, and what moved money.
    change: Option<Change>,
    reply: Reply,
    outcome: Outcome,
}

pub struct AccountActor {
    pub(crate) shared: Arc<Shared>,
}

pub struct AccountState {
    account: Account,
    completions: mpsc::UnboundedSender<Completion>,
    in_flight: Arc<AtomicUsize>,
    events_since_snapshot: u64,
    /// The earliest hold expiry the expiry index has for this account (what was last sent).
    indexed_expiry: Option<i64>,
    last_used: Instant,
}

pub struct AccountArgs {
    pub id: AccountId,
}

fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(millis)
}

impl Actor for AccountActor {
    type Msg = AccountMsg;
    type State = AccountState;
    type Arguments = AccountArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AccountMsg>,
        args: AccountArgs,
    ) -> Result<AccountState, ActorProcessingErr> {
        // Rebuilding an account reads sled: off the runtime's workers, so one account's load
        // never stalls the other accounts' actors and the connections sharing the worker.
        let reader = self.shared.engine.reader().clone();
        let id = args.id.clone();
        let (account, indexed_expiry) = tokio::task::spawn_blocking(move || {
            Ok::<_, LoadError>((reader.load_account(&id)?, reader.indexed_expiry(&id)?))
        })
        .await
        .map_err(|e| LoadError::Background(e.to_string()))??;
        let view = self
            .shared
            .view(&args.id, BalanceSnapshot::of(&account, now()));
        let (completions, queue) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        tokio::spawn(complete_in_order(
            queue,
            view,
            in_flight.clone(),
            self.shared.clone(),
            myself.clone(),
        ));
        if let Some(idle) = self.shared.config.idle_timeout {
            myself.send_after(idle, || AccountMsg::IdleCheck);
        }
        Ok(AccountState {
            account,
            completions,
            in_flight,
            events_since_snapshot: 0,
            indexed_expiry,
            last_used: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AccountMsg>,
        message: AccountMsg,
        state: &mut AccountState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AccountMsg::Execute { command, reply } => {
                state.last_used = Instant::now();
                self.execute(state, command, reply)?;
            }
            AccountMsg::IdleCheck => {
                let idle = self.shared.config.idle_timeout.unwrap_or(Duration::MAX);
                if state.last_used.elapsed() >= idle && state.in_flight.load(Ordering::Acquire) == 0
                {
                    myself.stop(Some("idle".into()));
                } else {
                    myself.send_after(idle, || AccountMsg::IdleCheck);
                }
            }
            AccountMsg::LogFailed(reason) => {
                return Err(format!("log failed: {reason}").into());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AccountMsg>,
        state: &mut AccountState,
    ) -> Result<(), ActorProcessingErr> {
        self.shared.forget_view(&state.account.id);
        Ok(())
    }
}

impl AccountActor {
    fn execute(
        &self,
        state: &mut AccountState,
        command: Command,
        reply: Reply,
    ) -> Result<(), ActorProcessingErr> {
        if state.in_flight.load(Ordering::Acquire) >= self.shared.config.in_flight_per_account_max {
            self.shared.release_admission();
            let _ = reply.send(Err(ExecuteError::Busy));
            return Ok(());
        }
        let at = now();
        let rates = self.shared.rates.load();
        let ctx = DecisionContext {
            now: at,
            rates: &rates,
            policy: &self.shared.config.policy,
        };
        let decision = match decide(&state.account, &command, &ctx) {
            Ok(decision) => decision,
            Err(error) => {
                self.shared.release_admission();
                let _ = reply.send(Err(ExecuteError::CouldNotDecide(error.to_string())));
                return Ok(());
            }
        };
        if decision.replayed {
            metrics::counter!("tandem_idempotent_replays_total").increment(1);
        }
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        let Decision {
            outcome, events, ..
        } = decision;
        // Encoded before it is applied, so the apply takes each event by value.
        let mut record =
            AccountRecord::from_events(&state.account.id, state.account.seq, &events, None, None)?;
        let causes: Vec<Cause> = events
            .iter()
            .filter_map(|e| match e {
                Event::Movement(m) => Some(m.cause),
                _ => None,
            })
            .collect();
        let event_count = events.len() as u64;
        for event in events {
            apply_owned(&mut state.account, event);
        }
        // The expiry index keeps each account's earliest open hold; tell it when that moved.
        let next_expiry = state.account.next_expiry().map(Timestamp::millis);
        let expiry_update = (next_expiry != state.indexed_expiry).then_some(next_expiry);
        state.indexed_expiry = next_expiry;
        let commit = if event_count == 0 && expiry_update.is_none() {
            None
        } else {
            state.events_since_snapshot += event_count;
            // A snapshot re-encodes the whole account, so it waits at least as many events as
            // the account holds records: its cost stays constant per event however large the
            // account grows.
            let size = (state.account.authorizations.len() + state.account.outcomes.len()) as u64;
            let snapshot_due = event_count > 0
                && state.events_since_snapshot
                    >= self.shared.config.snapshot_every_events.max(size);
            if snapshot_due {
                state.events_since_snapshot = 0;
                record.snapshot = Some(encode_account(&state.account)?);
            }
            record.next_expiry = expiry_update;
            Some(self.shared.engine.submit(record))
        };
        let change = commit.is_some().then(|| Change {
            snapshot: Arc::new(BalanceSnapshot::of(&state.account, at)),
            causes,
        });
        // The completion task outlives the actor only by its queue; if it is gone the actor is
        // stopping anyway and the caller sees `Interrupted`.
        let _ = state.completions.send(Completion {
            commit,
            change,
            reply,
            outcome,
        });
        Ok(())
    }
}

/// Awaits each decision's commit in decision order, then publishes the snapshot the actor
/// took, tells watchers and answers the caller.
async fn complete_in_order(
    mut queue: mpsc::UnboundedReceiver<Completion>,
    view: Arc<AccountView>,
    in_flight: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    actor: ActorRef<AccountMsg>,
) {
    let mut failure: Option<String> = None;
    while let Some(completion) = queue.recv().await {
        let result = match (&failure, completion.commit) {
            (Some(reason), _) => Err(ExecuteError::LogFailed(reason.clone())),
            (None, None) => Ok(completion.outcome),
            (None, Some(commit)) => match commit.await {
                Ok(Ok(_index)) => {
                    if let Some(change) = completion.change {
                        view.snapshot.publish(change.snapshot.clone());
                        if let Some(changes) = view.changes.get() {
                            let _ = changes.send(change);
                        }
                    }
                    Ok(completion.outcome)
                }
                Ok(Err(error)) => {
                    let reason = error.to_string();
                    failure = Some(reason.clone());
                    let _ = actor.cast(AccountMsg::LogFailed(reason.clone()));
                    Err(ExecuteError::LogFailed(reason))
                }
                Err(_) => {
                    let reason = "the engine dropped the commit".to_string();
                    failure = Some(reason.clone());
                    let _ = actor.cast(AccountMsg::LogFailed(reason.clone()));
                    Err(ExecuteError::LogFailed(reason))
                }
            },
        };
        in_flight.fetch_sub(1, Ordering::AcqRel);
        shared.release_admission();
        let _ = completion.reply.send(result);
    }
}
