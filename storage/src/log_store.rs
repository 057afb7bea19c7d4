//! The Raft log, kept by `raft-log` (a write-ahead log made for Raft by openraft's author) and
//! adapted to openraft 0.9's `RaftLogStorage`.
//!
//! Durability: `append` hands the entries to raft-log and asks for a synced flush; raft-log's
//! flush worker writes every pending flush in one batch, calls `fdatasync` once, and only then
//! fires the callbacks, which is when openraft counts the entries as persisted. Votes and
//! purges wait for their own synced flush before returning, as openraft requires.
//!
//! Log entry formats (each entry is openraft's `Entry` in postcard, framed by its length):
//! - Format 1: a record says where an account's expiry index entry moved to, not from; the
//!   frame's length has its top bit clear (every entry of older data directories).
//! - Format 2 adds where the entry moved from ([`crate::types::ExpiryMove`]), so the state
//!   machine moves it without holding every account's entry in memory. Its frame's length has
//!   the top bit set, and the format byte comes first.
//! - Format 3 adds the settings an entry changes ([`crate::types::Setting`]: API keys, FX
//!   rates), so every node holds the same ones.
//!
//! A later format adds a decoder beside these; older entries keep replaying after an upgrade.

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{LeaderId, OptionalSend, StorageIOError};
use raft_log::api::raft_log_writer::RaftLogWriter;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::types::{
    Entry, LogId, StorageError, TandemRaft, TandemRaftFormat1, TandemRaftFormat2, Vote,
};

/// The log entry format this build writes (see the module docs).
pub const LOG_FORMAT: u8 = 3;

/// The top bit of an entry frame's length: a format byte follows (format 2 on).
const FORMATTED: u32 = 1 << 31;

/// A log id as raft-log stores it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StoredLogId {
    pub term: u64,
    pub node_id: u64,
    pub index: u64,
}

impl From<&LogId> for StoredLogId {
    fn from(id: &LogId) -> Self {
        Self {
            term: id.leader_id.term,
            node_id: id.leader_id.node_id,
            index: id.index,
        }
    }
}

impl From<&StoredLogId> for LogId {
    fn from(id: &StoredLogId) -> Self {
        LogId::new(LeaderId::new(id.term, id.node_id), id.index)
    }
}

/// A vote as raft-log stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVote {
    pub term: u64,
    pub node_id: u64,
    pub committed: bool,
}

impl StoredVote {
    fn vote(&self) -> Vote {
        if self.committed {
            Vote::new_committed(self.term, self.node_id)
        } else {
            Vote::new(self.term, self.node_id)
        }
    }
}

impl PartialOrd for StoredVote {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.vote().partial_cmp(&other.vote())
    }
}

/// One entry as stored: its log format and openraft's `Entry` in postcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    format: u8,
    bytes: Vec<u8>,
}

impl StoredEntry {
    fn of(entry: &Entry) -> io::Result<Self> {
        Ok(Self {
            format: LOG_FORMAT,
            bytes: to_bytes(entry)?,
        })
    }

    /// The entry as log format 1 wrote it: its records' expiry moves lose where from.
    fn of_format_1(entry: &Entry) -> io::Result<Self> {
        Ok(Self {
            format: 1,
            bytes: to_bytes(&crate::types::entry_to_format1(entry))?,
        })
    }

    fn entry(&self) -> io::Result<Entry> {
        match self.format {
            1 => from_bytes::<openraft::Entry<TandemRaftFormat1>>(&self.bytes)
                .map(crate::types::entry_from_format1),
            2 => from_bytes::<openraft::Entry<TandemRaftFormat2>>(&self.bytes)
                .map(crate::types::entry_from_format2),
            LOG_FORMAT => from_bytes(&self.bytes),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "log entry format {other} is newer than this build reads (up to {LOG_FORMAT})"
                ),
            )),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoUserData;

/// Length-prefixed framing so raft-log can read values back from a stream.
fn write_framed<W: io::Write>(mut w: W, bytes: &[u8]) -> io::Result<usize> {
    let length = u32::try_from(bytes.len()).map_err(|_| io::Error::other("record too large"))?;
    w.write_all(&length.to_be_bytes())?;
    w.write_all(bytes)?;
    Ok(4 + bytes.len())
}

fn read_framed<R: io::Read>(mut r: R) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    r.read_exact(&mut length)?;
    let mut bytes = vec![0u8; u32::from_be_bytes(length) as usize];
    r.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn to_bytes<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(io::Error::other)
}

fn from_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

macro_rules! framed_serde_codec {
    ($type:ty) => {
        impl raft_log::codeq::Encode for $type {
            fn encode<W: io::Write>(&self, w: W) -> io::Result<usize> {
                write_framed(w, &to_bytes(self)?)
            }
        }
        impl raft_log::codeq::Decode for $type {
            fn decode<R: io::Read>(r: R) -> io::Result<Self> {
                from_bytes(&read_framed(r)?)
            }
        }
    };
}

