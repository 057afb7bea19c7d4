//! The state applied from the log, checkpointed in the store (fjall, `checkpoint.rs`): account
//! events and snapshots, the card directory, the authorization routing index and the expiry
//! index.
//!
//! One keyspace with prefixed keys, so that everything a checkpoint writes — every record of
//! every entry up to one log index, and `last_applied` — goes in a single atomic batch: after
//! a crash either all of it is there or none, and openraft re-applies from `last_applied`, so
//! nothing is applied twice.
//!
//! Key layout (account, card and authorization ids never contain a NUL byte):
//!
//! | key | value |
//! |---|---|
//! | `m:applied` | last applied log id |
//! | `m:membership` | last applied membership |
//! | `a:<account>\0s` | the account's latest snapshot (`codec::encode_account`) |
//! | `a:<account>\0e<seq_first, 8 bytes big-endian>` | events after it: the records of one apply, each `codec::encode_events` behind a 4-byte length |
//! | `c:<card>` | the card's account |
//! | `p:<keyed PAN hash>` | the PAN's account and card |
//! | `x:<expires_at, 8 bytes order-preserving><account>` | an account whose earliest hold is due then (one per account) |
//!
//! Data directories written before issue 19 also hold `w:<account>` (the account's `x:` time,
//! to find the entry to move); the `w:` keys are removed at open.
//!
//! The store is a checkpoint (`checkpoint.rs`): an apply puts these writes in memory, and a
//! checkpoint — what openraft calls building a snapshot, every so many entries or
//! milliseconds — writes everything applied up to exactly one log index to the store in one
//! batch with `m:applied`, and fdatasyncs its journal, before openraft may purge the log up to
//! it. Reads see memory first, then the store. At open, openraft replays the log after
//! `m:applied` into memory again. Data directories from before decision 0023 hold the same
//! keys in sled, moved into the store at the first open.
//!
//! An account's `x:` entry is always at its committed earliest open-hold expiry (none when no
//! hold is open): every record that moves it says from where and to where
//! ([`crate::types::ExpiryMove`], which the account's actor knows), so an apply moves it with
//! neither a store read on the apply's path nor every account's entry held in memory. Only records of
//! log format 1 (`log_store.rs`), which did not say from where, need the entries: the first
//! such record reads them all into memory, and they are kept current from then on (after an
//! upgrade, until the next restart). The card and PAN directories (`c:` and `p:`) are not
//! loaded either: they are read through a bounded cache (`directory.rs`), so neither a
//! restart nor an unused account pays for them.

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, OptionalSend, StorageIOError, StoredMembership};
use serde::{Deserialize, Serialize};
use std::io::{self, Cursor};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use tandem_core::{Account, AccountId, CardId};

use crate::accounts::{Accounts, Resting};
use crate::checkpoint::{CheckpointObserver, Frozen, Layered, Writes};
use crate::codec;
use crate::directory::Cached;
use crate::types::{BatchApplied, Entry, ExpiryMove, LogId, NodeId, StorageError, TandemRaft};

const APPLIED: &[u8] = b"m:applied";
const MEMBERSHIP: &[u8] = b"m:membership";

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

fn account_prefix(account: &AccountId) -> Vec<u8> {
    let mut key = b"a:".to_vec();
    key.extend_from_slice(account.as_str().as_bytes());
    key.push(0);
    key
}

fn snapshot_key(account: &AccountId) -> Vec<u8> {
    let mut key = account_prefix(account);
    key.push(b's');
    key
}

fn events_prefix(account: &AccountId) -> Vec<u8> {
    let mut key = account_prefix(account);
    key.push(b'e');
    key
}

fn events_key(account: &AccountId, seq_first: u64) -> Vec<u8> {
    let mut key = events_prefix(account);
    key.extend_from_slice(&seq_first.to_be_bytes());
    key
}

fn card_key(card: &CardId) -> Vec<u8> {
    [b"c:".as_slice(), card.as_str().as_bytes()].concat()
}

fn pan_key(hash: &[u8]) -> Vec<u8> {
    [b"p:".as_slice(), hash].concat()
}

/// The prefix of the expiry pointers older data directories hold (see the module docs).
const OLD_EXPIRY_POINTERS: &[u8] = b"w:";

