//! A resident account: its one copy in memory, lent to the shard actor that owns it
//! (`shard.rs`), whose mailbox is the account's total order.
//!
//! Pipelining: the account decides on its in-memory state (which already includes decisions
//! not yet durable), hands the encoded events to the engine, and its shard moves on. With each
//! record it hands the engine what to do once the record commits (a [`Done`]); the engine's
//! answering task runs those in submission order, so callers are answered and the snapshot is
//! published only once the decision is durable — and always in decision order — by the
//! component that learns of the commit, with no task of the account's own in between.
//!
//! One copy of the account: its state after decision N is exactly the committed state once N
//! commits, because commits complete in decision order and a failed commit fails every later
//! one (and drops the resident copy, to be loaded again from durable state). So each
//! decision's balance snapshot is taken from the resident state, and the commit publishes it;
//! nothing applies an event twice. A decision with no events (a replay) is answered at once
//! when none of the account's decisions is in flight, and otherwise goes through the log's
//! queue as a barrier, answered after every earlier decision is durable: no answer ever
//! depends on something that could still be lost.
//!
//! The account takes its place in the log's queue before it applies a decision: a full queue
//! (or a failed log) refuses the decision with a retryable error and leaves the account as it
//! was. Failure after that: when a commit fails, that decision and every later one get a
//! retryable error (the log refuses everything after a failed write), and the shard is told to
//! drop the account; its next message loads it again from durable state, which by then holds
//! every earlier decision that committed (commits are answered in order).

use ractor::ActorRef;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use tandem_core::{
    Account, AccountId, BalanceSnapshot, Cause, Command, Decision, DecisionContext, Event, Outcome,
    Timestamp, apply_owned, decide,
};
use tandem_storage::codec::encode_account;
use tandem_storage::{AccountRecord, CommitError, Done, ExpiryMove, Lease};

use crate::messages::{AccountMsg, ExecuteError, Reply, ShardMsg};
use crate::shared::Shared;
use crate::view::{AccountView, Change};

/// What an account's decisions need once their commits land, shared by the account's state
/// and every [`Done`] it hands the engine.
struct Link {
    account: AccountId,
    view: Arc<AccountView>,
    /// Decisions handed to the engine and not yet answered.
    in_flight: AtomicUsize,
    /// A commit failed: the resident copy holds what never committed, so it is not given
    /// back.
    failed: AtomicBool,
    shared: Arc<Shared>,
    /// The shard the account lives on, told when a commit fails.
    shard: ActorRef<ShardMsg>,
}

impl Link {
    /// A decision's commit landed (or failed): publish the snapshot the shard took, tell
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
                self.failed.store(true, Ordering::Release);
                let _ = self.shard.cast(ShardMsg::LogFailed(self.account.clone()));
                Err(ExecuteError::from(error))
            }
        };
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shared.release_admission();
        let _ = reply.send(result);
    }
}

/// A resident account: its one copy while it is lent to its shard, and what its decisions
/// in flight share.
pub(crate) struct AccountState {
    account: Account,
    /// The account is lent to its shard by the committed accounts in memory.
    lease: Lease,
    link: Arc<Link>,
    events_since_snapshot: u64,
    last_used: Instant,
}

impl AccountState {
    /// The account lent under `lease`, resident on `shard` from now on: its published view
    /// shows it.
    pub(crate) fn new(
        shared: &Arc<Shared>,
        shard: ActorRef<ShardMsg>,
        lease: Lease,
        account: Account,
    ) -> Self {
        let view = shared.view(&account.id, BalanceSnapshot::of(&account, Timestamp::now()));
        let link = Arc::new(Link {
            account: account.id.clone(),
            view,
            in_flight: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            shared: shared.clone(),
            shard,
        });
        Self {
            account,
            lease,
            link,
            events_since_snapshot: 0,
            last_used: Instant::now(),
        }
    }

    pub(crate) fn handle(&mut self, message: AccountMsg) {
        match message {
            AccountMsg::Execute {
                command,
                reply,
                pan,
                swept_entry,
            } => {
                self.last_used = Instant::now();
                self.execute(command, reply, pan, swept_entry);
            }
            AccountMsg::Read { reply } => self.read(reply),
        }
    }

    /// Unused for `idle` with nothing in flight: it may leave (passivation).
    pub(crate) fn is_idle(&self, idle: Duration) -> bool {
        self.last_used.elapsed() >= idle && self.link.in_flight.load(Ordering::Acquire) == 0
    }

    /// A commit of this account failed.
    pub(crate) fn has_failed(&self) -> bool {
        self.link.failed.load(Ordering::Acquire)
    }