framed_serde_codec!(StoredLogId);
framed_serde_codec!(StoredVote);

impl raft_log::codeq::Encode for StoredEntry {
    fn encode<W: io::Write>(&self, mut w: W) -> io::Result<usize> {
        if self.format == 1 {
            return write_framed(w, &self.bytes);
        }
        let length = u32::try_from(self.bytes.len() + 1)
            .ok()
            .filter(|length| length & FORMATTED == 0)
            .ok_or_else(|| io::Error::other("record too large"))?;
        w.write_all(&(length | FORMATTED).to_be_bytes())?;
        w.write_all(&[self.format])?;
        w.write_all(&self.bytes)?;
        Ok(4 + 1 + self.bytes.len())
    }
}

impl raft_log::codeq::Decode for StoredEntry {
    fn decode<R: io::Read>(mut r: R) -> io::Result<Self> {
        let mut length = [0u8; 4];
        r.read_exact(&mut length)?;
        let length = u32::from_be_bytes(length);
        if length & FORMATTED == 0 {
            let mut bytes = vec![0u8; length as usize];
            r.read_exact(&mut bytes)?;
            return Ok(Self { format: 1, bytes });
        }
        let mut format = [0u8; 1];
        r.read_exact(&mut format)?;
        let body = ((length & !FORMATTED) as usize)
            .checked_sub(1)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "an entry frame without its format",
                )
            })?;
        let mut bytes = vec![0u8; body];
        r.read_exact(&mut bytes)?;
        Ok(Self {
            format: format[0],
            bytes,
        })
    }
}

impl raft_log::codeq::Encode for NoUserData {
    fn encode<W: io::Write>(&self, _w: W) -> io::Result<usize> {
        Ok(0)
    }
}

impl raft_log::codeq::Decode for NoUserData {
    fn decode<R: io::Read>(_r: R) -> io::Result<Self> {
        Ok(NoUserData)
    }
}

/// Who to tell when a flush is durable.
pub enum Flushed {
    /// openraft's own completion for an `append` of entries up to `index`, told to the
    /// store's observer first when it has one.
    Raft {
        callback: LogFlushed<TandemRaft>,
        index: u64,
        observer: Option<SyncObserver>,
    },
    /// A waiting caller (vote, truncate, purge).
    Wait(tokio::sync::oneshot::Sender<io::Result<()>>),
}

/// Told the index of the last log entry each time an fdatasync of appended entries returns,
/// before openraft hears of it (so before any answer that depends on those entries). The
/// power-loss test uses it to know which entries a power cut must keep.
pub type SyncObserver = Arc<dyn Fn(u64) + Send + Sync>;

impl raft_log::Callback for Flushed {
    fn send(self, result: io::Result<()>) {
        match self {
            Flushed::Raft {
                callback,
                index,
                observer,
            } => {
                if let Some(observer) = observer.filter(|_| result.is_ok()) {
                    observer(index);
                }
                callback.log_io_completed(result)
            }
            Flushed::Wait(sender) => {
                let _ = sender.send(result);
            }
        }
    }
}

/// raft-log's type parameters for Tandem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftLogTypes;

impl raft_log::Types for RaftLogTypes {
    type LogId = StoredLogId;
    type LogPayload = StoredEntry;
    type Vote = StoredVote;
    type Callback = Flushed;
    type UserData = NoUserData;

    fn log_index(log_id: &StoredLogId) -> u64 {
        log_id.index
    }

    fn payload_size(payload: &StoredEntry) -> u64 {
        payload.bytes.len() as u64
    }
}

type Inner = raft_log::RaftLog<RaftLogTypes>;

/// Log entries raft-log keeps in memory, at most.
pub const LOG_CACHE_ENTRIES_MAX: usize = 1_024;
/// Bytes of log entries raft-log keeps in memory, at most.
pub const LOG_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes of one of the log's chunk files, at most (see `LogStore::open`).
pub const LOG_CHUNK_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The Raft log store. Clones share one raft-log instance.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    faults: crate::faults::WriteFaults,
    observer: Option<SyncObserver>,
}

fn io_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> io::Error {
    io::Error::other(error)
}

