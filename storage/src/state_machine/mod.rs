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
//! | `m:time` | the time floor of the entries checkpointed (`LogBatch::at_ms`) |
//! | `a:<account>\0s` | the account's latest snapshot (`codec::encode_account`) |
//! | `a:<account>\0e<seq_first, 8 bytes big-endian>` | events after it: the records of one apply, each `codec::encode_events` behind a 4-byte length |
//! | `c:<card>` | the card's account |
//! | `p:<keyed PAN hash>` | the PAN's account and card |
//! | `s:<name>` | a setting's value (`settings.rs`), as its owner encoded it |
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
use serde::Serialize;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use tandem_core::{Account, AccountId, CardId};

use crate::accounts::Accounts;
use crate::checkpoint::{CheckpointObserver, Frozen, Layered, Writes};
use crate::codec;
use crate::settings::Settings;
use crate::types::{BatchApplied, Entry, ExpiryMove, LogId, NodeId, StorageError, TandemRaft};

mod apply;
mod format1;
mod raft;
mod reader;

use self::format1::moves_a_format1_expiry;
pub use self::raft::CheckpointBuilder;
pub use self::reader::{LoadError, StateReader};
use crate::directory::{Directory, NewLinks};
use crate::keys::*;

fn encoded<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    codec::encode_value(value).map_err(io::Error::other)
}

/// The Raft state machine.
pub struct StateMachine {
    store: Arc<Layered>,
    directory: Arc<Directory>,
    /// Committed accounts in memory (`accounts.rs`), kept current as entries are applied.
    accounts: Arc<Accounts>,
    /// The settings, all in memory (`settings.rs`), kept current as entries are applied.
    settings: Arc<Settings>,
    /// The latest `LogBatch::at_ms` applied: no decision is made at an earlier time.
    time_floor: Arc<std::sync::atomic::AtomicI64>,
    applied: Option<LogId>,
    membership: Membership,
    /// Every account's expiry index entry, read from the state when the first record of log
    /// format 1 is applied (see the module docs); `None` until then.
    format1_expiries: Option<FxHashMap<AccountId, i64>>,
    /// openraft asks for the current snapshot once at start, only for its meta; see
    /// `get_current_snapshot`.
    startup_asked: bool,
    /// Snapshots being sent now (the checkpoint timer waits for them).
    sends: crate::snapshot::SnapshotSends,
    /// Where snapshots being received are spooled: the data directory.
    spool_dir: PathBuf,
    /// A drill's faults (an apply delay), if any.
    faults: crate::faults::WriteFaults,
}

/// Checkpoint store settings Tandem sets explicitly (the server's `--checkpoint-cache-bytes`
/// and `--directory-cache-entries`).
#[derive(Debug, Clone, Copy)]
pub struct CheckpointSettings {
    /// The store's block cache, in bytes.
    pub cache_bytes: u64,
    /// Entries each of the card and PAN directories' caches holds, at most (`directory.rs`).
    pub directory_cache_entries: usize,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
            directory_cache_entries: crate::directory::CACHE_ENTRIES_DEFAULT,
        }
    }
}

impl StateMachine {
    pub fn open(path: &Path, settings: CheckpointSettings) -> io::Result<Self> {
        Self::open_observed(path, settings, None)
    }

    /// Opens the state with `observer` told of every durable checkpoint.
    pub fn open_observed(
        path: &Path,
        settings: CheckpointSettings,
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
        let spool_dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        crate::snapshot::SnapshotData::remove_spools_in(&spool_dir)?;
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
            settings: Arc::new(Settings::default()),
            time_floor: Arc::default(),
            applied: None,
            membership: Membership::default(),
            format1_expiries: None,
            faults: crate::faults::WriteFaults::default(),
            startup_asked: false,
            sends: Default::default(),
            spool_dir,
        };
        machine.applied = match machine.store.stored(APPLIED)? {
            Some(bytes) => codec::decode_value(&bytes).map_err(io::Error::other)?,
            None => None,
        };
        machine.membership = match machine.store.stored(MEMBERSHIP)? {
            Some(bytes) => codec::decode_value(&bytes).map_err(io::Error::other)?,
            None => Membership::default(),
        };
        machine.load_settings()?;
        machine.load_time_floor()?;
        Ok(machine)
    }

    /// The drill's faults this state machine obeys (an apply delay).
    pub(crate) fn set_faults(&mut self, faults: crate::faults::WriteFaults) {
        self.faults = faults;
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            store: self.store.clone(),
            directory: self.directory.clone(),
            accounts: self.accounts.clone(),
            settings: self.settings.clone(),
            time_floor: self.time_floor.clone(),
        }
    }

    /// Reads the time floor a checkpoint kept (at open, and after a snapshot is installed);
    /// replayed entries raise it from there.
    fn load_time_floor(&self) -> io::Result<()> {
        let floor: i64 = match self.store.get(TIME_FLOOR)? {
            Some(bytes) => codec::decode_value(&bytes).map_err(io::Error::other)?,
            None => 0,
        };
        self.time_floor
            .fetch_max(floor, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Reads every setting from the state into memory (at open, and after a snapshot is
    /// installed).
    fn load_settings(&self) -> io::Result<()> {
        let mut values = std::collections::BTreeMap::new();
        let mut end = SETTINGS.to_vec();
        *end.last_mut().expect("a prefix") += 1;
        self.store.scan(
            (Bound::Included(SETTINGS.to_vec()), Bound::Excluded(end)),
            |key, value| {
                let name = std::str::from_utf8(&key[SETTINGS.len()..]).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "a setting's name is not UTF-8")
                })?;
                values.insert(name.to_owned(), value.to_vec());
                Ok(true)
            },
        )?;
        self.settings.replace(values);
        Ok(())
    }

    /// Makes what the store holds durable (see `checkpoint.rs`).
    pub fn sync(&self) -> io::Result<()> {
        self.store.sync()
    }

    /// The snapshots being sent now, counted (the checkpoint timer waits while any is).
    pub fn snapshot_sends(&self) -> crate::snapshot::SnapshotSends {
        self.sends.clone()
    }

    /// Applied writes held in memory, not yet in a durable checkpoint.
    pub fn unsaved(&self) -> usize {
        self.store.unsaved()
    }
}

impl StateMachine {
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
}