/// Order-preserving bytes of a signed time.
fn time_bytes(millis: i64) -> [u8; 8] {
    ((millis as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time and account of an `x:` key.
fn expiry_entry(key: &[u8]) -> Option<(i64, AccountId)> {
    let time = u64::from_be_bytes(key.get(2..10)?.try_into().ok()?) ^ (1 << 63);
    let account = std::str::from_utf8(key.get(10..)?)
        .ok()
        .and_then(|s| AccountId::new(s).ok())?;
    Some((time as i64, account))
}

fn expiry_key(expires_at: i64, account: &AccountId) -> Vec<u8> {
    [
        b"x:".as_slice(),
        &time_bytes(expires_at),
        account.as_str().as_bytes(),
    ]
    .concat()
}

/// Whether both keys are events keys of one account (`a:` account `0` `e` seq): such values
/// are chunk sequences, and a later one continues an earlier one of the same layer (its
/// events follow on), so a checkpoint stores them as one value under the first key. Readers
/// count sequence numbers from a key through all of its chunks, so either form reads alike.
fn same_accounts_events(first: &[u8], next: &[u8]) -> bool {
    let n = first.len();
    n == next.len()
        && n > 2 + 2 + 8
        && first.starts_with(b"a:")
        && first[n - 10..n - 8] == [0, b'e']
        && first[..n - 8] == next[..n - 8]
}

/// An events value holds one or more encoded records, each with a 4-byte length.
fn push_chunk(value: &mut Vec<u8>, record: &[u8]) {
    value.extend_from_slice(&(record.len() as u32).to_be_bytes());
    value.extend_from_slice(record);
}

fn chunks(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let length = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let chunk = rest.get(4..4 + length)?;
        rest = &rest[4 + length..];
        Some(chunk)
    })
}

/// A snapshot as openraft ships it: every key and value of the state.
#[derive(Serialize, Deserialize)]
struct SnapshotImage {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Read access to the applied state, shared with the actors.
#[derive(Clone)]
pub struct StateReader {
    store: Arc<Layered>,
    directory: Arc<Directory>,
    accounts: Arc<Accounts>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("stored account does not decode: {0}")]
    Codec(#[from] codec::CodecError),
    #[error(
        "stored events of {account} do not continue its state (expected seq {expected}, found {found})"
    )]
    Gap {
        account: AccountId,
        expected: u64,
        found: u64,
    },
    /// The blocking task that read it panicked or was cancelled.
    #[error("the read did not finish: {0}")]
    Background(String),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

impl StateReader {
    /// Rebuilds an account from its latest snapshot and the events after it; a fresh
    /// unopened account if nothing is stored.
    pub fn load_account(&self, account: &AccountId) -> Result<Account, LoadError> {
        let mut state = match self.store.get(&snapshot_key(account))? {
            Some(bytes) => codec::decode_account(&bytes)?,
            None => Account::new(account.clone()),
        };
        let start = state.seq;
        let mut gap = None;
        self.each_event(account, start, |seq, event| {
            if seq != state.seq {
                gap = Some(seq);
                return false;
            }
            tandem_core::apply_owned(&mut state, event);
            true
        })?;
        if let Some(found) = gap {
            return Err(LoadError::Gap {
                account: account.clone(),
                expected: state.seq,
                found,
            });
        }
        Ok(state)
    }

    /// The account's recorded events with sequence number `from` and later, in order, each
    /// with its sequence number (the account's `seq` before it), until `visit` answers false.
    pub fn each_event(
        &self,
        account: &AccountId,
        from: u64,
        mut visit: impl FnMut(u64, tandem_core::Event) -> bool,
    ) -> Result<(), LoadError> {
        let prefix = events_prefix(account);
        // Past the prefix: it ends in `e`, so the same with `f`.
        let mut end = prefix.clone();
        *end.last_mut().expect("prefixes are not empty") += 1;
        let mut failed = None;
        // The chunk holding `from` starts at or before it: at the last key at or below it.
        self.store.scan_from_floor(
            (Bound::Included(prefix.clone()), Bound::Excluded(end)),
            events_key(account, from),
            |key, value| {
                if !key.starts_with(&prefix) {
                    return Ok(false);
                }
                let seq_bytes: [u8; 8] = key[key.len() - 8..]
                    .try_into()
                    .expect("events keys end in 8 bytes");
                let mut seq = u64::from_be_bytes(seq_bytes);
                for chunk in chunks(value) {
                    let events = match codec::decode_events(chunk) {
                        Ok(events) => events,
                        Err(error) => {
                            failed = Some(error);
                            return Ok(false);
                        }
                    };
                    for event in events {
                        if seq >= from && !visit(seq, event) {
                            return Ok(false);
                        }
                        seq += 1;
                    }
                }
                Ok(true)
            },
        )?;
        match failed {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// The committed accounts in memory.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub(crate) fn accounts_shared(&self) -> Arc<Accounts> {
        self.accounts.clone()
    }

    /// The account's committed state, loaded from the checkpoint and kept in memory (see
    /// `accounts.rs`). Blocking: run it off the async workers.
    pub fn load_resting(&self, account: &AccountId) -> Result<Resting, LoadError> {
        let epoch = self.accounts.epoch(account);
        let resting = self.checkpointed(account)?;
        self.accounts.keep_loaded(account, epoch, resting.clone());
        Ok(resting)
    }

    /// The account's committed state as the checkpoint holds it, not kept in memory (for an
    /// actor the account is lent to). Blocking: run it off the async workers.
    pub fn checkpointed(&self, account: &AccountId) -> Result<Resting, LoadError> {
        Ok(Resting {
            account: self.load_account(account)?,
        })
    }

    /// The account and card a keyed PAN hash belongs to (the PAN directory). Blocking when
    /// the directory's cache does not know it: run it off the async workers, after
    /// [`StateReader::cached_pan_card`].
    pub fn pan_card(&self, hash: &[u8]) -> Result<Option<(AccountId, CardId)>, LoadError> {
        Ok(self.directory.pan(&self.store, hash)?)
    }

    /// What the PAN directory's cache knows of a keyed PAN hash: `Some(None)` for a PAN known
    /// not to be linked, `None` if it must be read ([`StateReader::pan_card`]).
    pub fn cached_pan_card(&self, hash: &[u8]) -> Option<Option<(AccountId, CardId)>> {
        self.directory.pans.peek(hash)
    }

    /// The account a card belongs to (the card directory). Blocking when the directory's
    /// cache does not know it: run it off the async workers, after
    /// [`StateReader::cached_card_account`].
    pub fn card_account(&self, card: &CardId) -> Result<Option<AccountId>, LoadError> {
        Ok(self.directory.card(&self.store, card)?)
    }

    /// What the card directory's cache knows of a card: `Some(None)` for a card known not to
    /// exist, `None` if it must be read ([`StateReader::card_account`]).
    pub fn cached_card_account(&self, card: &CardId) -> Option<Option<AccountId>> {
        self.directory.cards.peek(card)
    }

    /// Entries the card and PAN directories' caches hold.
    pub fn directory_cached(&self) -> usize {
        self.directory.cards.len() + self.directory.pans.len()
    }

    /// Accounts whose earliest open hold is due at or before `now_ms`, oldest first, at most
    /// `limit`. An account's entry moves when its earliest expiry changes (the actor sends the
    /// new one with its next record), so a swept account drops out by itself.
    pub fn due_expiries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AccountId)>, LoadError> {
        let mut due = Vec::new();
        let end = expiry_key(now_ms.saturating_add(1), &AccountId::new("0").expect("id"));
        self.store.scan(
            (Bound::Included(b"x:".to_vec()), Bound::Excluded(end)),
            |key, _| {
                if due.len() >= limit {
                    return Ok(false);
                }
                if let Some(entry) = expiry_entry(key) {
                    due.push(entry);
                }
                Ok(true)
            },
        )?;
        Ok(due)
    }

    /// The last applied log id the durable checkpoint holds.
    pub fn applied(&self) -> Result<Option<LogId>, LoadError> {
        Ok(match self.store.stored(APPLIED)? {
            Some(bytes) => codec::decode_value(&bytes)?,
            None => None,
        })
    }
}

/// A PAN directory entry: the account and card a keyed PAN hash belongs to.
type PanLink = (AccountId, CardId);

/// The committed card and PAN directories, read through a bounded cache (`directory.rs`),
/// shared by the state machine (which extends them as it applies) and every [`StateReader`].
struct Directory {
    cards: Cached<CardId, AccountId>,
    pans: Cached<Box<[u8]>, PanLink>,
}

/// Directory entries one apply adds.
#[derive(Default)]
struct Links {
    cards: Vec<(CardId, AccountId)>,
    pans: Vec<(Box<[u8]>, PanLink)>,
}

impl Directory {
    fn new(cache_entries: usize) -> Self {
        Self {
            cards: Cached::new(cache_entries),
            pans: Cached::new(cache_entries),
        }
    }

    /// The card's account: cached, else read from the state. Blocking on a miss.
    fn card(&self, store: &Layered, card: &CardId) -> io::Result<Option<AccountId>> {
        self.cards
            .read_through(card, || card.clone(), || stored(store, &card_key(card)))
    }

    /// The PAN's account and card: cached, else read from the state. Blocking on a miss.
    fn pan(&self, store: &Layered, hash: &[u8]) -> io::Result<Option<PanLink>> {
        self.pans
            .read_through(hash, || Box::from(hash), || stored(store, &pan_key(hash)))
    }

    /// Forgets what the caches hold (the state under them was replaced).
    fn forget(&self) {
        self.cards.clear();
        self.pans.clear();
    }

    /// Links one apply wrote to the state.
    fn extend(&self, links: Links) {
        for (card, account) in links.cards {
            self.cards.link(card, account);
        }
        for (hash, link) in links.pans {
            self.pans.link(hash, link);
        }
    }
}

/// Whether an entry holds a log-format-1 record that moves an expiry index entry.
fn moves_a_format1_expiry(entry: &Entry) -> bool {
    match &entry.payload {
        EntryPayload::Normal(batch) => batch
            .records
            .iter()
            .any(|record| record.expiry.is_none() && record.format1_next_expiry.is_some()),
        _ => false,
    }
}

/// The value the state holds under `key`, decoded.
fn stored<T: serde::de::DeserializeOwned>(store: &Layered, key: &[u8]) -> io::Result<Option<T>> {
    store
        .get(key)?
        .map(|bytes| codec::decode_value(&bytes).map_err(io::Error::other))
        .transpose()
}

fn encoded<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    codec::encode_value(value).map_err(io::Error::other)
}

