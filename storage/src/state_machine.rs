//! The state applied from the log, in sled: account events and snapshots, the card directory,
//! the authorization routing index and the expiry index.
//!
//! One sled tree with prefixed keys, so that everything one `apply` call writes — every
//! record of every entry, and `last_applied` — goes in a single atomic sled batch: after a
//! crash either all of it is there or none, and openraft re-applies from `last_applied`, so
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
//! | `x:<expires_at, 8 bytes order-preserving><account>` | an account whose earliest hold is due then |
//! | `w:<account>` | that time, so the entry can be moved when it changes |
//!
//! Durability: sled's `flush()` is only `sync_file_range` on Linux, so [`StateMachine::sync`]
//! flushes and then `fsync`s sled's data file itself. That happens when openraft builds a
//! snapshot, which is the only point after which it purges the log: the log is never purged
//! past what sled holds durably.

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, OptionalSend, StorageIOError, StoredMembership};
use serde::{Deserialize, Serialize};
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use tandem_core::{Account, AccountId, CardId};

use crate::codec;
use crate::types::{BatchApplied, Entry, LogId, NodeId, StorageError, TandemRaft};

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

fn expiry_pointer_key(account: &AccountId) -> Vec<u8> {
    [b"w:".as_slice(), account.as_str().as_bytes()].concat()
}

/// Order-preserving bytes of a signed time.
fn time_bytes(millis: i64) -> [u8; 8] {
    ((millis as u64) ^ (1 << 63)).to_be_bytes()
}

