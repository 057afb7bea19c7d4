//! Whether this node's actors may decide ([`Gate`]): only while it leads, and only once it
//! has applied everything committed before its term.
//!
//! A node that comes to lead may not yet have applied the last entries its predecessor
//! committed (a follower learns an entry is committed from the next append or heartbeat,
//! which a leader that died never sent). An account lent to an actor before they are applied
//! would miss them: a retried idempotency key would place a second hold, money already spent
//! would be spent again. So the gate opens for a term only once the node's first entry of
//! that term is committed and applied (`Engine::settle_lead`), and closes the moment the
//! node stops leading or its term changes; the system deposes every resident account at
//! each change (`system.rs`), so no copy outlives the term it was lent in.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tandem_storage::{Engine, Leader, Leadership};

/// How long one attempt to settle a new term waits (a heartbeat round and the apply of the
/// blank entry take milliseconds; a node cut off from the majority times out and tries again
/// while it still believes it leads).
const SETTLE_ATTEMPT: Duration = Duration::from_secs(2);

/// How long a decision waits for a new leader's gate to open before it is refused as
/// retryable: past it the node is not settling but cut off.
const GATE_WAIT: Duration = Duration::from_secs(3);

/// How often a waiting decision looks again at who leads.
const LOOK_AGAIN: Duration = Duration::from_millis(20);

/// Opens for one term once this node has settled its lead in it.
#[derive(Default)]
pub(crate) struct Gate {
    /// The term this node leads in, if it leads; the settle that finishes checks it under
    /// this lock, so a gate never opens for a term already over.
    led: Mutex<Option<u64>>,
    open: AtomicBool,
    opened: tokio::sync::Notify,
}

/// What a change of leadership asks of the system.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LeadChange {
    /// Nothing: the same term led, or still not leading.
    None,
    /// The resident accounts leave their actors; then, if `settle` names a term, the system
    /// settles it ([`Gate::settle`]).
    Depose { settle: Option<u64> },
}

impl Gate {
    /// Whether actors may decide now: one atomic load on the decision's path.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Follows `now`: closes the gate at once when the led term changes.
    pub(crate) fn follow(&self, now: &Leadership) -> LeadChange {
        let led_now = (now.leader == Leader::This).then_some(now.term);
        let mut led = self.led.lock().unwrap_or_else(|p| p.into_inner());
        if *led == led_now {
            return LeadChange::None;
        }
        self.open.store(false, Ordering::Release);
        let had_led = led.is_some();
        *led = led_now;
        if !had_led && led_now.is_none() {
            return LeadChange::None;
        }
        LeadChange::Depose { settle: led_now }
    }

    /// The engine stopped (shut down, or failed on a log it could not write): any settle in
    /// progress ends, and decisions go to the actors again, whose writes the engine refuses
    /// with its own reason (the log failed, shutting down) rather than "not the leader".
    pub(crate) fn engine_stopped(&self) {
        let mut led = self.led.lock().unwrap_or_else(|p| p.into_inner());
        *led = None;
        self.open.store(true, Ordering::Release);
        self.opened.notify_waiters();
    }

    /// Settles `term`: waits (retrying while this node still leads in it) until the engine
    /// has applied everything committed before the term, then opens the gate, unless the
    /// term is over by then.
    pub(crate) async fn settle(&self, engine: &Engine, term: u64) {
        loop {
            let settled = engine.settle_lead(SETTLE_ATTEMPT).await.is_ok();
            if !self.open_if_led(term, settled) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens the gate for `term` if it is still the led term and `settled`; answers whether
    /// to try settling it again (still led, not settled).
    fn open_if_led(&self, term: u64, settled: bool) -> bool {
        let led = self.led.lock().unwrap_or_else(|p| p.into_inner());
        if *led != Some(term) {
            return false;
        }
        if settled {
            self.open.store(true, Ordering::Release);
            self.opened.notify_waiters();
            tracing::info!(term, "this node leads from its committed state");
        }
        !settled
    }

    /// Waits up to [`GATE_WAIT`] for the gate to open while this node leads or no leader is
    /// known yet (`leader`: an election, or a node's first moments); refused at once with
    /// the leader's id when another node leads, and with none past the wait (the caller
    /// answers "not the leader", which is retryable).
    pub(crate) async fn wait_open(&self, leader: impl Fn() -> Leader) -> Result<(), Option<u64>> {
        let until = tokio::time::Instant::now() + GATE_WAIT;
        loop {
            let opened = self.opened.notified();
            if self.is_open() {
                return Ok(());
            }
            if let Leader::Other { id, .. } = leader() {
                return Err(Some(id));
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Err(None);
            }
            // Woken when the gate opens; looks again at who leads meanwhile.
            let _ = tokio::time::timeout_at(until.min(now + LOOK_AGAIN), opened).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leads(term: u64) -> Leadership {
        Leadership {
            leader: Leader::This,
            term,
        }
    }

    fn follows(term: u64) -> Leadership {
        Leadership {
            leader: Leader::Other {
                id: 2,
                address: "127.0.0.1:7102".into(),
            },
            term,
        }
    }

    #[test]
    fn the_gate_closes_and_deposes_at_every_change_of_the_led_term() {
        let gate = Gate::default();
        assert_eq!(gate.follow(&follows(1)), LeadChange::None, "never led");
        assert_eq!(
            gate.follow(&leads(2)),
            LeadChange::Depose { settle: Some(2) }
        );
        gate.open.store(true, Ordering::Release);
        assert_eq!(gate.follow(&leads(2)), LeadChange::None, "the same term");
        assert!(gate.is_open());
        // Led again in a later term without a change seen between: a new lead.
        assert_eq!(
            gate.follow(&leads(4)),
            LeadChange::Depose { settle: Some(4) }
        );
        assert!(!gate.is_open());
        gate.open.store(true, Ordering::Release);
        assert_eq!(
            gate.follow(&follows(5)),
            LeadChange::Depose { settle: None }
        );
        assert!(!gate.is_open());
        assert_eq!(gate.follow(&follows(6)), LeadChange::None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_decision_waits_for_the_gate_while_this_node_leads_or_nobody_does() {
        let gate = std::sync::Arc::new(Gate::default());
        let refused = gate
            .wait_open(|| Leader::Other {
                id: 3,
                address: "x".into(),
            })
            .await;
        assert_eq!(refused, Err(Some(3)), "refused at once");
        let started = tokio::time::Instant::now();
        assert_eq!(gate.wait_open(|| Leader::Unknown).await, Err(None));
        assert!(started.elapsed() >= GATE_WAIT, "an election is waited out");
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_open(|| Leader::This).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "waits while leading and settling");
        gate.open.store(true, Ordering::Release);
        gate.opened.notify_waiters();
        assert!(waiting.await.unwrap().is_ok());
    }
}
