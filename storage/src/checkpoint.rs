//! sled as a checkpoint: what is applied lives in memory until a checkpoint puts it in sled.
//!
//! Applying a log entry no longer writes sled. Its writes (the same keys and values the state
//! machine has always kept, see `state_machine.rs`) go into an in-memory layer, `current`.
//! A checkpoint freezes that layer at exactly the last applied log index N, writes it to sled
//! in one batch together with `last_applied = N`, fsyncs sled's files itself, and only then
//! does openraft purge the log at or below N (it purges only up to a snapshot it was handed,
//! and the snapshot is this checkpoint). Recovery opens sled at its checkpoint and openraft
//! replays the log's tail after N into the layer again.
//!
//! Every read looks at the layers newest first — `current`, then the frozen layers still
//! being written, then sled — so it sees everything applied, wherever it is. A frozen layer
//! is dropped only once sled holds it durably. A key a newer layer wrote can only be newer
//! than what an older layer or sled holds, so reading a layer before or after it reaches
//! sled gives the same answer.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Writes in key order: a value, or `None` for a removed key.
pub(crate) type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A layer frozen at a log index, on its way to sled.
pub(crate) struct Frozen {
    /// The log index it covers.
    pub(crate) index: u64,
    writes: Writes,
    /// What the checkpoint stores besides the writes (`last_applied`, membership), as keys
    /// and encoded values.
    marks: Vec<(&'static [u8], Vec<u8>)>,
}

#[derive(Default)]
struct Layers {
    current: Writes,
    /// Frozen layers not yet durable in sled, oldest first.
    frozen: VecDeque<Arc<Frozen>>,
}

/// sled's state as of the last checkpoint, and what was applied after it.
pub(crate) struct Layered {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
    layers: RwLock<Layers>,
    /// One checkpoint writes at a time, in freezing order.
    writing: Mutex<()>,
    observer: Option<CheckpointObserver>,
    appendable: Option<Appendable>,
    /// sled's blob files already fsynced: sled writes a blob file once and never changes it,
    /// so a checkpoint syncs only the ones written since, not every blob the store holds
    /// (an account's event chunks are blobs kept for good, and there are more each second).
    synced_blobs: Mutex<std::collections::HashSet<std::ffi::OsString>>,
}

/// Told the log index of every checkpoint once it is durable, before the log may be purged
/// up to it and before the next checkpoint writes (the power-cut test copies sled there).
pub type CheckpointObserver = Arc<dyn Fn(u64) + Send + Sync>;

/// Says whether the value of the second key may be appended to the first's in a checkpoint
/// (keys in order, both written by the same layer): values that are sequences, such as an
/// account's event chunks, then cost sled one insert per checkpoint instead of one per apply.
pub(crate) type Appendable = fn(&[u8], &[u8]) -> bool;

pub(crate) fn sled_error(error: sled::Error) -> io::Error {
    io::Error::other(error)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Layers {
    /// The newest write of `key` in memory: `Some(None)` if it was removed.
    fn get(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if let Some(value) = self.current.get(key) {
            return Some(value.clone());
        }
        self.frozen
            .iter()
            .rev()
            .find_map(|layer| layer.writes.get(key).cloned())
    }

    /// Every write in `range`, the newest per key.
    fn range(&self, range: (Bound<&[u8]>, Bound<&[u8]>)) -> Writes {
        let mut merged = Writes::new();
        for layer in &self.frozen {
            for (key, value) in layer.writes.range::<[u8], _>(range) {
                merged.insert(key.clone(), value.clone());
            }
        }
        for (key, value) in self.current.range::<[u8], _>(range) {
            merged.insert(key.clone(), value.clone());
        }
        merged
    }
}

fn borrowed(range: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (
        range.0.as_ref().map(Vec::as_slice),
        range.1.as_ref().map(Vec::as_slice),
    )
}

impl Layered {
    pub(crate) fn new(db: sled::Db, path: &Path) -> Self {
        let tree: sled::Tree = (*db).clone();
        Self {
            db,
            tree,
            path: path.to_path_buf(),
            layers: RwLock::default(),
            writing: Mutex::new(()),
            observer: None,
            appendable: None,
            synced_blobs: Mutex::default(),
        }
    }

    pub(crate) fn appending(mut self, appendable: Appendable) -> Self {
        self.appendable = Some(appendable);
        self
    }

    pub(crate) fn observed_by(mut self, observer: Option<CheckpointObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// sled's tree, for what only the checkpoint holds (`last_applied`) and for loading
    /// everything at open, when nothing is in memory yet.
    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    pub(crate) fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        if let Some(value) = read(&self.layers).get(key) {
            return Ok(value);
        }
        Ok(self.tree.get(key).map_err(sled_error)?.map(|v| v.to_vec()))
    }

    /// Visits every key and value in `range` in key order, newest layer first per key,
    /// until `visit` answers false.
    pub(crate) fn scan(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        visit: impl FnMut(&[u8], &[u8]) -> io::Result<bool>,
    ) -> io::Result<()> {
        let memory = read(&self.layers).range(borrowed(&range));
        self.scan_with(&memory, range, visit)
    }

    /// Like [`Layered::scan`], but starting at the last key present at or below `floor`
    /// (from the range's start if there is none). Finding that key and walking on from it
    /// see one view of memory: a checkpoint may join a layer's values under an earlier key
    /// meanwhile (see [`Appendable`]), and two views could start the walk at a key that is
    /// gone from both.
    pub(crate) fn scan_from_floor(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        floor: Vec<u8>,
        visit: impl FnMut(&[u8], &[u8]) -> io::Result<bool>,
    ) -> io::Result<()> {
        let memory = read(&self.layers).range(borrowed(&range));
        let start = match self.last_with(&memory, (range.0.clone(), Bound::Included(floor)))? {
            Some((key, _)) => Bound::Included(key),
            None => range.0,
        };
        self.scan_with(&memory, (start, range.1), visit)
    }

    /// [`Layered::scan`] over `memory`, a view of the layers covering `range`.
    fn scan_with(
        &self,
        memory: &Writes,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        mut visit: impl FnMut(&[u8], &[u8]) -> io::Result<bool>,
    ) -> io::Result<()> {
        let mut memory = memory.range::<[u8], _>(borrowed(&range));
        let mut stored = self.tree.range(range);
        let mut memory_head = memory.next();
        let mut stored_head = stored.next().transpose().map_err(sled_error)?;
        loop {
            let from_memory = match (&memory_head, &stored_head) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((m, _)), Some((s, _))) => m.as_slice() <= s.as_ref(),
            };
            if from_memory {
                let (key, value) = memory_head.take().expect("checked");
                if stored_head
                    .as_ref()
                    .is_some_and(|(s, _)| s.as_ref() == key.as_slice())
                {
                    stored_head = stored.next().transpose().map_err(sled_error)?;
                }
                memory_head = memory.next();
                if let Some(value) = value
                    && !visit(key, value)?
                {
                    return Ok(());
                }
            } else {
                let (key, value) = stored_head.take().expect("checked");
                stored_head = stored.next().transpose().map_err(sled_error)?;
                if !visit(&key, &value)? {
                    return Ok(());
                }
            }
        }
    }

