//! Committed accounts in memory, beside the state machine.
//!
//! Every account this node has in memory is in exactly one of two places:
//!
//! - **here** ([`Accounts`]): its committed state, kept current by the state machine, which
//!   applies each committed record's events to it once. Reads of an account without a
//!   resident actor come from here (a balance, the holds, a posting's original lifecycle),
//!   and a node without actors (a follower of the replication issue) keeps every account it
//!   serves here.
//! - **lent** to the account's actor on this node, which decides on it and applies its own
//!   decisions as it makes them: the one copy of the account. While it is lent the state
//!   machine leaves it alone (the actor's copy already holds every committed record, and more),
//!   and the actor gives it back when it stops with nothing in flight, so starting the actor
//!   again costs no store read.
//!
//! An account that is not in memory is loaded from the checkpoint (the store plus the applied
//! writes not yet in it) off the async workers. An account here that nobody touched for a
//! whole checkpoint interval and whose last change is in a durable checkpoint leaves memory
//! at that checkpoint, or, when nothing new was applied, at the checkpoint timer's tick (an
//! idle node writes no checkpoint, and would otherwise keep them).
//!
//! A load that races an apply must not keep an older state than the apply left: every apply
//! that finds its account absent moves its shard's epoch on, and a load is kept only if the
//! epoch it read before loading is unchanged.

use std::sync::Mutex;

use rustc_hash::FxHashMap;
use tandem_core::{Account, AccountId};

use crate::codec;
use crate::types::AccountRecord;

const SHARDS: usize = 64;

enum Held {
    Here {
        resting: Box<Account>,
        /// The log index of the last record applied to it (0 if loaded).
        index: u64,
        /// Read, applied to or given back since the last checkpoint.
        touched: bool,
    },
    /// Lent to the actor holding this lease. `skipped_to` is the account's seq after the
    /// last committed record applied while lent (which the state machine left to the actor's
    /// copy): a copy given back that does not reach it missed records (this node stopped
    /// leading while it was lent) and is not kept.
    Lent { token: u64, skipped_to: u64 },
}

#[derive(Default)]
struct Shard {
    held: FxHashMap<AccountId, Held>,
    epoch: u64,
}

/// The right to give an account back: only the actor it was lent to last may.
#[derive(Debug)]
pub struct Lease {
    token: u64,
}

/// What an account's load must find unchanged to be kept (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

/// Told of each committed record applied to an account held here (no actor holds it): a
/// node whose accounts are not lent to actors (a follower) publishes its watchers' changes
/// from this. Called under the account's shard lock: it must be quick and must not touch
/// [`Accounts`].
pub trait AppliedWatch: Send + Sync + 'static {
    /// Whether anybody watches `account` (it then stays in memory, and `applied` is told).
    fn watched(&self, account: &AccountId) -> bool;
    /// `account` after a committed record moved it, with its money movements' causes.
    fn applied(&self, account: &Account, causes: Vec<tandem_core::Cause>);
}

/// Committed accounts in memory (see the module docs).
pub struct Accounts {
    shards: Box<[Mutex<Shard>]>,
    leases: std::sync::atomic::AtomicU64,
    watch: std::sync::OnceLock<std::sync::Arc<dyn AppliedWatch>>,
}

impl Default for Accounts {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            leases: std::sync::atomic::AtomicU64::new(1),
            watch: std::sync::OnceLock::new(),
        }
    }
}