fn expiry_key(expires_at: i64, account: &AccountId) -> Vec<u8> {
    [
        b"x:".as_slice(),
        &time_bytes(expires_at),
        account.as_str().as_bytes(),
    ]
    .concat()
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

fn sled_error(error: sled::Error) -> io::Error {
    io::Error::other(error)
}

/// A snapshot as openraft ships it: every key and value of the state.
#[derive(Serialize, Deserialize)]
struct SnapshotImage {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Read access to the applied state, shared with the actors (sled handles are cheap clones).
#[derive(Clone)]
pub struct StateReader {
    tree: sled::Tree,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
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
}

impl StateReader {
    /// Rebuilds an account from its latest snapshot and the events after it; a fresh
    /// unopened account if nothing is stored.
    pub fn load_account(&self, account: &AccountId) -> Result<Account, LoadError> {
        let mut state = match self.tree.get(snapshot_key(account))? {
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
        // The chunk holding `from` starts at or before it: the last key at or below it.
        let start = match self
            .tree
            .range(prefix.clone()..=events_key(account, from))
            .next_back()
        {
            Some(item) => item?.0.to_vec(),
            None => prefix.clone(),
        };
        for item in self.tree.range(start..) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let seq_bytes: [u8; 8] = key[key.len() - 8..]
                .try_into()
                .expect("events keys end in 8 bytes");
            let mut seq = u64::from_be_bytes(seq_bytes);
            for chunk in chunks(&value) {
                for event in codec::decode_events(chunk)? {
                    if seq >= from && !visit(seq, event) {
                        return Ok(());
                    }
                    seq += 1;
                }
            }
        }
        Ok(())
    }

    /// The account and card a keyed PAN hash belongs to (the PAN directory).
    pub fn pan_card(&self, hash: &[u8]) -> Result<Option<(AccountId, CardId)>, LoadError> {
        Ok(match self.tree.get(pan_key(hash))? {
            Some(bytes) => Some(codec::decode_value(&bytes)?),
            None => None,
        })
    }

    /// The account a card belongs to (the card directory).
    pub fn card_account(&self, card: &CardId) -> Result<Option<AccountId>, LoadError> {
        self.lookup(&card_key(card))
    }

    fn lookup(&self, key: &[u8]) -> Result<Option<AccountId>, LoadError> {
        Ok(match self.tree.get(key)? {
            Some(bytes) => Some(codec::decode_value(&bytes)?),
            None => None,
        })
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
        for item in self.tree.range(
            b"x:".to_vec()..expiry_key(now_ms.saturating_add(1), &AccountId::new("0").expect("id")),
        ) {
            let (key, _) = item?;
            if due.len() >= limit {
                break;
            }
            let time = u64::from_be_bytes(
                key[2..10]
                    .try_into()
                    .expect("expiry keys hold 8 time bytes"),
            ) ^ (1 << 63);
            let account = std::str::from_utf8(&key[10..])
                .ok()
                .and_then(|s| AccountId::new(s).ok());
            if let Some(account) = account {
                due.push((time as i64, account));
            }
        }
        Ok(due)
    }

    /// The account's earliest hold expiry as the index has it.
    pub fn indexed_expiry(&self, account: &AccountId) -> Result<Option<i64>, LoadError> {
        Ok(match self.tree.get(expiry_pointer_key(account))? {
            Some(bytes) => Some(codec::decode_value(&bytes)?),
            None => None,
        })
    }

    /// The last applied log id.
    pub fn applied(&self) -> Result<Option<LogId>, LoadError> {
        Ok(match self.tree.get(APPLIED)? {
            Some(bytes) => codec::decode_value(&bytes)?,
            None => None,
        })
    }
}

/// The Raft state machine.
pub struct StateMachine {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
    applied: Option<LogId>,
    membership: Membership,
    snapshot_index: u64,
}

/// sled settings Tandem sets explicitly.
#[derive(Debug, Clone, Copy)]
pub struct SledSettings {
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
}

impl Default for SledSettings {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

impl StateMachine {
    pub fn open(path: &Path, settings: SledSettings) -> io::Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(settings.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(sled_error)?;
        let tree: sled::Tree = (*db).clone();
        let mut machine = Self {
            db,
            tree,
            path: path.to_path_buf(),
            applied: None,
            membership: Membership::default(),
            snapshot_index: 0,
        };
        machine.applied = match machine.tree.get(APPLIED).map_err(sled_error)? {
            Some(bytes) => codec::decode_value(&bytes).map_err(io::Error::other)?,
            None => None,
        };
        machine.membership = match machine.tree.get(MEMBERSHIP).map_err(sled_error)? {
            Some(bytes) => codec::decode_value(&bytes).map_err(io::Error::other)?,
            None => Membership::default(),
        };
        Ok(machine)
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            tree: self.tree.clone(),
        }
    }

    /// Makes everything applied so far durable: sled's flush, then an fsync of its data file
    /// (sled's own flush is `sync_file_range`, which does not survive a power loss).
    pub fn sync(&self) -> io::Result<()> {
        self.db.flush().map_err(sled_error)?;
        std::fs::File::open(self.path.join("db"))?.sync_all()?;
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> io::Result<Vec<BatchApplied>> {
        let mut batch = sled::Batch::default();
        let mut answers = Vec::with_capacity(entries.len());
        // Each account's records in this call, gathered into one value (first seq, chunks):
        // a busy account costs one sled insert per apply, not one per decision.
        let mut tails: std::collections::HashMap<AccountId, (u64, Vec<u8>)> =
            std::collections::HashMap::new();
        let mut expiry_moves: std::collections::HashMap<AccountId, Option<i64>> =
            std::collections::HashMap::new();
        let mut membership_changed = false;
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    membership_changed = true;
                }
                EntryPayload::Normal(log_batch) => {
                    for record in log_batch.records {
                        self.apply_record(&mut batch, &mut tails, &mut expiry_moves, record)?;
                    }
                }
            }
            self.applied = Some(entry.log_id);
            answers.push(BatchApplied {
                index: entry.log_id.index,
            });
        }
        for (account, (seq_first, chunks)) in tails {
            batch.insert(events_key(&account, seq_first), chunks);
        }
        batch.insert(
            APPLIED,
            codec::encode_value(&self.applied).map_err(io::Error::other)?,
        );
        if membership_changed {
            batch.insert(
                MEMBERSHIP,
                codec::encode_value(&self.membership).map_err(io::Error::other)?,
            );
        }
        self.tree.apply_batch(batch).map_err(sled_error)?;
        Ok(answers)
    }

    fn apply_record(
        &self,
        batch: &mut sled::Batch,
        tails: &mut std::collections::HashMap<AccountId, (u64, Vec<u8>)>,
        expiry_moves: &mut std::collections::HashMap<AccountId, Option<i64>>,
        record: crate::types::AccountRecord,
    ) -> io::Result<()> {
        let account = record.account;
        let value = codec::encode_value(&account).map_err(io::Error::other)?;
        for card in &record.cards {
            batch.insert(card_key(card), value.clone());
        }
        for (hash, card) in &record.pans {
            let link = codec::encode_value(&(&account, card)).map_err(io::Error::other)?;
            batch.insert(pan_key(hash), link);
        }
        if let Some(next) = record.next_expiry {
            let pointer = expiry_pointer_key(&account);
            // The entry as this batch left it, else as stored.
            let old = match expiry_moves.get(&account) {
                Some(moved) => *moved,
                None => match self.tree.get(&pointer).map_err(sled_error)? {
                    Some(bytes) => {
                        Some(codec::decode_value::<i64>(&bytes).map_err(io::Error::other)?)
                    }
                    None => None,
                },
            };
            if let Some(old) = old {
                batch.remove(expiry_key(old, &account));
            }
            expiry_moves.insert(account.clone(), next);
            match next {
                Some(at) => {
                    batch.insert(expiry_key(at, &account), Vec::new());
                    batch.insert(pointer, codec::encode_value(&at).map_err(io::Error::other)?);
                }
                None => batch.remove(pointer),
            }
        }
        if record.event_count == 0 {
            return Ok(());
        }
        // Events are kept after a snapshot covers them: they are the account's history (the
        // posted-entries feed reads them). Loading starts at the snapshot.
        if let Some(snapshot) = record.snapshot {
            batch.insert(snapshot_key(&account), snapshot);
        }
        let (_, chunks) = tails
            .entry(account)
            .or_insert_with(|| (record.seq_first, Vec::new()));
        push_chunk(chunks, &record.events);
        Ok(())
    }

    fn image(&self) -> io::Result<Vec<u8>> {
        let mut pairs = Vec::new();
        for item in self.tree.iter() {
            let (key, value) = item.map_err(sled_error)?;
            pairs.push((key.to_vec(), value.to_vec()));
        }
        postcard::to_allocvec(&SnapshotImage { pairs }).map_err(io::Error::other)
    }

    fn snapshot_file(&self) -> PathBuf {
        self.path.join("raft-snapshot")
    }
}