/// The Raft state machine.
pub struct StateMachine {
    store: Arc<Layered>,
    directory: Arc<Directory>,
    /// Committed accounts in memory (`accounts.rs`), kept current as entries are applied.
    accounts: Arc<Accounts>,
    applied: Option<LogId>,
    membership: Membership,
    /// Every account's expiry index entry, read from the state when the first record of log
    /// format 1 is applied (see the module docs); `None` until then.
    format1_expiries: Option<FxHashMap<AccountId, i64>>,
    /// openraft asks for the current snapshot once at start, only for its meta; see
    /// `get_current_snapshot`.
    startup_asked: bool,
}

/// Checkpoint store settings Tandem sets explicitly. (Named for the store before decision
/// 0023; the server's `sled_cache_bytes` setting still sets the cache.)
#[derive(Debug, Clone, Copy)]
pub struct SledSettings {
    /// The store's block cache, in bytes.
    pub cache_bytes: u64,
    /// Entries each of the card and PAN directories' caches holds, at most (`directory.rs`).
    pub directory_cache_entries: usize,
}

impl Default for SledSettings {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
            directory_cache_entries: crate::directory::CACHE_ENTRIES_DEFAULT,
        }
    }
}

impl StateMachine {
    pub fn open(path: &Path, settings: SledSettings) -> io::Result<Self> {
        Self::open_observed(path, settings, None)
    }