    /// The last key present in `range` and its value, over `memory`, a view of the layers
    /// covering `range`.
    fn last_with(
        &self,
        memory: &Writes,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let in_memory = memory
            .range::<[u8], _>(borrowed(&range))
            .rev()
            .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())));
        let mut stored = None;
        for item in self.tree.range(range).rev() {
            let (key, value) = item.map_err(sled_error)?;
            match memory.get(key.as_ref()) {
                // Removed (or rewritten) since the checkpoint: memory decides.
                Some(_) => continue,
                None => {
                    stored = Some((key.to_vec(), value.to_vec()));
                    break;
                }
            }
        }
        Ok(match (in_memory, stored) {
            (Some(m), Some(s)) => Some(if m.0 >= s.0 { m } else { s }),
            (m, s) => m.or(s),
        })
    }

    /// Adds one apply's writes to the current layer. (Key by key: `BTreeMap::append` would
    /// rebuild the whole layer, O(layer), on every apply.)
    pub(crate) fn apply(&self, writes: Writes) {
        write(&self.layers).current.extend(writes);
    }

    /// Freezes everything applied so far as the next checkpoint, with `marks` (the applied
    /// log id, membership) stored beside it.
    pub(crate) fn freeze(&self, index: u64, marks: Vec<(&'static [u8], Vec<u8>)>) -> Arc<Frozen> {
        let mut layers = write(&self.layers);
        let frozen = Arc::new(Frozen {
            index,
            writes: std::mem::take(&mut layers.current),
            marks,
        });
        layers.frozen.push_back(frozen.clone());
        frozen
    }

    /// Writes every frozen layer up to and including `through` to sled, oldest first, each
    /// in one atomic batch with its marks, makes sled durable, and only then lets the
    /// layers go. Blocking: run it off the async workers.
    pub(crate) fn checkpoint(&self, through: &Arc<Frozen>) -> io::Result<()> {
        let _one_at_a_time = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due: Vec<Arc<Frozen>> = {
            let layers = read(&self.layers);
            let Some(end) = layers.frozen.iter().position(|l| Arc::ptr_eq(l, through)) else {
                // An earlier call wrote it already.
                return Ok(());
            };
            layers.frozen.iter().take(end + 1).cloned().collect()
        };
        for layer in &due {
            let mut batch = sled::Batch::default();
            // A value waiting for the ones a later key may append to it.
            let mut open: Option<(&[u8], Vec<u8>)> = None;
            for (key, value) in &layer.writes {
                if let (Some((first, joined)), Some(value)) = (&mut open, value)
                    && self.appendable.is_some_and(|append| append(first, key))
                {
                    joined.extend_from_slice(value);
                    continue;
                }
                if let Some((first, joined)) = open.take() {
                    batch.insert(first, joined);
                }
                match value {
                    Some(value) => open = Some((key.as_slice(), value.clone())),
                    None => batch.remove(key.as_slice()),
                }
            }
            if let Some((first, joined)) = open {
                batch.insert(first, joined);
            }
            for (key, value) in &layer.marks {
                batch.insert(*key, value.as_slice());
            }
            self.tree.apply_batch(batch).map_err(sled_error)?;
        }
        self.sync()?;
        {
            let mut layers = write(&self.layers);
            for layer in &due {
                if layers.frozen.front().is_some_and(|f| Arc::ptr_eq(f, layer)) {
                    layers.frozen.pop_front();
                }
            }
        }
        if let Some(observer) = &self.observer {
            observer(through.index);
        }
        Ok(())
    }

    /// Forgets everything in memory (a snapshot replaces the whole state).
    pub(crate) fn clear(&self) {
        let _one_at_a_time = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *write(&self.layers) = Layers::default();
    }

    /// Entries in memory not yet in a durable checkpoint.
    pub(crate) fn unsaved(&self) -> usize {
        let layers = read(&self.layers);
        layers.current.len() + layers.frozen.iter().map(|l| l.writes.len()).sum::<usize>()
    }

    /// Makes what sled holds durable: sled's flush (only `sync_file_range` on Linux), then an
    /// fsync of its data file, of every large value sled keeps as a file of its own
    /// (`blobs/`, which sled writes without syncing), and of the directories naming them.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.sync_counting().map(|_| ())
    }

    /// As [`Layered::sync`], answering how many blob files it had to fsync.
    fn sync_counting(&self) -> io::Result<usize> {
        self.db.flush().map_err(sled_error)?;
        std::fs::File::open(self.path.join("db"))?.sync_all()?;
        let blobs = self.path.join("blobs");
        let mut newly = 0;
        if blobs.is_dir() {
            let mut synced = self
                .synced_blobs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut present = std::collections::HashSet::with_capacity(synced.len() + 4);
            for file in std::fs::read_dir(&blobs)? {
                let name = file?.file_name();
                if !synced.contains(&name) {
                    match std::fs::File::open(blobs.join(&name)) {
                        Ok(blob) => {
                            blob.sync_all()?;
                            newly += 1;
                        }
                        // sled removes a blob once a newer value replaced it, on its own
                        // time: it can go between the listing and the open. What this
                        // checkpoint wrote is in blobs sled still refers to, which it does
                        // not remove.
                        Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                        Err(error) => return Err(error),
                    }
                }
                present.insert(name);
            }
            // Only what is still there: removed blobs are not remembered.
            *synced = present;
            std::fs::File::open(&blobs)?.sync_all()?;
        }
        std::fs::File::open(&self.path)?.sync_all()?;
        Ok(newly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// One apply's writes.
        Apply(Vec<(u8, Option<u8>)>),
        Freeze,
        /// Checkpoint through the n-th frozen layer still waiting (if any).
        Checkpoint(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => proptest::collection::vec((0u8..24, proptest::option::of(any::<u8>())), 1..6)
                .prop_map(Step::Apply),
            1 => Just(Step::Freeze),
            1 => (0usize..3).prop_map(Step::Checkpoint),
        ]
    }

    fn key(k: u8) -> Vec<u8> {
        vec![b'k', k]
    }

    fn temporary() -> (tempfile::TempDir, Layered) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path())
            .flush_every_ms(None)
            .open()
            .expect("sled opens");
        let layered = Layered::new(db, dir.path());
        (dir, layered)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever has been frozen or written to sled, every read answers as one map of
        /// every write in order would.
        #[test]
        fn reads_see_every_write_wherever_it_is(steps in proptest::collection::vec(step(), 1..40)) {
            let (_dir, layered) = temporary();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut waiting: Vec<Arc<Frozen>> = Vec::new();
            for step in steps {
                match step {
                    Step::Apply(writes) => {
                        let mut batch = Writes::new();
                        for (k, v) in writes {
                            batch.insert(key(k), v.map(|v| vec![v]));
                            match v {
                                Some(v) => { model.insert(key(k), vec![v]); }
                                None => { model.remove(&key(k)); }
                            }
                        }
                        layered.apply(batch);
                    }
                    Step::Freeze => waiting.push(layered.freeze(0, vec![(b"m:mark", vec![1])])),
                    Step::Checkpoint(n) => {
                        if !waiting.is_empty() {
                            let n = n.min(waiting.len() - 1);
                            layered.checkpoint(&waiting[n]).expect("checkpoint");
                            waiting.drain(..=n);
                        }
                    }
                }
                for k in 0u8..24 {
                    prop_assert_eq!(layered.get(&key(k)).unwrap(), model.get(&key(k)).cloned());
                }
                let mut scanned = Vec::new();
                layered
                    .scan((Bound::Included(key(0)), Bound::Excluded(key(24))), |k, v| {
                        scanned.push((k.to_vec(), v.to_vec()));
                        Ok(true)
                    })
                    .unwrap();
                let expected: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(scanned, expected);
                for below in [3u8, 11, 23] {
                    let mut walked = Vec::new();
                    layered
                        .scan_from_floor(
                            (Bound::Included(key(0)), Bound::Excluded(key(24))),
                            key(below),
                            |k, v| {
                                walked.push((k.to_vec(), v.to_vec()));
                                Ok(true)
                            },
                        )
                        .unwrap();
                    // From the last key at or below the floor, or from the start if none.
                    let start = model
                        .range(key(0)..=key(below))
                        .next_back()
                        .map_or(key(0), |(k, _)| k.clone());
                    let expected: Vec<_> = model
                        .range(start..key(24))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(walked, expected);
                }
            }
        }
    }

    /// sled keeps large values as files of their own and removes a replaced one when it
    /// reclaims the segment that pointed at it; a checkpoint that lists them while that
    /// happens still succeeds.
    #[test]
    fn syncing_survives_sled_removing_replaced_blobs() {
        let (_dir, layered) = temporary();
        let tree = layered.tree().clone();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let done = done.clone();
            std::thread::spawn(move || {
                // Bounded, and flushed often so sled reclaims what it replaced: the
                // directory holds about 32 live blobs and a few replaced ones, never
                // the whole history.
                for n in 0..800u32 {
                    let key = (n % 32).to_be_bytes();
                    tree.insert(key, vec![n as u8; 256 * 1024]).expect("insert");
                    // Inline values fill sled's segments; a replaced blob goes when the
                    // segment that pointed at it is reclaimed.
                    let filler = [b'f', (n % 8) as u8];
                    tree.insert(filler, vec![n as u8; 48 * 1024])
                        .expect("insert");
                    if n % 8 == 7 {
                        tree.flush().expect("flush");
                    }
                }
                done.store(true, std::sync::atomic::Ordering::Release);
            })
        };
        let mut outcome = Ok(());
        let mut syncs = 0;
        while outcome.is_ok() && !done.load(std::sync::atomic::Ordering::Acquire) {
            outcome = layered.sync();
            syncs += 1;
        }
        writer.join().expect("writer");
        outcome.unwrap_or_else(|error| panic!("sync {syncs} failed: {error}"));
    }

    /// A blob file is fsynced by the first sync after sled writes it, and never again: a
    /// checkpoint's cost does not grow with the blobs the store keeps.
    #[test]
    fn a_sync_fsyncs_only_the_blobs_written_since_the_last() {
        let (_dir, layered) = temporary();
        let tree = layered.tree().clone();
        tree.insert(b"first", vec![1u8; 256 * 1024])
            .expect("insert");
        assert_eq!(layered.sync_counting().expect("sync"), 1);
        assert_eq!(layered.sync_counting().expect("sync"), 0);
        tree.insert(b"second", vec![2u8; 256 * 1024])
            .expect("insert");
        tree.insert(b"third", vec![3u8; 256 * 1024])
            .expect("insert");
        assert_eq!(layered.sync_counting().expect("sync"), 2);
        assert_eq!(layered.sync_counting().expect("sync"), 0);
    }

    /// A checkpoint leaves nothing in memory and sled holds its writes and marks.
    #[test]
    fn a_checkpoint_moves_its_layer_into_sled() {
        let (_dir, layered) = temporary();
        let mut batch = Writes::new();
        batch.insert(key(1), Some(vec![7]));
        layered.apply(batch);
        assert_eq!(layered.unsaved(), 1);
        assert_eq!(layered.tree().get(key(1)).unwrap(), None);
        let frozen = layered.freeze(1, vec![(b"m:applied", vec![9])]);
        layered.checkpoint(&frozen).unwrap();
        assert_eq!(layered.unsaved(), 0);
        assert_eq!(
            layered.tree().get(key(1)).unwrap().as_deref(),
            Some(&[7u8][..])
        );
        assert_eq!(
            layered.tree().get(b"m:applied").unwrap().as_deref(),
            Some(&[9u8][..])
        );
        // A second call for the same layer writes nothing more.
        layered.checkpoint(&frozen).unwrap();
    }
}
