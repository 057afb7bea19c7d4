//! A connection that is opened again once it has closed: a processor stream or an ISO 8583
//! link to a node that was killed and came back gets its share of the traffic again, as a
//! network's processor reconnects its links. While the node is down, a call finds the
//! connection closed at once (and the caller tries the next node); an attempt to reopen is
//! made at most every [`REOPEN_EVERY`].

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How often a closed connection is tried again.
pub const REOPEN_EVERY: Duration = Duration::from_millis(200);

/// A connection that can say it has closed.
pub trait Closable {
    fn is_closed(&self) -> bool;
}

/// The current connection of one slot, and when it was last tried again.
pub struct Reopening<C> {
    current: RwLock<Arc<C>>,
    last_try: tokio::sync::Mutex<Option<Instant>>,
}

impl<C: Closable> Reopening<C> {
    pub fn new(connection: C) -> Self {
        Self {
            current: RwLock::new(Arc::new(connection)),
            last_try: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection to use: the current one, or, if it has closed and it is time to try,
    /// a new one from `open` (the closed one if opening fails: its call fails at once).
    pub async fn get<F, Fut>(&self, open: F) -> Arc<C>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C, String>>,
    {
        let current = self.current();
        if !current.is_closed() {
            return current;
        }
        let mut last_try = self.last_try.lock().await;
        // Another caller may have reopened it while this one waited.
        let current = self.current();
        if !current.is_closed() || last_try.is_some_and(|at| at.elapsed() < REOPEN_EVERY) {
            return current;
        }
        *last_try = Some(Instant::now());
        match open().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
                fresh
            }
            Err(_) => current,
        }
    }

    fn current(&self) -> Arc<C> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct Conn {
        id: usize,
        closed: AtomicBool,
    }

    impl Closable for Conn {
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::Relaxed)
        }
    }

    fn conn(id: usize) -> Conn {
        Conn {
            id,
            closed: AtomicBool::new(false),
        }
    }

    #[tokio::test]
    async fn a_closed_connection_is_opened_again_but_not_more_often_than_allowed() {
        let slot = Reopening::new(conn(1));
        let opened = AtomicUsize::new(0);
        let open = |id: usize, ok: bool| {
            opened.fetch_add(1, Ordering::Relaxed);
            async move {
                if ok {
                    Ok(conn(id))
                } else {
                    Err("refused".to_owned())
                }
            }
        };
        // Open: used as it is, nothing opened.
        assert_eq!(slot.get(|| open(9, true)).await.id, 1);
        assert_eq!(opened.load(Ordering::Relaxed), 0);
        // Closed, the node still down: one attempt, the closed one answered.
        slot.current().closed.store(true, Ordering::Relaxed);
        assert_eq!(slot.get(|| open(2, false)).await.id, 1);
        assert_eq!(opened.load(Ordering::Relaxed), 1);
        // Too soon to try again.
        assert_eq!(slot.get(|| open(2, true)).await.id, 1);
        assert_eq!(opened.load(Ordering::Relaxed), 1);
        // Later, the node back: a fresh connection, kept.
        tokio::time::sleep(REOPEN_EVERY).await;
        assert_eq!(slot.get(|| open(2, true)).await.id, 2);
        assert_eq!(slot.get(|| open(3, true)).await.id, 2);
        assert_eq!(opened.load(Ordering::Relaxed), 2);
    }
}