    /// Opens the state with `observer` told of every durable checkpoint.
    pub fn open_observed(
        path: &Path,
        settings: SledSettings,
        observer: Option<CheckpointObserver>,
    ) -> io::Result<Self> {
        let started = std::time::Instant::now();
        let store = Arc::new(
            Layered::open(path, settings.cache_bytes)?
                .observed_by(observer)
                .appending(same_accounts_events),
        );
        let store_ms = started.elapsed().as_millis();
        // The `w:` keys of older data directories (see the module docs).
        store.remove_stored_prefix(OLD_EXPIRY_POINTERS)?;
        let directory = Arc::new(Directory::new(settings.directory_cache_entries));
        // What a restart spends where, for whoever reads a slow one's log.
        tracing::info!(
            store_ms,
            cleanup_ms = started.elapsed().as_millis() - store_ms,
            "checkpoint opened"
        );
        let mut machine = Self {
            store,
            directory,
            accounts: Arc::new(Accounts::default()),
            applied: None,
            membership: Membership::default(),
            format1_expiries: None,
            startup_asked: false,
        };
        machine.applied = match machine.store.stored(APPLIED)? {
            Some(bytes) => codec::decode_value(&bytes).map_err(io::Error::other)?,
            None => None,
        };
        machine.membership = match machine.store.stored(MEMBERSHIP)? {
            Some(bytes) => codec::decode_value(&bytes).map_err(io::Error::other)?,
            None => Membership::default(),
        };
        Ok(machine)
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            store: self.store.clone(),
            directory: self.directory.clone(),
            accounts: self.accounts.clone(),
        }
    }

    /// Makes what the store holds durable (see `checkpoint.rs`).
    pub fn sync(&self) -> io::Result<()> {
        self.store.sync()
    }

    /// Applied writes held in memory, not yet in a durable checkpoint.
    pub fn unsaved(&self) -> usize {
        self.store.unsaved()
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> io::Result<Vec<BatchApplied>> {
        let mut batch = Writes::new();
        let mut answers = Vec::with_capacity(entries.len());
        // Each account's records in this call, gathered into one value (first seq, chunks):
        // a busy account costs one store insert per apply, not one per decision.
        let mut tails: std::collections::HashMap<AccountId, (u64, Vec<u8>)> =
            std::collections::HashMap::new();
        // Moves of the expiry entries, kept only while format-1 records need them.
        let mut expiry_moves: std::collections::HashMap<AccountId, Option<i64>> =
            std::collections::HashMap::new();
        let mut links = Links::default();
        if self.format1_expiries.is_none() && entries.iter().any(moves_a_format1_expiry) {
            self.format1_expiries = Some(self.expiry_entries()?);
        }
        // The records, for the accounts in memory once the writes are in place (a load that
        // read the writes before them is then either kept and current, or not kept).
        let mut applied = Vec::new();
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
                EntryPayload::Normal(log_batch) => {
                    for record in &log_batch.records {
                        self.apply_record(
                            &mut batch,
                            &mut tails,
                            &mut expiry_moves,
                            &mut links,
                            record,
                        )?;
                    }
                    applied.push((entry.log_id.index, log_batch.records));
                }
            }
            self.applied = Some(entry.log_id);
            answers.push(BatchApplied {
                index: entry.log_id.index,
            });
        }
        for (account, (seq_first, chunks)) in tails {
            batch.insert(events_key(&account, seq_first), Some(chunks));
        }
        // `m:applied` and the membership are written by the checkpoint that covers them.
        self.store.apply(batch);
        self.directory.extend(links);
        if let Some(expiries) = &mut self.format1_expiries {
            for (account, next) in expiry_moves {
                match next {
                    Some(at) => expiries.insert(account, at),
                    None => expiries.remove(&account),
                };
            }
        }
        for (index, records) in &applied {
            for record in records {
                self.accounts.apply(record, *index);
            }
        }
        Ok(answers)
    }

    /// Every account's expiry index entry as the state holds it (for format-1 records).
    fn expiry_entries(&self) -> io::Result<FxHashMap<AccountId, i64>> {
        let started = std::time::Instant::now();
        let mut expiries: FxHashMap<AccountId, i64> = FxHashMap::default();
        let mut end = b"x:".to_vec();
        end.push(0xff);
        self.store.scan(
            (Bound::Included(b"x:".to_vec()), Bound::Excluded(end)),
            |key, _| {
                let (at, account) = expiry_entry(key)
                    .ok_or_else(|| io::Error::other("an expiry index key does not decode"))?;
                if let Some(other) = expiries.insert(account.clone(), at) {
                    // One entry per account is the rule; should two be found, the earlier is
                    // the one that matters (a sweep then moves it).
                    tracing::warn!(%account, at, other, "two expiry index entries for one account");
                    expiries.insert(account, at.min(other));
                }
                Ok(true)
            },
        )?;
        tracing::info!(
            entries = expiries.len(),
            ms = started.elapsed().as_millis(),
            "log format 1 replayed: the expiry index's entries were read into memory"
        );
        Ok(expiries)
    }

    fn apply_record(
        &self,
        batch: &mut Writes,
        tails: &mut std::collections::HashMap<AccountId, (u64, Vec<u8>)>,
        expiry_moves: &mut std::collections::HashMap<AccountId, Option<i64>>,
        links: &mut Links,
        record: &crate::types::AccountRecord,
    ) -> io::Result<()> {
        let account = record.account.clone();
        let value = codec::encode_value(&account).map_err(io::Error::other)?;
        for card in &record.cards {
            // A card id has one owner, as a PAN has (below): the first one stands. The
            // directory's cache usually knows (the edge looked the card up before it proposed
            // the link); else this reads the state. Only records that link cards or PANs
            // look.
            let owner = links
                .cards
                .iter()
                .rev()
                .find(|(linked, _)| linked == card)
                .map(|(_, owner)| Ok(Some(owner.clone())))
                .unwrap_or_else(|| self.directory.card(&self.store, card))?;
            if let Some(owner) = owner
                && owner != account
            {
                tracing::error!(
                    %account, %card, %owner,
                    "a committed card names a card id another account owns; the first owner stands"
                );
                continue;
            }
            batch.insert(card_key(card), Some(value.clone()));
            links.cards.push((card.clone(), account.clone()));
        }
        for (hash, card) in &record.pans {
            // A PAN has one owner. The edge decides claims before they reach the log; should
            // a second link for a PAN owned by another card ever be committed, the first one
            // stands, decided from committed state alone, so every replica decides the same.
            let owner = links
                .pans
                .iter()
                .rev()
                .find(|(linked, _)| linked.as_ref() == hash.as_slice())
                .map(|(_, owner)| Ok(Some(owner.clone())))
                .unwrap_or_else(|| self.directory.pan(&self.store, hash))?;
            if let Some((owner_account, owner_card)) = owner
                && (owner_account != account || &owner_card != card)
            {
                tracing::error!(
                    %account, %card, %owner_account, %owner_card,
                    "a committed PAN link names a PAN another card owns; the first link stands"
                );
                continue;
            }
            let link = codec::encode_value(&(&account, card)).map_err(io::Error::other)?;
            batch.insert(pan_key(hash), Some(link));
            links
                .pans
                .push((Box::from(hash.as_slice()), (account.clone(), card.clone())));
        }
        let expiry = match (record.expiry, record.format1_next_expiry) {
            (Some(ExpiryMove { from, to }), _) => Some((Some(from), to)),
            (None, Some(to)) => Some((None, to)),
            (None, None) => None,
        };
        if let Some((from, next)) = expiry {
            // Where the record says the entry was. A format-1 record does not say: the entries
            // read for it have it, as this batch left them (module docs).
            let old = from.unwrap_or_else(|| match expiry_moves.get(&account) {
                Some(moved) => *moved,
                None => self
                    .format1_expiries
                    .as_ref()
                    .and_then(|expiries| expiries.get(&account).copied()),
            });
            if let Some(old) = old {
                batch.insert(expiry_key(old, &account), None);
            }
            // Only the format-1 entries need this batch's moves.
            if self.format1_expiries.is_some() {
                expiry_moves.insert(account.clone(), next);
            }
            if let Some(at) = next {
                batch.insert(expiry_key(at, &account), Some(Vec::new()));
            }
        }
        if record.event_count == 0 {
            return Ok(());
        }
        // Events are kept after a snapshot covers them: they are the account's history (the
        // posted-entries feed reads them). Loading starts at the snapshot.
        if let Some(snapshot) = &record.snapshot {
            batch.insert(snapshot_key(&account), Some(snapshot.clone()));
        }
        let (_, chunks) = tails
            .entry(account)
            .or_insert_with(|| (record.seq_first, Vec::new()));
        push_chunk(chunks, &record.events);
        Ok(())
    }

    fn image(&self) -> io::Result<Vec<u8>> {
        let mut pairs = Vec::new();
        self.store
            .scan((Bound::Unbounded, Bound::Unbounded), |key, value| {
                pairs.push((key.to_vec(), value.to_vec()));
                Ok(true)
            })?;
        postcard::to_allocvec(&SnapshotImage { pairs }).map_err(io::Error::other)
    }

    fn meta(&self) -> SnapshotMeta<NodeId, openraft::BasicNode> {
        SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            // Named by the point it captures: the same state gets the same id wherever it is
            // built or installed.
            snapshot_id: self.applied.map_or_else(
                || "empty".to_owned(),
                |l| format!("{}-{}", l.leader_id.term, l.index),
            ),
        }
    }

    /// Restores a backup (a [`StoredSnapshot`], what [`encode_snapshot`] writes) into this
    /// fresh state.
    pub async fn restore(&mut self, backup: &[u8]) -> io::Result<Option<LogId>> {
        let stored: StoredSnapshot = postcard::from_bytes(backup)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.install_snapshot(&stored.meta, Box::new(Cursor::new(stored.data)))
            .await
            .map_err(io::Error::other)?;
        Ok(stored.meta.last_log_id)
    }
}