impl LogStore {
    /// Opens (creating if needed) the log in `dir`. raft-log takes an exclusive lock on it.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut config = raft_log::Config::new(dir.to_string_lossy());
        // openraft 0.9 serialises appends, so waiting to batch more only adds latency: the
        // group commit happens a level up, where many accounts share one entry.
        config.wal.flush_batch_wait = Some(std::time::Duration::ZERO);
        // A record torn by a power loss was never acknowledged (its fdatasync did not return):
        // drop it on open instead of refusing to start.
        config.wal.truncate_incomplete_record = Some(true);
        // raft-log caches entries in memory (by default up to 100,000 entries or 1 GiB); ours
        // are whole group commits, and openraft reads each back once, right after appending it
        // to apply it, so a small cache serves that and keeps memory flat.
        config.log_cache_max_items = Some(LOG_CACHE_ENTRIES_MAX);
        config.log_cache_capacity = Some(LOG_CACHE_BYTES_MAX);
        // A purge removes only whole chunks, and an open reads every chunk still there from
        // its start: with raft-log's default of 1 GiB a restart read up to a gigabyte of
        // long-purged entries (416 ms at 250,000 accounts). Checkpoints purge every second,
        // so small chunks leave an open little more than the tail to read.
        config.wal.chunk_max_size = Some(LOG_CHUNK_BYTES_MAX);
        let inner = raft_log::RaftLog::open(Arc::new(config))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            faults: Default::default(),
            observer: None,
        })
    }

    /// The same store with `faults` deciding whether writes fail as on a full disk.
    pub fn with_faults(mut self, faults: crate::faults::WriteFaults) -> Self {
        self.faults = faults;
        self
    }

    /// The same store, telling `observer` of every synced append.
    pub fn with_sync_observer(mut self, observer: Option<SyncObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The index of the last entry a log directory holds, as a restart would find it.
    pub fn last_index(dir: &Path) -> io::Result<Option<u64>> {
        let store = Self::open(dir)?;
        let last = store.lock().log_state().last().map(|id| id.index);
        Ok(last)
    }

    fn no_space(&self) -> io::Result<()> {
        if self.faults.failing() {
            // ENOSPC: what a full disk answers.
            Err(io::Error::from_raw_os_error(28))
        } else {
            Ok(())
        }
    }

    /// Waits as a slow disk would, when a drill asked for it.
    async fn slow_disk(&self) {
        let delay = self.faults.write_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock means a panic while writing; the log's own recovery is what we
        // trust then, so keep serving from it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn synced(&self, write: impl FnOnce(&mut Inner) -> io::Result<()>) -> io::Result<()> {
        self.slow_disk().await;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        {
            let mut log = self.lock();
            write(&mut log)?;
            log.flush(true, Some(Flushed::Wait(sender)))?;
        }
        receiver.await.map_err(io_error)?
    }

    /// The last log id and the last purged one.
    pub fn state(&self) -> (Option<LogId>, Option<LogId>) {
        let log = self.lock();
        let state = log.log_state();
        (
            state.last().map(LogId::from),
            state.purged().map(LogId::from),
        )
    }
}

