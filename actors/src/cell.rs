//! The snapshot cell: one writer publishes immutable snapshots, any number of readers load the
//! latest without locking and without ever seeing a torn or older-than-loaded value.
//!
//! In production it is `arc_swap::ArcSwap` (lock-free loads). Under `cfg(loom)` the same API
//! is a mutex around an `Arc`, because loom cannot see inside arc-swap's own atomics; the
//! model test (`tests/loom.rs`) then checks the properties the rest of the code relies on:
//! a reader gets either the old or the new snapshot, sequence numbers never go backwards, and
//! a snapshot stays valid while a reader holds it.

#[cfg(loom)]
use loom::sync::{Arc, Mutex};
#[cfg(not(loom))]
use std::sync::Arc;

/// A cell holding the latest published `T`.
pub struct SnapshotCell<T> {
    #[cfg(not(loom))]
    current: arc_swap::ArcSwap<T>,
    #[cfg(loom)]
    current: Mutex<Arc<T>>,
}

impl<T> SnapshotCell<T> {
    pub fn new(initial: T) -> Self {
        Self {
            #[cfg(not(loom))]
            current: arc_swap::ArcSwap::from_pointee(initial),
            #[cfg(loom)]
            current: Mutex::new(Arc::new(initial)),
        }
    }

    /// The latest snapshot. Never blocks behind the writer.
    pub fn load(&self) -> Arc<T> {
        #[cfg(not(loom))]
        {
            self.current.load_full()
        }
        #[cfg(loom)]
        {
            self.current.lock().expect("cell lock").clone()
        }
    }

    /// Publishes `next`; readers that loaded the previous one keep it until they drop it.
    pub fn publish(&self, next: Arc<T>) {
        #[cfg(not(loom))]
        {
            self.current.store(next);
        }
        #[cfg(loom)]
        {
            *self.current.lock().expect("cell lock") = next;
        }
    }
}
