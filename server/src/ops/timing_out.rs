//! The keys of card traffic whose decision missed its deadline and whose timeout mark is not
//! durable yet ([`Deadlines`]): state the application holds (`app.rs`) and the deadline rule
//! reads and writes (`deadline.rs`), in a file of its own below both.

use std::collections::HashSet;
use std::sync::Mutex;

use tandem_core::IdempotencyKey;

/// The keys whose decision missed its deadline and whose timeout mark is not durable yet.
#[derive(Default)]
pub struct Deadlines {
    timing_out: Mutex<HashSet<IdempotencyKey>>,
}

impl Deadlines {
    pub(super) fn set(&self) -> std::sync::MutexGuard<'_, HashSet<IdempotencyKey>> {
        self.timing_out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
