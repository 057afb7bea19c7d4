//! A snapshot's data as it travels: the checkpoint at one log index as a stream of key/value
//! records, never whole in memory.
//!
//! A sender reads it from the store pinned right after a checkpoint at that index
//! ([`crate::checkpoint::Pinned`]), the layer frozen there on the state machine's task and
//! written when the stream is first read, off that task; while any such snapshot is held, the checkpoint timer
//! waits ([`SnapshotSends`]), so the log is not purged past an index a follower is being
//! brought to. A receiver spools the stream into a file under the data directory, syncs it
//! and checks that it is whole before openraft installs it; the install writes a fresh
//! checkpoint directory from the file in bounded batches (`Layered::install`). Backups hold
//! the same stream.
//!
//! The stream: the 8 bytes [`MAGIC`], then one record per key in key order — key length and
//! value length (each a big-endian `u32`), key, value — then an end record: `u32::MAX` and
//! the number of records as a big-endian `u64`. Chunks cut the stream anywhere.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::checkpoint::{Frozen, Layered, Pinned};

/// What a snapshot stream starts with.
pub const MAGIC: [u8; 8] = *b"TDMSNAP1";

/// The length that marks the end record.
const END: u32 = u32::MAX;

/// A key longer than this is not ours (fjall's keys are shorter).
const KEY_BYTES_MAX: u32 = 64 * 1024;

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// The snapshots being read to send (or back up) now: the checkpoint timer waits while any
/// is held.
#[derive(Clone, Default)]
pub struct SnapshotSends(Arc<AtomicUsize>);

impl SnapshotSends {
    /// How many are held now.
    pub fn in_flight(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn hold(&self) -> Hold {
        self.0.fetch_add(1, Ordering::AcqRel);
        Hold(self.0.clone())
    }
}

/// One snapshot held ([`SnapshotSends`]) until dropped.
pub(crate) struct Hold(Arc<AtomicUsize>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A snapshot's data, openraft's `SnapshotData`.
pub struct SnapshotData {
    source: Source,
}

enum Source {
    /// No data: what a checkpoint hands openraft, which keeps only its meta (the store is
    /// the snapshot).
    Empty,
    /// The store at the snapshot's index, being sent: frozen there on the state machine's
    /// task, checkpointed and pinned when first read (on the reader's thread, so applies do
    /// not wait for the checkpoint).
    Pinned {
        store: Arc<Layered>,
        frozen: Arc<Frozen>,
        view: std::sync::OnceLock<Pinned>,
        _hold: Hold,
    },
    /// Bytes arriving into a spool file.
    Spooling {
        file: BufWriter<File>,
        path: PathBuf,
    },
    /// A whole stream in a file from `offset` on; `owned` files are removed with this.
    File {
        path: PathBuf,
        offset: u64,
        owned: bool,
    },
}

impl Drop for SnapshotData {
    fn drop(&mut self) {
        match &self.source {
            Source::Spooling { path, .. }
            | Source::File {
                path, owned: true, ..
            } => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
    }
}

/// Where spool files are named from.
const SPOOL_PREFIX: &str = "snapshot.incoming-";

static SPOOLS: AtomicU64 = AtomicU64::new(0);

impl SnapshotData {
    pub(crate) fn empty() -> Self {
        Self {
            source: Source::Empty,
        }
    }

    /// The state at `frozen`'s index, read from `store` once it is checkpointed there.
    pub(crate) fn frozen(store: Arc<Layered>, frozen: Arc<Frozen>, hold: Hold) -> Self {
        Self {
            source: Source::Pinned {
                store,
                frozen,
                view: std::sync::OnceLock::new(),
                _hold: hold,
            },
        }
    }

    /// A snapshot stream in `path` from `offset` on (a backup's file); the file is left
    /// where it is.
    pub fn file(path: &Path, offset: u64) -> Self {
        Self {
            source: Source::File {
                path: path.to_owned(),
                offset,
                owned: false,
            },
        }
    }

    /// A new spool file in `dir` for a snapshot about to arrive.
    pub(crate) fn spool_in(dir: &Path) -> io::Result<Self> {
        let path = dir.join(format!(
            "{SPOOL_PREFIX}{}-{}",
            std::process::id(),
            SPOOLS.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&path)?;
        Ok(Self {
            source: Source::Spooling {
                file: BufWriter::with_capacity(1024 * 1024, file),
                path,
            },
        })
    }

    /// Removes spool files a stopped process left in `dir`.
    pub(crate) fn remove_spools_in(dir: &Path) -> io::Result<()> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(SPOOL_PREFIX))
            {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Appends bytes that arrived to the spool. Blocking.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.source {
            Source::Spooling { file, .. } => file.write_all(bytes),
            _ => Err(io::Error::other("this snapshot is not being received")),
        }
    }

    /// Ends the spool: makes it durable and checks that it holds a whole stream (a sender
    /// that failed half-way ends its stream early; that is refused here). Answers the
    /// number of records. Blocking.
    pub fn finish(&mut self) -> io::Result<u64> {
        let path = match &mut self.source {
            Source::Spooling { file, path } => {
                file.flush()?;
                file.get_ref().sync_all()?;
                path.clone()
            }
            _ => return Err(io::Error::other("this snapshot is not being received")),
        };
        self.source = Source::File {
            path,
            offset: 0,
            owned: true,
        };
        self.records()?
            .try_fold(0u64, |n, pair| pair.map(|_| n + 1))
    }

    /// The records, in key order. Blocking: they are read from the store or a file as they
    /// are iterated.
    pub fn records(&self) -> io::Result<Box<dyn Iterator<Item = io::Result<Pair>> + '_>> {
        match &self.source {
            Source::Empty => Err(io::Error::other(
                "this snapshot carries no data (a checkpoint's handle)",
            )),
            Source::Spooling { .. } => Err(io::Error::other("this snapshot is still arriving")),
            Source::Pinned {
                store,
                frozen,
                view,
                ..
            } => {
                if view.get().is_none() {
                    let _ = view.set(store.pinned_at(frozen)?);
                }
                let view = view.get().expect("set above");
                Ok(Box::new(
                    view.range((Bound::Unbounded, Bound::Unbounded))
                        .map(|pair| pair.map(|(k, v)| (k.to_vec(), v.to_vec()))),
                ))
            }
            Source::File { path, offset, .. } => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(*offset))?;
                Ok(Box::new(FileRecords::open(BufReader::with_capacity(
                    1024 * 1024,
                    file,
                ))?))
            }
        }
    }

