//! The failure latch of the ordered commit hand-off: once a log write fails, no later batch is
//! written. `Engine::submit` checks it before queueing (failing fast), the committer checks it
//! again before each write (catching submissions that raced the failure), and trips it when a
//! write fails. Model-checked with loom (`storage/tests/loom.rs`) against this module.

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct FailureLatch {
    tripped: AtomicBool,
}

impl FailureLatch {
    pub fn new() -> Self {
        Self {
            tripped: AtomicBool::new(false),
        }
    }

    /// Marks the log failed. Everything the committer takes from the queue after this is
    /// refused.
    pub fn trip(&self) {
        self.tripped.store(true, Ordering::Release);
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }
}
