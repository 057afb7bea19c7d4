//! The card and PAN directories, read through from the checkpoint with a bounded cache.
//!
//! The directories themselves are keys of the state (`c:<card>`, `p:<keyed PAN hash>`, see
//! `state_machine/keys.rs`): written by applies into the checkpoint's memory layer and from there
//! into the checkpoint store. Nothing of them is loaded at open, so a restart does not wait on them and a
//! registered account that nobody uses costs no memory for them. A lookup answers from the
//! cache, else reads the state (memory layers, then the store) and keeps what it read, whether the
//! card is there or not.
//!
//! Entries are only ever added to a directory (a card or PAN has one owner, the first link
//! stands), so a cached answer that a key is linked stays true. A cached answer that a key is
//! *not* linked stays true only until an apply links it; applies therefore write every link
//! into the cache themselves, after writing it to the state, and each shard counts its
//! links: a lookup keeps an answer it read only if no link came to its shard while it read.
//! That read either saw the link, or the link's apply comes after it and overwrites it.
//!
//! The cache holds at most a configured number of entries. A full shard forgets a quarter of
//! what it holds, chosen by the hash table's order (random eviction): a forgotten entry costs
//! one read of the state when next asked for.
//!
//! A read of the store may go to disk, so a miss is blocking: the async side asks
//! [`Cached::peek`] first and reads off the async workers.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use std::io;
use tandem_core::{AccountId, CardId};

use crate::checkpoint::Layered;
use crate::keys::{self, stored};

const SHARDS: usize = 64;

/// The entries each directory's cache holds by default: about 25 MB for the PAN directory.
pub const CACHE_ENTRIES_DEFAULT: usize = 262_144;

struct Shard<K, V> {
    /// `None`: looked up and not linked.
    entries: FxHashMap<K, Option<V>>,
    /// Links applied to this shard, ever (see the module docs).
    links: u64,
}

impl<K, V> Default for Shard<K, V> {
    fn default() -> Self {
        Self {
            entries: FxHashMap::default(),
            links: 0,
        }
    }
}

/// What a lookup must find unchanged to keep what it read.
#[derive(Debug, Clone, Copy)]
struct Links(u64);

/// A bounded cache over one directory (see the module docs).
pub(crate) struct Cached<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    per_shard: usize,
}

impl<K: Hash + Eq, V: Clone> Cached<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> std::sync::MutexGuard<'_, Shard<K, V>> {
        let hash = rustc_hash::FxBuildHasher.hash_one(key);
        // The high bits: the shard's own table hashes with the low ones.
        self.shards[(hash >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached answer: `Some(None)` for a key known not to be linked, `None` if unknown.
    pub(crate) fn peek<Q>(&self, key: &Q) -> Option<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).entries.get(key).cloned()
    }

    /// The cached answer, else `read`'s, kept unless a link raced it (see the module docs).
    /// Blocking when `read` runs.
    pub(crate) fn read_through<Q>(
        &self,
        key: &Q,
        owned: impl FnOnce() -> K,
        read: impl FnOnce() -> std::io::Result<Option<V>>,
    ) -> std::io::Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.peek_or_links(key) {
            Ok(found) => Ok(found),
            Err(links) => {
                let found = read()?;
                self.keep(owned(), found.clone(), links);
                Ok(found)
            }
        }
    }

    /// The cached answer, or what a lookup that reads must hand to [`Cached::keep`].
    fn peek_or_links<Q>(&self, key: &Q) -> Result<Option<V>, Links>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard(key);
        match shard.entries.get(key) {
            Some(found) => Ok(found.clone()),
            None => Err(Links(shard.links)),
        }
    }

    /// Keeps what a lookup read, unless a link came to the key's shard since `links`.
    fn keep(&self, key: K, found: Option<V>, links: Links) {
        let mut shard = self.shard(&key);
        if shard.links == links.0 {
            self.insert(&mut shard, key, found);
        }
    }

    /// An applied link, written to the state already.
    pub(crate) fn link(&self, key: K, value: V) {
        let mut shard = self.shard(&key);
        shard.links += 1;
        self.insert(&mut shard, key, Some(value));
    }

    fn insert(&self, shard: &mut Shard<K, V>, key: K, found: Option<V>) {
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&key) {
            // A quarter, rounded up: at least one.
            let mut seen = 0usize;
            shard.entries.retain(|_, _| {
                seen += 1;
                seen % 4 != 1
            });
        }
        shard.entries.insert(key, found);
    }

    /// Forgets everything (a snapshot replaced the state); lookups in flight keep nothing.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.entries.clear();
            shard.links += 1;
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .entries
                    .len()
            })
            .sum()
    }
}