    /// Writes the whole stream to `out`; answers the number of records. Blocking.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<u64> {
        write_stream(out, self.records()?)
    }

    /// The stream in chunks of `chunk_bytes` (the last one shorter), read on a blocking
    /// thread at most two chunks ahead of the receiver: a snapshot of any size costs a few
    /// chunks of memory. A read that fails ends the chunks with its error.
    pub fn into_chunks(
        self,
        chunk_bytes: usize,
    ) -> tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            let mut out = Chunks {
                sender: sender.clone(),
                chunk: Vec::with_capacity(chunk_bytes),
                chunk_bytes,
            };
            let written = self.write_to(&mut out).and_then(|_| out.flush());
            if let Err(error) = written {
                let _ = sender.blocking_send(Err(error));
            }
        });
        receiver
    }
}

/// Writes `pairs` as a snapshot stream to `out`; answers the number of records.
pub fn write_stream<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    out: &mut impl Write,
    pairs: impl Iterator<Item = io::Result<(K, V)>>,
) -> io::Result<u64> {
    out.write_all(&MAGIC)?;
    let mut count = 0u64;
    for pair in pairs {
        let (key, value) = pair?;
        let (key, value) = (key.as_ref(), value.as_ref());
        let key_len = u32::try_from(key.len())
            .ok()
            .filter(|&n| n <= KEY_BYTES_MAX)
            .ok_or_else(|| io::Error::other("a key too long for a snapshot"))?;
        let value_len = u32::try_from(value.len())
            .ok()
            .filter(|&n| n != END)
            .ok_or_else(|| io::Error::other("a value too long for a snapshot"))?;
        out.write_all(&key_len.to_be_bytes())?;
        out.write_all(&value_len.to_be_bytes())?;
        out.write_all(key)?;
        out.write_all(value)?;
        count += 1;
    }
    out.write_all(&END.to_be_bytes())?;
    out.write_all(&count.to_be_bytes())?;
    Ok(count)
}

/// Cuts what is written into chunks and hands each to the receiver as it fills.
struct Chunks {
    sender: tokio::sync::mpsc::Sender<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    chunk_bytes: usize,
}

impl Write for Chunks {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.chunk_bytes - self.chunk.len();
        let taken = bytes.len().min(room);
        self.chunk.extend_from_slice(&bytes[..taken]);
        if self.chunk.len() == self.chunk_bytes {
            self.flush()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(self.chunk_bytes));
        self.sender.blocking_send(Ok(full)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the snapshot's receiver went away",
            )
        })
    }
}

/// Reads a snapshot stream's records, and refuses one that is not whole.
struct FileRecords<R> {
    reader: R,
    count: u64,
    ended: bool,
}

fn early(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the snapshot ends early, {what}: it is not whole"),
    )
}

