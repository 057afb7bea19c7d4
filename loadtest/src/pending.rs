//! Requests sent on one connection and waiting for their answers, matched by a key the answer
//! carries back (a processor stream's correlation id, an ISO 8583 link's STAN): the one
//! bookkeeping both pipelined connections need.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The waiters of one connection; clones share them (the sender's side and the reader's).
pub struct Pending<K, V>(Arc<Mutex<HashMap<K, oneshot::Sender<V>>>>);

impl<K, V> Clone for Pending<K, V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: Hash + Eq, V> Default for Pending<K, V> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(HashMap::new())))
    }
}

impl<K: Hash + Eq, V> Pending<K, V> {
    fn waiters(&self) -> MutexGuard<'_, HashMap<K, oneshot::Sender<V>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a request under `key`, before it is sent; its answer arrives on the receiver
    /// (which errs if the connection closes first).
    pub fn wait_for(&self, key: K) -> oneshot::Receiver<V> {
        let (sender, receiver) = oneshot::channel();
        self.waiters().insert(key, sender);
        receiver
    }

    /// Hands `answer` to the request waiting under `key`, if one is.
    pub fn answer(&self, key: &K, answer: V) {
        let waiter = self.waiters().remove(key);
        if let Some(waiter) = waiter {
            let _ = waiter.send(answer);
        }
    }

    /// The connection closed: every request still waiting gets `last()` (or, if `None`, its
    /// receiver errs).
    pub fn close(&self, last: impl Fn() -> Option<V>) {
        let waiters: Vec<_> = self.waiters().drain().map(|(_, w)| w).collect();
        for waiter in waiters {
            if let Some(answer) = last() {
                let _ = waiter.send(answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_reach_their_own_waiter_and_closing_answers_the_rest() {
        let pending: Pending<u32, &str> = Pending::default();
        let first = pending.wait_for(1);
        let second = pending.wait_for(2);
        let third = pending.wait_for(3);
        pending.answer(&2, "two");
        pending.answer(&9, "nobody");
        assert_eq!(second.await, Ok("two"));
        pending.close(|| Some("closed"));
        assert_eq!(first.await, Ok("closed"));
        assert_eq!(third.await, Ok("closed"));
        let dropped = pending.wait_for(4);
        pending.close(|| None);
        assert!(dropped.await.is_err(), "no last answer: the receiver errs");
    }
}