/// A snapshot as a backup file holds it: meta and image.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// Encodes a snapshot openraft handed out (`Raft::get_snapshot`) as a backup file.
pub fn encode_snapshot(snapshot: Snapshot<TandemRaft>) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(&StoredSnapshot {
        meta: snapshot.meta,
        data: snapshot.snapshot.into_inner(),
    })
    .map_err(io::Error::other)
}

/// A checkpoint (what openraft calls building a snapshot): the writes applied up to one log
/// index, frozen on the state machine's task, go to the store in one batch with that index
/// and are made durable; openraft purges the log only up to the index it is then handed. The
/// store *is* the snapshot, so nothing else is copied; an image is only read when a snapshot is
/// asked for (`get_current_snapshot`: a backup, or a follower that needs one).
pub struct CheckpointBuilder {
    store: Arc<Layered>,
    accounts: Arc<Accounts>,
    frozen: Arc<Frozen>,
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
}

impl RaftSnapshotBuilder<TandemRaft> for CheckpointBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TandemRaft>, StorageError> {
        let store = self.store.clone();
        let accounts = self.accounts.clone();
        let frozen = self.frozen.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            store.checkpoint(&frozen)?;
            // Accounts idle since the last checkpoint, and clean now, leave memory.
            accounts.evict_clean(frozen.index);
            Ok::<(), io::Error>(())
        })
        .await
        .map_err(io::Error::other)
        .and_then(|written| written)
        .map_err(|e| {
            // openraft stops the log on this error; say why where operators look.
            tracing::error!(error = %e, index = ?self.meta.last_log_id, "checkpoint failed");
            StorageIOError::write_snapshot(Some(self.meta.signature()), &e)
        })?;
        metrics::histogram!("tandem_checkpoint_seconds").record(started.elapsed().as_secs_f64());
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