impl<R: Read> FileRecords<R> {
    fn open(mut reader: R) -> io::Result<Self> {
        let mut magic = [0u8; 8];
        reader
            .read_exact(&mut magic)
            .map_err(|_| early("before its first bytes"))?;
        if magic != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a Tandem snapshot stream",
            ));
        }
        Ok(Self {
            reader,
            count: 0,
            ended: false,
        })
    }

    fn next_record(&mut self) -> io::Result<Option<Pair>> {
        let mut lengths = [0u8; 4];
        self.reader
            .read_exact(&mut lengths)
            .map_err(|_| early("before its end record"))?;
        let key_len = u32::from_be_bytes(lengths);
        if key_len == END {
            let mut count = [0u8; 8];
            self.reader
                .read_exact(&mut count)
                .map_err(|_| early("in its end record"))?;
            let count = u64::from_be_bytes(count);
            if count != self.count {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the snapshot says it holds {count} records, but {} came",
                        self.count
                    ),
                ));
            }
            let mut after = [0u8; 1];
            if self.reader.read(&mut after)? != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bytes after the snapshot's end record",
                ));
            }
            self.ended = true;
            return Ok(None);
        }
        if key_len > KEY_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a snapshot record's key of {key_len} bytes"),
            ));
        }
        self.reader
            .read_exact(&mut lengths)
            .map_err(|_| early("in a record"))?;
        let value_len = u32::from_be_bytes(lengths);
        let key = self.exactly(key_len)?;
        let value = self.exactly(value_len)?;
        self.count += 1;
        Ok(Some((key, value)))
    }

    /// `len` bytes, allocated as they arrive (a corrupt length cannot reserve gigabytes).
    fn exactly(&mut self, len: u32) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        (&mut self.reader)
            .take(u64::from(len))
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 != u64::from(len) {
            return Err(early("in a record"));
        }
        Ok(bytes)
    }
}

impl<R: Read> Iterator for FileRecords<R> {
    type Item = io::Result<Pair>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        match self.next_record() {
            Ok(Some(pair)) => Some(Ok(pair)),
            Ok(None) => None,
            Err(error) => {
                self.ended = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream_of(pairs: &[Pair]) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_stream(&mut bytes, pairs.iter().map(|(k, v)| Ok((k, v)))).unwrap();
        bytes
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<Pair>> {
        FileRecords::open(bytes)?.collect()
    }

    proptest! {
        /// A stream reads back as the records written; any stream cut short, or with a byte
        /// more, is refused, never read as a smaller state.
        #[test]
        fn a_stream_reads_back_whole_or_not_at_all(
            pairs in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..20),
                proptest::collection::vec(any::<u8>(), 0..300),
                0..20,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let pairs: Vec<Pair> = pairs.into_iter().collect();
            let bytes = stream_of(&pairs);
            prop_assert_eq!(read_all(&bytes).unwrap(), pairs);
            let cut = cut.index(bytes.len());
            prop_assert!(read_all(&bytes[..cut]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(read_all(&longer).is_err());
        }

        /// Bytes from outside (a peer, a backup file), whatever they are, are read or refused
        /// with an error: never a panic, never a length taken on trust.
        #[test]
        fn any_bytes_are_read_or_refused(
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            magic in any::<bool>(),
        ) {
            let mut bytes = if magic { MAGIC.to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&tail);
            if let Ok(pairs) = read_all(&bytes) {
                prop_assert_eq!(stream_of(&pairs), bytes);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spool_takes_chunks_and_refuses_a_stream_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let pairs: Vec<Pair> = (0..500u32)
            .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 700]))
            .collect();
        let bytes = stream_of(&pairs);
        let mut whole = SnapshotData::spool_in(dir.path()).unwrap();
        for chunk in bytes.chunks(4096) {
            whole.append(chunk).unwrap();
        }
        assert_eq!(whole.finish().unwrap(), 500);
        let read: Vec<Pair> = whole.records().unwrap().collect::<io::Result<_>>().unwrap();
        assert_eq!(read, pairs);
        // Sent on in chunks of a bounded size, it is the same stream.
        let mut chunks = SnapshotData::file(
            &match &whole.source {
                Source::File { path, .. } => path.clone(),
                _ => unreachable!("finished"),
            },
            0,
        )
        .into_chunks(1000);
        let mut resent = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= 1000);
            resent.extend_from_slice(&chunk);
        }
        assert_eq!(resent, bytes);
        let mut cut = SnapshotData::spool_in(dir.path()).unwrap();
        cut.append(&bytes[..bytes.len() - 5]).unwrap();
        let refused = cut.finish().unwrap_err();
        assert!(refused.to_string().contains("not whole"), "{refused}");
        drop((whole, cut));
        // Spool files go with their snapshots.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
