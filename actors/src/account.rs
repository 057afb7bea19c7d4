//! One actor per shared account. Its mailbox is the account's total order.
//!
//! Pipelining: the actor decides on its in-memory state (which already includes decisions not
//! yet durable), hands the encoded events to the engine, and moves on. With each record it
//! hands the engine what to do once the record commits (a [`Done`]); the engine's answering
//! task runs those in submission order, so callers are answered and the snapshot is published
//! only once the decision is durable — and always in decision order — by the component that
//! learns of the commit, with no task of the account's own in between.
//!
//! One copy of the account: the actor's state after decision N is exactly the committed state
//! once N commits, because commits complete in decision order and a failed commit fails every
//! later one (and restarts the actor from durable state). So the actor takes each decision's
//! balance snapshot from its own state, and the commit publishes it; nothing applies an event
//! twice. A decision with no events (a replay) is answered at once when none of the account's
//! decisions is in flight, and otherwise goes through the log's queue as a barrier, answered
//! after every earlier decision is durable: no answer ever depends on something that could
//! still be lost.
//!
//! The actor takes its place in the log's queue before it applies a decision: a full queue
//! (or a failed log) refuses the decision with a retryable error and leaves the account as it
//! was. Failure after that: when a commit fails, that decision and every later one get a
//! retryable error (the log refuses everything after a failed write), and the actor is told
//! to stop; its supervisor starts it again from durable state, which by then holds every
//! earlier decision that committed (commits are answered in order).

use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};

use tandem_core::{
    Account, AccountId, BalanceSnapshot, Cause, Command, Decision, DecisionContext, Event, Outcome,
    Timestamp, apply_owned, decide,
};
use tandem_storage::codec::encode_account;
use tandem_storage::{AccountRecord, CommitError, Done, ExpiryMove, Lease, LoadError, Resting};

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
    /// This node does not lead the log: retry at the leader with the same idempotency key
    /// (the decision may have committed through it).
    #[error("this node does not lead the log")]
    NotLeader { leader: Option<u64> },
}

impl From<CommitError> for ExecuteError {
    fn from(error: CommitError) -> Self {
        match error {
            CommitError::Busy => ExecuteError::Busy,
            CommitError::NotLeader { leader } => ExecuteError::NotLeader { leader },
            other => ExecuteError::LogFailed(other.to_string()),
        }
    }
}

pub type Reply = oneshot::Sender<Result<Outcome, ExecuteError>>;

/// A change to an account, as watchers receive it.
#[derive(Debug, Clone)]
pub struct Change {
    pub snapshot: Arc<BalanceSnapshot>,
    /// The causes of the money movements in this change (empty for other changes).
    pub causes: Vec<Cause>,
}