impl RaftStateMachine<TandemRaft> for StateMachine {
    type SnapshotBuilder = CheckpointBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchApplied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let last = entries.last().map(|e| e.log_id);
        self.apply_entries(entries)
            .map_err(|e| StorageIOError::apply(last.unwrap_or_default(), &e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // On the state machine's task, between two applies: the frozen writes are exactly
        // the state at `applied`.
        let marks = match (encoded(&self.applied), encoded(&self.membership)) {
            (Ok(applied), Ok(membership)) => vec![(APPLIED, applied), (MEMBERSHIP, membership)],
            // Encoding a log id and a membership cannot fail; if it did, the checkpoint
            // would only lack its marks and recovery would replay more of the log.
            _ => Vec::new(),
        };
        CheckpointBuilder {
            store: self.store.clone(),
            accounts: self.accounts.clone(),
            frozen: self
                .store
                .freeze(self.applied.map_or(0, |l| l.index), marks),
            meta: self.meta(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: SnapshotImage = postcard::from_bytes(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), &io::Error::other(e))
        })?;
        // The image replaces everything: what is in memory and what the store holds.
        self.store.clear();
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let marks = [
            (APPLIED, encoded(&self.applied)),
            (MEMBERSHIP, encoded(&self.membership)),
        ];
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = image
            .pairs
            .into_iter()
            // An image from an older node may hold expiry pointers (see the module docs).
            .filter(|(key, _)| !key.starts_with(OLD_EXPIRY_POINTERS))
            .collect();
        for (key, value) in marks {
            let value = value.map_err(|e| StorageIOError::write(&e))?;
            pairs.push((key.to_vec(), value));
        }
        self.store
            .replace_stored(pairs)
            .map_err(|e| StorageIOError::write(&e))?;
        self.directory.forget();
        self.format1_expiries = None;
        self.accounts.clear();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TandemRaft>>, StorageError> {
        // At start openraft only wants the last snapshot's meta, and rebuilds it through the
        // builder (a sync, no copy) when the log was purged; an image of the whole state
        // there would cost O(state) at every start.
        if !self.startup_asked {
            self.startup_asked = true;
            return Ok(None);
        }
        if self.applied.is_none() {
            return Ok(None);
        }
        // This runs on the state machine's task, between applies: the image is exactly the
        // state at `applied`.
        let data = self
            .image()
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        Ok(Some(Snapshot {
            meta: self.meta(),
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