impl Accounts {
    fn shard(&self, id: &AccountId) -> std::sync::MutexGuard<'_, Shard> {
        use std::hash::BuildHasher;
        let hash = rustc_hash::FxBuildHasher.hash_one(id);
        self.shards[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lends the account to an actor: its committed state if it is here (the caller loads it
    /// otherwise). From now on the state machine leaves it alone until it is given back.
    pub fn lend(&self, id: &AccountId) -> (Lease, Option<Account>) {
        let token = self
            .leases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut shard = self.shard(id);
        // A stale lease (an actor that failed without giving it back) is simply replaced.
        let previous = shard.held.insert(
            id.clone(),
            Held::Lent {
                token,
                skipped_to: 0,
            },
        );
        let resting = match previous {
            Some(Held::Here { resting, .. }) => Some(*resting),
            _ => None,
        };
        (Lease { token }, resting)
    }

    /// Gives a lent account back with its state, which must be committed (nothing of it
    /// in flight). Ignored unless `lease` is the account's latest. A copy that lacks a
    /// committed record applied while it was lent (another leader's) is not kept: the
    /// account is loaded again when next needed.
    pub fn give_back(&self, id: &AccountId, lease: Lease, resting: Account) {
        let mut shard = self.shard(id);
        let Some(held) = shard.held.get_mut(id) else {
            return;
        };
        match held {
            Held::Lent { token, skipped_to } if *token == lease.token => {
                if resting.seq >= *skipped_to {
                    *held = Held::Here {
                        resting: Box::new(resting),
                        index: 0,
                        touched: true,
                    };
                } else {
                    tracing::warn!(account = %id, held_seq = resting.seq, committed_seq = *skipped_to, "an account given back lacks committed records; it will be loaded again");
                    shard.held.remove(id);
                    shard.epoch += 1;
                }
            }
            _ => {}
        }
    }

    /// Watches what is applied to accounts held here, from now on (once).
    pub fn set_watch(&self, watch: std::sync::Arc<dyn AppliedWatch>) {
        let _ = self.watch.set(watch);
    }

    /// Ends a lease without the state (the actor's copy may hold what never committed): the
    /// account is loaded again from the checkpoint when next needed.
    pub fn end_lease(&self, id: &AccountId, lease: Lease) {
        let mut shard = self.shard(id);
        if matches!(shard.held.get(id), Some(Held::Lent { token, .. }) if *token == lease.token) {
            shard.held.remove(id);
        }
    }

    /// Runs `read` on the account's committed state if it is here.
    pub fn read<T>(&self, id: &AccountId, read: impl FnOnce(&Account) -> T) -> Option<T> {
        let mut shard = self.shard(id);
        match shard.held.get_mut(id) {
            Some(Held::Here {
                resting, touched, ..
            }) => {
                *touched = true;
                Some(read(resting))
            }
            _ => None,
        }
    }

    /// Whether the account is lent to an actor.
    pub fn is_lent(&self, id: &AccountId) -> bool {
        matches!(self.shard(id).held.get(id), Some(Held::Lent { .. }))
    }

    /// Read before loading an account, and handed to [`Accounts::keep_loaded`].
    pub fn epoch(&self, id: &AccountId) -> Epoch {
        Epoch(self.shard(id).epoch)
    }

    /// Keeps an account loaded from the checkpoint, unless it is in memory already or an
    /// apply may have changed it since `epoch` was read.
    pub fn keep_loaded(&self, id: &AccountId, epoch: Epoch, resting: Account) {
        let mut shard = self.shard(id);
        if shard.epoch == epoch.0 && !shard.held.contains_key(id) {
            shard.held.insert(
                id.clone(),
                Held::Here {
                    resting: Box::new(resting),
                    index: 0,
                    touched: true,
                },
            );
        }
    }

    /// Applies one committed record at log index `index`: to the account if it is here; not
    /// at all if it is lent (its actor's copy holds it); if it is absent, only the epoch
    /// moves, so a load racing this apply is not kept.
    pub(crate) fn apply(&self, record: &AccountRecord, index: u64) {
        let mut shard = self.shard(&record.account);
        let shard = &mut *shard;
        match shard.held.get_mut(&record.account) {
            None => shard.epoch += 1,
            Some(Held::Lent { skipped_to, .. }) => {
                *skipped_to = (*skipped_to).max(record.seq_first + u64::from(record.event_count));
            }
            Some(Held::Here {
                resting,
                index: last,
                touched,
            }) => {
                *last = index;
                *touched = true;
                if record.event_count == 0 {
                    return;
                }
                let held = resting.seq;
                if held >= record.seq_first + u64::from(record.event_count) {
                    // Loaded from the checkpoint after these events were written to it.
                    return;
                }
                let events = if held == record.seq_first {
                    codec::decode_events(&record.events).ok()
                } else {
                    None
                };
                match events {
                    Some(events) => {
                        let watch = self
                            .watch
                            .get()
                            .filter(|watch| watch.watched(&record.account));
                        let causes: Vec<tandem_core::Cause> = match watch {
                            Some(_) => events
                                .iter()
                                .filter_map(|event| match event {
                                    tandem_core::Event::Movement(movement) => Some(movement.cause),
                                    _ => None,
                                })
                                .collect(),
                            None => Vec::new(),
                        };
                        for event in events {
                            tandem_core::apply_owned(resting, event);
                        }
                        if let Some(watch) = watch {
                            watch.applied(resting, causes);
                        }
                    }
                    None => {
                        // Not the next events of what is held (or they do not decode): let it
                        // go; the next read loads it from the checkpoint, which has them.
                        tracing::warn!(
                            account = %record.account,
                            held_seq = resting.seq,
                            record_seq = record.seq_first,
                            "a committed record does not continue the account in memory; it will be loaded again"
                        );
                        shard.held.remove(&record.account);
                        shard.epoch += 1;
                    }
                }
            }
        }
    }

    /// After a durable checkpoint through `index`: accounts here that nobody touched since the
    /// previous one and whose last change it holds leave memory.
    pub(crate) fn evict_clean(&self, index: u64) -> usize {
        let mut evicted = 0;
        let watch = self.watch.get();
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.held.retain(|id, held| match held {
                // A watched account stays, so every record reaches its watchers.
                Held::Here { .. } if watch.is_some_and(|watch| watch.watched(id)) => true,
                Held::Lent { .. } => true,
                Held::Here {
                    index: last,
                    touched,
                    ..
                } => {
                    let keep = *touched || *last > index;
                    *touched = false;
                    if !keep {
                        evicted += 1;
                    }
                    keep
                }
            });
        }
        evicted
    }

    /// Forgets every account here (a snapshot replaced the whole state); lent ones stay lent.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shard
                .held
                .retain(|_, held| matches!(held, Held::Lent { .. }));
            shard.epoch += 1;
        }
    }

    /// Accounts here (not lent).
    pub fn resting(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                shard
                    .held
                    .values()
                    .filter(|held| matches!(held, Held::Here { .. }))
                    .count()
            })
            .sum()
    }
}