/// The snapshot file: meta and image, written then fsynced.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&temporary)?;
        io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Builds a snapshot from an image taken on the state machine's task: no apply runs while
/// the image is read, so it is exactly the state at `applied`.
pub struct ImageBuilder {
    image: io::Result<Vec<u8>>,
    applied: Option<LogId>,
    membership: Membership,
    file: PathBuf,
    snapshot_index: u64,
}

impl RaftSnapshotBuilder<TandemRaft> for ImageBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TandemRaft>, StorageError> {
        let data = std::mem::replace(&mut self.image, Ok(Vec::new()))
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.applied.map_or(0, |l| l.index),
                self.snapshot_index
            ),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let bytes = postcard::to_allocvec(&stored)
            .map_err(|e| StorageIOError::write_snapshot(None, &io::Error::other(e)))?;
        write_synced(&self.file, &bytes).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl StateMachine {
    /// Restores a snapshot file written by [`ImageBuilder`] (a backup) into this fresh state.
    pub async fn restore(&mut self, snapshot_file: &[u8]) -> io::Result<Option<LogId>> {
        let stored: StoredSnapshot = postcard::from_bytes(snapshot_file)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.install_snapshot(&stored.meta, Box::new(Cursor::new(stored.data)))
            .await
            .map_err(io::Error::other)?;
        Ok(stored.meta.last_log_id)
    }

    /// Where the latest snapshot file is.
    pub fn snapshot_path(&self) -> PathBuf {
        self.snapshot_file()
    }
}

impl RaftStateMachine<TandemRaft> for StateMachine {
    type SnapshotBuilder = ImageBuilder;

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
        // Everything the snapshot covers must be durable in sled before openraft may purge
        // the log up to it; the image is read here, between applies.
        self.snapshot_index += 1;
        ImageBuilder {
            image: self.sync().and_then(|()| self.image()),
            applied: self.applied,
            membership: self.membership.clone(),
            file: self.snapshot_file(),
            snapshot_index: self.snapshot_index,
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
        let mut batch = sled::Batch::default();
        for item in self.tree.iter() {
            let (key, _) = item.map_err(|e| StorageIOError::read_state_machine(&sled_error(e)))?;
            batch.remove(key);
        }
        for (key, value) in image.pairs {
            batch.insert(key, value);
        }
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        batch.insert(
            APPLIED,
            codec::encode_value(&self.applied)
                .map_err(|e| StorageIOError::write(&io::Error::other(e)))?,
        );
        batch.insert(
            MEMBERSHIP,
            codec::encode_value(&self.membership)
                .map_err(|e| StorageIOError::write(&io::Error::other(e)))?,
        );
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write(&sled_error(e)))?;
        self.sync().map_err(|e| StorageIOError::write(&e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let bytes = postcard::to_allocvec(&stored)
            .map_err(|e| StorageIOError::write(&io::Error::other(e)))?;
        write_synced(&self.snapshot_file(), &bytes).map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TandemRaft>>, StorageError> {
        let bytes = match std::fs::read(self.snapshot_file()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageIOError::read_snapshot(None, &e).into()),
        };
        let stored: StoredSnapshot = postcard::from_bytes(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(None, &io::Error::other(e)))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