    /// The account leaves its shard: back to the committed accounts in memory if every
    /// decision it holds committed; otherwise it is loaded again from the checkpoint when
    /// next needed.
    pub(crate) fn leave(self) {
        let shared = &self.link.shared;
        shared.forget_view(&self.account.id);
        let accounts = shared.engine.reader().accounts();
        let id = self.account.id.clone();
        if self.link.in_flight.load(Ordering::Acquire) == 0 && !self.has_failed() {
            accounts.give_back(&id, self.lease, self.account);
        } else {
            accounts.end_lease(&id, self.lease);
        }
    }

    /// Answers a copy of the account once every decision it holds is durable: at once if
    /// none is in flight, else behind them through the log's queue as a barrier.
    fn read(&self, reply: oneshot::Sender<Result<Account, ExecuteError>>) {
        let account = self.account.clone();
        if self.link.in_flight.load(Ordering::Acquire) == 0 {
            let _ = reply.send(Ok(account));
            return;
        }
        match self.link.shared.engine.reserve() {
            Ok(slot) => {
                let link = self.link.clone();
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
        &mut self,
        command: Command,
        reply: Reply,
        pan: Option<Vec<u8>>,
        swept_entry: Option<i64>,
    ) {
        let state = self;
        let shared: &Shared = &state.link.shared;
        if state.link.in_flight.load(Ordering::Acquire) >= shared.config.in_flight_per_account_max {
            shared.release_admission();
            let _ = reply.send(Err(ExecuteError::Busy));
            return;
        }
        let at = shared.now();
        let rates = shared.rates.get();
        let ctx = DecisionContext {
            now: at,
            rates: &rates,
            policy: &shared.config.policy,
        };
        let decided = unpanicked(|| decide(&state.account, &command, &ctx));
        let decision = match decided {
            Ok(Ok(decision)) => decision,
            Ok(Err(error)) => {
                shared.release_admission();
                let _ = reply.send(Err(ExecuteError::CouldNotDecide(error.to_string())));
                return;
            }
            Err(panic) => {
                // A bug in the rules: this command is answered once, as an internal fault;
                // the account (which `decide` only reads) and the shard's others carry on.
                metrics::counter!("tandem_decide_panics_total").increment(1);
                tracing::error!(account = %state.account.id, key = %command.key, %panic, "deciding a command panicked");
                shared.release_admission();
                let _ = reply.send(Err(ExecuteError::CouldNotDecide(format!(
                    "deciding it panicked: {panic}"
                ))));
                return;
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
            shared.release_admission();
            let _ = reply.send(Ok(outcome));
            return;
        }
        // Encoded before it is applied, so the apply takes each event by value.
        let record = if writes {
            let mut record = match AccountRecord::from_events(
                &state.account.id,
                state.account.seq,
                &events,
                None,
                None,
            ) {
                Ok(record) => record,
                Err(error) => {
                    // Nothing changed yet: the account stays as it was.
                    shared.release_admission();
                    let _ = reply.send(Err(ExecuteError::CouldNotDecide(format!(
                        "could not encode the decision: {error}"
                    ))));
                    return;
                }
            };
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
        let slot = match shared.engine.reserve() {
            Ok(slot) => slot,
            Err(error) => {
                shared.release_admission();
                let _ = reply.send(Err(ExecuteError::from(error)));
                return;
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
            return;
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
        let config = &shared.config;
        let size = (state.account.authorizations.len() + state.account.outcomes.len()) as u64;
        let spacing = config
            .snapshot_every_events
            .max(config.snapshot_events_per_record.saturating_mul(size));
        let snapshot_due = event_count > 0 && state.events_since_snapshot >= spacing;
        if snapshot_due {
            state.events_since_snapshot = 0;
            // The events are applied and their place is taken: a snapshot that cannot be
            // encoded is left out (loading then replays more events), not a lost decision.
            let started = Instant::now();
            match encode_account(&state.account) {
                Ok(snapshot) => {
                    metrics::histogram!("tandem_account_snapshot_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("tandem_account_snapshot_bytes_total")
                        .increment(snapshot.len() as u64);
                    record.snapshot = Some(snapshot);
                }
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
    }
}

/// Runs `f`, turning a panic into its message. `decide` reads the account and builds a new
/// decision, so a panic inside it leaves nothing half-changed: the one command is answered
/// with the fault, and the shard (with every other account on it) keeps running.
pub(crate) fn unpanicked<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_a_value_passes_through() {
        assert_eq!(unpanicked(|| 7), Ok(7));
        assert_eq!(
            unpanicked(|| -> u8 { panic!("rule {} broke", 3) }),
            Err("rule 3 broke".to_owned())
        );
        assert_eq!(
            unpanicked(|| -> u8 { panic!("plain") }),
            Err("plain".to_owned())
        );
    }
}