impl RaftLogReader<TandemRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e + 1,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        let log = self.lock();
        let mut entries = Vec::new();
        for item in log.read(start, end) {
            let (_, payload) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            entries.push(payload.entry().map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TandemRaft> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TandemRaft>, StorageError> {
        let (last, purged) = self.state();
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let stored = StoredVote {
            term: vote.leader_id.term,
            node_id: vote.leader_id.node_id,
            committed: vote.committed,
        };
        self.synced(|log| log.save_vote(stored).map(|_| ()))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().log_state().vote().map(StoredVote::vote))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TandemRaft>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.no_space()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.slow_disk().await;
        let mut log = self.lock();
        // Entries at or below the purge point are already applied and compacted away (openraft
        // purges the log up to the state machine when that is ahead); raft-log refuses to move
        // its last id backwards, so such entries are skipped rather than written.
        let purged = log.log_state().purged().map(|id| id.index);
        let mut stored = Vec::new();
        let mut last_index = 0;
        for entry in entries {
            last_index = entry.log_id.index;
            if purged.is_some_and(|purged| entry.log_id.index <= purged) {
                continue;
            }
            let stored_entry = if self.faults.writing_log_format_1() {
                StoredEntry::of_format_1(&entry)
            } else {
                StoredEntry::of(&entry)
            }
            .map_err(|e| StorageIOError::write_logs(&e))?;
            stored.push((StoredLogId::from(&entry.log_id), stored_entry));
        }
        log.append(stored)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // The callback runs on raft-log's flush worker after fdatasync.
        let flushed = Flushed::Raft {
            callback,
            index: last_index,
            observer: self.observer.clone(),
        };
        log.flush(true, Some(flushed))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.synced(|log| log.truncate(log_id.index).map(|_| ()))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let stored = StoredLogId::from(&log_id);
        self.synced(|log| log.purge(stored).map(|_| ()))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{
        AccountRecord, AccountRecordFormat1, ExpiryMove, LogBatch, LogBatchFormat1, Setting,
    };
    use openraft::EntryPayload;
    use raft_log::codeq::{Decode, Encode};
    use tandem_core::{AccountId, CardId};

    fn log_id() -> LogId {
        LogId::new(LeaderId::new(3, 1), 7)
    }

    fn stored_bytes(stored: &StoredEntry) -> Vec<u8> {
        let mut bytes = Vec::new();
        let written = stored.encode(&mut bytes).unwrap();
        assert_eq!(written, bytes.len());
        bytes
    }

    #[test]
    fn a_format_1_entry_replays_with_its_expiry_move_and_no_origin() {
        let account = AccountId::new("acct-old").unwrap();
        let old = openraft::Entry::<TandemRaftFormat1> {
            log_id: log_id(),
            payload: EntryPayload::Normal(LogBatchFormat1 {
                records: vec![AccountRecordFormat1 {
                    account: account.clone(),
                    seq_first: 4,
                    event_count: 2,
                    events: vec![2, 9, 9],
                    snapshot: None,
                    cards: vec![CardId::new("card-old").unwrap()],
                    next_expiry: Some(Some(1_700_000_000_000)),
                    pans: vec![(vec![5; 32], CardId::new("card-old").unwrap())],
                }],
            }),
        };
        // Framed as format 1 wrote it: the length, then postcard.
        let mut framed = Vec::new();
        write_framed(&mut framed, &to_bytes(&old).unwrap()).unwrap();
        let stored = StoredEntry::decode(framed.as_slice()).unwrap();
        let entry = stored.entry().unwrap();
        assert_eq!(entry.log_id, log_id());
        let EntryPayload::Normal(batch) = entry.payload else {
            panic!("not a normal entry");
        };
        let [record] = batch.records.as_slice() else {
            panic!("one record");
        };
        assert_eq!(record.account, account);
        assert_eq!((record.seq_first, record.event_count), (4, 2));
        assert_eq!(record.events, vec![2, 9, 9]);
        assert_eq!(record.expiry, None, "format 1 does not say where from");
        assert_eq!(record.format1_next_expiry, Some(Some(1_700_000_000_000)));
        assert_eq!(record.pans.len(), 1);
        // Written again, it keeps format 1's bytes (raft-log may rewrite what it read).
        assert_eq!(stored_bytes(&stored), framed);
    }

    #[test]
    fn a_format_2_entry_replays_with_no_settings() {
        let account = AccountId::new("acct-two").unwrap();
        let mut record = AccountRecord::pan_links(&account, Vec::new());
        record.expiry = Some(ExpiryMove {
            from: Some(7),
            to: Some(9),
        });
        let entry = Entry {
            log_id: log_id(),
            payload: EntryPayload::Normal(LogBatch {
                records: vec![record],
                settings: Vec::new(),
                at_ms: 0,
            }),
        };
        let old = StoredEntry {
            format: 2,
            bytes: to_bytes(&crate::types::entry_to_format2(&entry)).unwrap(),
        };
        let bytes = stored_bytes(&old);
        let read = StoredEntry::decode(bytes.as_slice()).unwrap();
        assert_eq!(read.format, 2, "kept as written");
        assert_eq!(read.entry().unwrap(), entry);
        // The same bytes are not a format-3 entry: the decoder is chosen by the format byte.
        assert!(from_bytes::<Entry>(&old.bytes).is_err());
    }

    #[test]
    fn a_format_3_entry_round_trips_with_its_settings_and_expiry_moves() {
        let account = AccountId::new("acct-new").unwrap();
        let mut record = AccountRecord::pan_links(&account, Vec::new());
        record.expiry = Some(ExpiryMove {
            from: Some(1_000),
            to: None,
        });
        let entry = Entry {
            log_id: log_id(),
            payload: EntryPayload::Normal(LogBatch {
                records: vec![record.clone()],
                settings: vec![
                    Setting {
                        name: "fx-rates".into(),
                        value: Some(vec![1, 2, 3]),
                    },
                    Setting {
                        name: "api-key:key_1".into(),
                        value: None,
                    },
                ],
                at_ms: 1_700_000_000_123,
            }),
        };
        let bytes = stored_bytes(&StoredEntry::of(&entry).unwrap());
        assert_eq!(
            bytes[0] & 0x80,
            0x80,
            "the frame says a format byte follows"
        );
        assert_eq!(bytes[4], LOG_FORMAT);
        let read = StoredEntry::decode(bytes.as_slice())
            .unwrap()
            .entry()
            .unwrap();
        assert_eq!(read, entry);
    }

    #[test]
    fn an_entry_of_a_newer_format_is_refused_clearly() {
        let bytes = [0x80, 0, 0, 2, LOG_FORMAT + 1, 0];
        let stored = StoredEntry::decode(bytes.as_slice()).unwrap();
        let error = stored.entry().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().contains("newer than this build"),
            "{error}"
        );
        let empty = [0x80, 0, 0, 0];
        assert!(
            StoredEntry::decode(empty.as_slice()).is_err(),
            "a frame without its format"
        );
    }
}