/// A PAN directory entry: the account and card a keyed PAN hash belongs to.
pub(crate) type PanLink = (AccountId, CardId);

/// The committed card and PAN directories, each read through a [`Cached`], shared by the
/// state machine (which extends them as it applies) and every [`crate::StateReader`].
pub(crate) struct Directory {
    cards: Cached<CardId, AccountId>,
    pans: Cached<Box<[u8]>, PanLink>,
}

/// Directory entries one apply adds.
#[derive(Default)]
pub(crate) struct NewLinks {
    pub(crate) cards: Vec<(CardId, AccountId)>,
    pub(crate) pans: Vec<(Box<[u8]>, PanLink)>,
}

impl Directory {
    pub(crate) fn new(cache_entries: usize) -> Self {
        Self {
            cards: Cached::new(cache_entries),
            pans: Cached::new(cache_entries),
        }
    }

    /// The card's account: cached, else read from the state. Blocking on a miss.
    pub(crate) fn card(&self, store: &Layered, card: &CardId) -> io::Result<Option<AccountId>> {
        self.cards.read_through(
            card,
            || card.clone(),
            || stored(store, &keys::card_key(card)),
        )
    }

    /// The PAN's account and card: cached, else read from the state. Blocking on a miss.
    pub(crate) fn pan(&self, store: &Layered, hash: &[u8]) -> io::Result<Option<PanLink>> {
        self.pans.read_through(
            hash,
            || Box::from(hash),
            || stored(store, &keys::pan_key(hash)),
        )
    }

    /// What the card cache knows of `card`, without reading the state.
    pub(crate) fn cached_card(&self, card: &CardId) -> Option<Option<AccountId>> {
        self.cards.peek(card)
    }

    /// What the PAN cache knows of `hash`, without reading the state.
    pub(crate) fn cached_pan(&self, hash: &[u8]) -> Option<Option<PanLink>> {
        self.pans.peek(hash)
    }

    /// Entries the two caches hold.
    pub(crate) fn cached(&self) -> usize {
        self.cards.len() + self.pans.len()
    }

    /// Forgets what the caches hold (the state under them was replaced).
    pub(crate) fn forget(&self) {
        self.cards.clear();
        self.pans.clear();
    }

    /// Links one apply wrote to the state.
    pub(crate) fn extend(&self, links: NewLinks) {
        for (card, account) in links.cards {
            self.cards.link(card, account);
        }
        for (hash, link) in links.pans {
            self.pans.link(hash, link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_a_link_is_not_kept_and_the_link_stands() {
        let cache: Cached<u32, u32> = Cached::new(1024);
        let Err(links) = cache.peek_or_links(&7) else {
            panic!("an empty cache knows nothing");
        };
        // The lookup read "not linked"; meanwhile an apply linked the key.
        cache.link(7, 70);
        cache.keep(7, None, links);
        assert_eq!(cache.peek(&7), Some(Some(70)));
        // A lookup with no link in between keeps what it read, negative answers included.
        let Err(links) = cache.peek_or_links(&8) else {
            panic!("8 was never looked up");
        };
        cache.keep(8, None, links);
        assert_eq!(cache.peek(&8), Some(None));
        assert_eq!(cache.peek_or_links(&8).ok(), Some(None));
        // A link overwrites a cached "not linked".
        cache.link(8, 80);
        assert_eq!(cache.peek(&8), Some(Some(80)));
    }

    #[test]
    fn the_cache_stays_within_its_capacity_and_clear_forgets_lookups_in_flight() {
        let cache: Cached<u32, u32> = Cached::new(SHARDS * 16);
        for key in 0..100_000 {
            cache.link(key, key);
            assert!(cache.len() <= SHARDS * 16, "{} entries", cache.len());
        }
        assert!(cache.len() >= SHARDS * 8, "eviction forgot too much");
        let Err(links) = cache.peek_or_links(&u32::MAX) else {
            panic!("never looked up");
        };
        cache.clear();
        assert_eq!(cache.len(), 0);
        cache.keep(u32::MAX, Some(1), links);
        assert_eq!(cache.peek(&u32::MAX), None);
    }
}