// Nearly every message is an `Execute`; boxing it to shrink the rare ones would cost an
// allocation per command.
#[allow(clippy::large_enum_variant)]
pub enum AccountMsg {
    Execute {
        command: Command,
        reply: Reply,
        /// The keyed PAN hash of the card this command issues, if it has one: the PAN
        /// directory's link travels in the same log record as the card, so no card exists
        /// without it.
        pan: Option<Vec<u8>>,
        /// The time of the expiry index entry the sweeper found for this account, when the
        /// command is its `Sweep`: an entry the account does not hold is removed.
        swept_entry: Option<i64>,
    },
    /// The account's state as committed so far: a copy taken now, answered once every
    /// decision it holds is durable.
    Read {
        reply: oneshot::Sender<Result<Account, ExecuteError>>,
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

impl AccountView {
    /// A view holding `snapshot`, with no change stream yet.
    pub(crate) fn new(snapshot: BalanceSnapshot) -> Arc<Self> {
        Arc::new(Self {
            snapshot: SnapshotCell::new(snapshot),
            changes: std::sync::OnceLock::new(),
        })
    }
}

/// What an account's decisions need once their commits land, shared by the actor and every
/// [`Done`] it hands the engine.
struct Link {
    view: Arc<AccountView>,
    /// Decisions handed to the engine and not yet answered.
    in_flight: AtomicUsize,
    /// A commit failed: the actor's copy holds what never committed, so it is not given back.
    failed: std::sync::atomic::AtomicBool,
    shared: Arc<Shared>,
    actor: ActorRef<AccountMsg>,
}

impl Link {
    /// A decision's commit landed (or failed): publish the snapshot the actor took, tell
    /// watchers, answer. Runs on the engine's answering task, in decision order.
    fn finish(
        &self,
        result: Result<u64, CommitError>,
        change: Option<Change>,
        outcome: Outcome,
        reply: Reply,
    ) {
        let result = match result {
            Ok(_index) => {
                if let Some(change) = change {
                    self.view.snapshot.publish(change.snapshot.clone());
                    if let Some(changes) = self.view.changes.get() {
                        let _ = changes.send(change);
                    }
                }
                Ok(outcome)
            }
            Err(error) => {
                let reason = error.to_string();
                self.failed.store(true, Ordering::Release);
                let _ = self.actor.cast(AccountMsg::LogFailed(reason));
                Err(ExecuteError::from(error))
            }
        };
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shared.release_admission();
        let _ = reply.send(result);
    }
}

pub struct AccountActor {
    pub(crate) shared: Arc<Shared>,
}

pub struct AccountState {
    account: Account,
    /// The account is lent to this actor by the committed accounts in memory.
    lease: Option<Lease>,
    link: Arc<Link>,
    events_since_snapshot: u64,
    last_used: Instant,
}

pub struct AccountArgs {
    pub id: AccountId,
}

pub(crate) fn now() -> Timestamp {
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
        // The committed account in memory is lent to this actor: its one copy while it runs.
        // If it is not in memory, rebuilding it reads the checkpoint: off the runtime's
        // workers, so one account's load never stalls the other accounts' actors and the
        // connections sharing the worker.
        let reader = self.shared.engine.reader().clone();
        let (lease, resting) = reader.accounts().lend(&args.id);
        let Resting { account } = match resting {
            Some(resting) => resting,
            None => {
                let id = args.id.clone();
                let loaded = tokio::task::spawn_blocking(move || reader.checkpointed(&id))
                    .await
                    .map_err(|e| LoadError::Background(e.to_string()))
                    .and_then(|loaded| loaded);
                match loaded {
                    Ok(loaded) => loaded,
                    Err(error) => {
                        self.shared
                            .engine
                            .reader()
                            .accounts()
                            .end_lease(&args.id, lease);
                        return Err(error.into());
                    }
                }
            }
        };
        let view = self
            .shared
            .view(&args.id, BalanceSnapshot::of(&account, now()));
        let link = Arc::new(Link {
            view,
            in_flight: AtomicUsize::new(0),
            failed: std::sync::atomic::AtomicBool::new(false),
            shared: self.shared.clone(),
            actor: myself.clone(),
        });
        if let Some(idle) = self.shared.config.idle_timeout {
            myself.send_after(idle, || AccountMsg::IdleCheck);
        }
        Ok(AccountState {
            account,
            lease: Some(lease),
            link,
            events_since_snapshot: 0,
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
            AccountMsg::Execute {
                command,
                reply,
                pan,
                swept_entry,
            } => {
                state.last_used = Instant::now();
                self.execute(state, command, reply, pan, swept_entry)?;
            }
            AccountMsg::Read { reply } => self.read(state, reply),
            AccountMsg::IdleCheck => {
                let idle = self.shared.config.idle_timeout.unwrap_or(Duration::MAX);
                if state.last_used.elapsed() >= idle
                    && state.link.in_flight.load(Ordering::Acquire) == 0
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
        // Back to the committed accounts in memory if every decision it holds committed;
        // otherwise it is loaded again from the checkpoint when next needed.
        if let Some(lease) = state.lease.take() {
            let accounts = self.shared.engine.reader().accounts();
            let id = state.account.id.clone();
            if state.link.in_flight.load(Ordering::Acquire) == 0
                && !state.link.failed.load(Ordering::Acquire)
            {
                let account = std::mem::replace(&mut state.account, Account::new(id.clone()));
                accounts.give_back(&id, lease, Resting { account });
            } else {
                accounts.end_lease(&id, lease);
            }
        }
        Ok(())
    }
}

impl AccountActor {
    /// Answers a copy of the account once every decision it holds is durable: at once if
    /// none is in flight, else behind them through the log's queue as a barrier.
    fn read(&self, state: &AccountState, reply: oneshot::Sender<Result<Account, ExecuteError>>) {
        let account = state.account.clone();
        if state.link.in_flight.load(Ordering::Acquire) == 0 {
            let _ = reply.send(Ok(account));
            return;
        }
        match self.shared.engine.reserve() {
            Ok(slot) => {
                let link = state.link.clone();
                link.in_flight.fetch_add(1, Ordering::AcqRel);
                slot.submit(
                    None,
                    Done::new(move |result| {
                        link.in_flight.fetch_sub(1, Ordering::AcqRel);
                        let _ = reply.send(result.map(|_| account).map_err(ExecuteError::from));
                    }),
                );
            }
            Err(error) => {
                let _ = reply.send(Err(ExecuteError::from(error)));
            }
        }
    }

    fn execute(
        &self,
        state: &mut AccountState,
        command: Command,
        reply: Reply,
        pan: Option<Vec<u8>>,
        swept_entry: Option<i64>,
    ) -> Result<(), ActorProcessingErr> {
        if state.link.in_flight.load(Ordering::Acquire)
            >= self.shared.config.in_flight_per_account_max
        {
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
        let Decision {
            outcome, events, ..
        } = decision;
        // The expiry index keeps each account's entry at its earliest open hold's expiry, as
        // every record so far left it (they apply in order); this one says where it moves.
        let earliest = |account: &Account| account.next_expiry().map(Timestamp::millis);
        let indexed = earliest(&state.account);
        // An entry the sweeper found that is not the account's own (a stale one) is removed by
        // a move from it to the account's own, so it is not swept forever.
        let stale_entry = swept_entry.filter(|at| Some(*at) != indexed);
        let writes = !events.is_empty() || stale_entry.is_some();
        let in_flight = state.link.in_flight.load(Ordering::Acquire);
        if !writes && in_flight == 0 {
            // Nothing to write and nothing of this account's still in flight: every decision
            // this answer may depend on is durable.
            self.shared.release_admission();
            let _ = reply.send(Ok(outcome));
            return Ok(());
        }
        // Encoded before it is applied, so the apply takes each event by value.
        let record = if writes {
            let mut record = AccountRecord::from_events(
                &state.account.id,
                state.account.seq,
                &events,
                None,
                None,
            )?;
            // The PAN's link goes with the card it names, only if this decision issues it.
            if let (Some(hash), [card]) = (pan, record.cards.as_slice()) {
                let card = card.clone();
                record.pans.push((hash, card));
            }
            Some(record)
        } else {
            None
        };
        // A place in the log's queue before anything changes, so a refusal leaves the
        // account as it was.
        let slot = match self.shared.engine.reserve() {
            Ok(slot) => slot,
            Err(error) => {
                self.shared.release_admission();
                let _ = reply.send(Err(ExecuteError::from(error)));
                return Ok(());
            }
        };
        state.link.in_flight.fetch_add(1, Ordering::AcqRel);
        let link = state.link.clone();
        let Some(mut record) = record else {
            // A barrier: answered after every earlier decision is durable.
            slot.submit(
                None,
                Done::new(move |result| link.finish(result, None, outcome, reply)),
            );
            return Ok(());
        };
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
        // Where the account's expiry index entry moves from and to, if it moves: the state
        // machine moves it by this alone. A stale entry goes only when nothing else moves;
        // otherwise the next sweep removes it.
        let next = earliest(&state.account);
        let expiry_update = if next != indexed {
            Some(ExpiryMove {
                from: indexed,
                to: next,
            })
        } else {
            stale_entry.map(|at| ExpiryMove {
                from: Some(at),
                to: next,
            })
        };
        state.events_since_snapshot += event_count;
        // A snapshot re-encodes the whole account, so it waits several events per record the
        // account holds: its cost stays constant per event however large the account grows,
        // and its pause (a millisecond or two for a hot account's thousands of records) is
        // rare.
        let config = &self.shared.config;
        let size = (state.account.authorizations.len() + state.account.outcomes.len()) as u64;
        let spacing = config
            .snapshot_every_events
            .max(config.snapshot_events_per_record.saturating_mul(size));
        let snapshot_due = event_count > 0 && state.events_since_snapshot >= spacing;
        if snapshot_due {
            state.events_since_snapshot = 0;
            // The events are applied and their place is taken: a snapshot that cannot be
            // encoded is left out (loading then replays more events), not a lost decision.
            match encode_account(&state.account) {
                Ok(snapshot) => record.snapshot = Some(snapshot),
                Err(error) => tracing::error!(%error, "account snapshot left out"),
            }
        }
        record.expiry = expiry_update;
        let change = Change {
            snapshot: Arc::new(BalanceSnapshot::of(&state.account, at)),
            causes,
        };
        slot.submit(
            Some(record),
            Done::new(move |result| link.finish(result, Some(change), outcome, reply)),
        );
        Ok(())
    }
}
