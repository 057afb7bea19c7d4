//! The checkpoint store (fjall, decision 0023): what is applied lives in memory until a
//! checkpoint puts it in the store.
//!
//! Applying a log entry writes no file. Its writes (the same keys and values the state
//! machine has always kept, see `state_machine/`) go into an in-memory layer, `current`.
//! A checkpoint freezes that layer at exactly the last applied log index N, writes it to the
//! store in one atomic batch together with `last_applied = N`, fdatasyncs the store's journal,
//! and only then does openraft purge the log at or below N (it purges only up to a snapshot
//! it was handed, and the snapshot is this checkpoint). Recovery opens the store at its
//! checkpoint and openraft replays the log's tail after N into the layer again.
//!
//! Every read looks at the layers newest first — `current`, then the frozen layers still
//! being written, then the store — so it sees everything applied, wherever it is. A frozen
//! layer is dropped only once the store holds it durably. A key a newer layer wrote can only
//! be newer than what an older layer or the store holds, so reading a layer before or after
//! it reaches the store gives the same answer.
//!
//! The store is an LSM tree: a batch is appended to its journal and its memtable, and its own
//! threads flush and compact in the background, so a checkpoint's cost is its own bytes, not
//! the store's size. Large values (an account's event chunks, its snapshots) are kept apart
//! from the keys (key-value separation), so compaction does not rewrite them.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::dirs::Dirs;

use fjall::Readable;

/// Writes in key order: a value, or `None` for a removed key.
pub(crate) type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A layer frozen at a log index, on its way to the store.
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
    /// Frozen layers not yet durable in the store, oldest first.
    frozen: VecDeque<Arc<Frozen>>,
}

/// The store's state as of the last checkpoint, and what was applied after it.
pub(crate) struct Layered {
    /// The store in the current checkpoint directory (`dirs.rs`): replaced whole when a
    /// snapshot is installed.
    store: RwLock<Arc<Store>>,
    dirs: Dirs,
    cache_bytes: u64,
    layers: RwLock<Layers>,
    /// One checkpoint writes at a time, in freezing order; it holds the log index of the
    /// last layer written to the store ([`UNKNOWN`] before the first and after an install).
    writing: Mutex<u64>,
    observer: Option<CheckpointObserver>,
    appendable: Option<Appendable>,
}

/// One store directory, open.
pub(crate) struct Store {
    db: fjall::Database,
    tree: fjall::Keyspace,
    dir: PathBuf,
}

/// One moment of one store, read while the store goes on (a snapshot being sent, a scan):
/// what fjall's read snapshot sees, kept from compaction until it is dropped.
pub(crate) struct Pinned {
    // Dropped before the store it reads.
    snapshot: fjall::Snapshot,
    store: Arc<Store>,
}

impl Pinned {
    /// The keys in `range` the pinned store holds, in key order.
    pub(crate) fn range(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> impl DoubleEndedIterator<Item = io::Result<(fjall::Slice, fjall::Slice)>> + '_ {
        self.snapshot
            .range::<Vec<u8>, _>(&self.store.tree, range)
            .map(|guard| guard.into_inner().map_err(store_error))
    }
}

impl Store {
    fn open(dir: &Path, cache_bytes: u64) -> io::Result<Self> {
        let db = fjall::Database::builder(dir)
            .cache_size(cache_bytes)
            // Checkpoints make the journal durable themselves.
            .manual_journal_persist(true)
            .open()
            .map_err(store_error)?;
        let tree = db
            .keyspace(KEYSPACE, || {
                fjall::KeyspaceCreateOptions::default().with_kv_separation(Some(
                    fjall::KvSeparationOptions::default()
                        .separation_threshold(SEPARATE_VALUES_FROM),
                ))
            })
            .map_err(store_error)?;
        Ok(Self {
            db,
            tree,
            dir: dir.to_owned(),
        })
    }
}

/// Told the log index of every checkpoint once it is durable, before the log may be purged
/// up to it and before the next checkpoint writes (the power-cut test copies the store there).
pub type CheckpointObserver = Arc<dyn Fn(u64) + Send + Sync>;

/// Says whether the value of the second key may be appended to the first's in a checkpoint
/// (keys in order, both written by the same layer): values that are sequences, such as an
/// account's event chunks, then cost the store one insert per checkpoint instead of one per
/// apply.
pub(crate) type Appendable = fn(&[u8], &[u8]) -> bool;

pub(crate) fn store_error(error: fjall::Error) -> io::Error {
    match error {
        // Another process (or an engine of this one that is still closing) holds it.
        fjall::Error::Locked => io::Error::new(io::ErrorKind::WouldBlock, "the store is locked"),
        fjall::Error::Io(error) => error,
        other => io::Error::other(other),
    }
}

/// Values at least this long are kept apart from the keys (an account's event chunks and
/// snapshots), so compaction moves only the small ones.
const SEPARATE_VALUES_FROM: u32 = 4 * 1024;

/// The keyspace holding the state.
const KEYSPACE: &str = "state";

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
    /// Opens (or creates) the store named `path` with a block cache of `cache_bytes`: the
    /// directory the pointer beside it names, if a snapshot was installed (`dirs.rs`), and
    /// removes any other checkpoint directory there (an install cut short, or one replaced).
    pub(crate) fn open(path: &Path, cache_bytes: u64) -> io::Result<Self> {
        let dirs = Dirs::new(path);
        let current = dirs.current()?;
        let store = Store::open(&current, cache_bytes)?;
        dirs.remove_all_but(&current)?;
        Ok(Self {
            store: RwLock::new(Arc::new(store)),
            dirs,
            cache_bytes,
            layers: RwLock::default(),
            writing: Mutex::new(UNKNOWN),
            observer: None,
            appendable: None,
        })
    }

    pub(crate) fn appending(mut self, appendable: Appendable) -> Self {
        self.appendable = Some(appendable);
        self
    }

    pub(crate) fn observed_by(mut self, observer: Option<CheckpointObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The store open now.
    fn store(&self) -> Arc<Store> {
        read(&self.store).clone()
    }

    /// The directory the store open now is in.
    pub(crate) fn dir(&self) -> PathBuf {
        self.store().dir.clone()
    }

    /// What the durable checkpoint holds under `key`, ignoring memory (`last_applied`).
    pub(crate) fn stored(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let store = self.store();
        Ok(store
            .tree
            .get(key)
            .map_err(store_error)?
            .map(|v| v.to_vec()))
    }

    pub(crate) fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        if let Some(value) = read(&self.layers).get(key) {
            return Ok(value);
        }
        self.stored(key)
    }

    /// One view of the layers covering `range` and then one snapshot of the store, in that
    /// order: a layer leaves memory only after its checkpoint is in the store, so whatever
    /// the view lacks, the later snapshot holds. A read that walks the store twice uses the
    /// one snapshot for both walks: the store's own iterators read its newest state, which a
    /// checkpoint's batch may change between them.
    fn view(&self, range: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> (Writes, Pinned) {
        let memory = read(&self.layers).range(borrowed(range));
        (memory, self.pinned())
    }

    /// The store as it is now, pinned (see [`Pinned`]).
    pub(crate) fn pinned(&self) -> Pinned {
        let store = self.store();
        Pinned {
            snapshot: store.db.snapshot(),
            store,
        }
    }

    /// Removes every stored key starting with `prefix` (keys of older data directories), in
    /// one batch made durable by the next checkpoint: a crash before it removes them again.
    pub(crate) fn remove_stored_prefix(&self, prefix: &[u8]) -> io::Result<()> {
        let store = self.store();
        let mut batch = store.db.batch();
        for item in store.tree.prefix(prefix) {
            let key = item.key().map_err(store_error)?;
            batch.remove(&store.tree, key);
        }
        if !batch.is_empty() {
            batch.commit().map_err(store_error)?;
        }
        Ok(())
    }

    /// Replaces the whole state with `pairs` (a snapshot installed), never holding them all:
    /// they are written in bounded batches into a fresh directory, which is made durable and
    /// then made the current one in one rename (`dirs.rs`); memory and the store are swapped
    /// together, and the replaced directory is removed once nothing reads it. A failure
    /// before the switch leaves the state as it was. Blocking: run it off the async workers.
    pub(crate) fn install(
        &self,
        pairs: impl Iterator<Item = io::Result<(Vec<u8>, Vec<u8>)>>,
    ) -> io::Result<u64> {
        let mut stored_through = self.writing();
        let fresh = self.dirs.fresh(&self.dir())?;
        let written = Store::open(&fresh, self.cache_bytes).and_then(|store| {
            let written = fill(&store, pairs)?;
            Ok((store, written))
        });
        let (store, written) = match written {
            Ok(done) => done,
            Err(error) => {
                // Nothing switched; the next open removes it if this cannot.
                let _ = std::fs::remove_dir_all(&fresh);
                return Err(error);
            }
        };
        self.dirs.switch_to(&fresh)?;
        let replaced = {
            let mut layers = write(&self.layers);
            *layers = Layers::default();
            *stored_through = UNKNOWN;
            std::mem::replace(&mut *write(&self.store), Arc::new(store))
        };
        retire(replaced);
        Ok(written)
    }

    /// Visits every key and value in `range` in key order, newest layer first per key,
    /// until `visit` answers false.
    pub(crate) fn scan(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        visit: impl FnMut(&[u8], &[u8]) -> io::Result<bool>,
    ) -> io::Result<()> {
        let (memory, stored) = self.view(&range);
        self.scan_with(&memory, &stored, range, visit)
    }

    /// Like [`Layered::scan`], but starting at the last key present at or below `floor`
    /// (from the range's start if there is none). Finding that key and walking on from it
    /// see one view of memory and one snapshot of the store: a checkpoint may join a layer's
    /// values under an earlier key meanwhile (see [`Appendable`]), and two views could start
    /// the walk at a key that is gone from both.
    pub(crate) fn scan_from_floor(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        floor: Vec<u8>,
        visit: impl FnMut(&[u8], &[u8]) -> io::Result<bool>,
    ) -> io::Result<()> {
        let (memory, stored) = self.view(&range);
        let bounds = (range.0.clone(), Bound::Included(floor));
        let start = match self.last_with(&memory, &stored, bounds)? {
            Some((key, _)) => Bound::Included(key),
            None => range.0,
        };
        self.scan_with(&memory, &stored, (start, range.1), visit)
    }

    /// [`Layered::scan`] over one [`Layered::view`].
    fn scan_with(
        &self,
        memory: &Writes,
        stored: &Pinned,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        mut visit: impl FnMut(&[u8], &[u8]) -> io::Result<bool>,
    ) -> io::Result<()> {
        let mut memory = memory.range::<[u8], _>(borrowed(&range));
        let mut stored = stored.range(range);
        let mut memory_head = memory.next();
        let mut stored_head = stored.next().transpose()?;
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
                    stored_head = stored.next().transpose()?;
                }
                memory_head = memory.next();
                if let Some(value) = value
                    && !visit(key, value)?
                {
                    return Ok(());
                }
            } else {
                let (key, value) = stored_head.take().expect("checked");
                stored_head = stored.next().transpose()?;
                if !visit(&key, &value)? {
                    return Ok(());
                }
            }
        }
    }

    /// The last key present in `range` and its value, over one [`Layered::view`].
    fn last_with(
        &self,
        memory: &Writes,
        stored: &Pinned,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let in_memory = memory
            .range::<[u8], _>(borrowed(&range))
            .rev()
            .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())));
        let mut in_store = None;
        for item in stored.range(range).rev() {
            let (key, value) = item?;
            match memory.get(key.as_ref()) {
                // Removed (or rewritten) since the checkpoint: memory decides.
                Some(_) => continue,
                None => {
                    in_store = Some((key.to_vec(), value.to_vec()));
                    break;
                }
            }
        }
        Ok(match (in_memory, in_store) {
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

    /// Writes every frozen layer up to and including `through` to the store, oldest first,
    /// each in one atomic batch with its marks, makes the store durable, and only then lets
    /// the layers go. Blocking: run it off the async workers.
    pub(crate) fn checkpoint(&self, through: &Arc<Frozen>) -> io::Result<()> {
        self.write_through(&mut self.writing(), through)
    }

    /// The writing lock (see `writing`).
    fn writing(&self) -> std::sync::MutexGuard<'_, u64> {
        self.writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checkpoints through `through` and pins the store right after, before any later layer
    /// can be written: exactly the state at `through`'s index (a snapshot being sent). If a
    /// later layer reached the store first, the state at that index is gone from it, and
    /// this says so (a new snapshot is then asked for). Blocking.
    pub(crate) fn pinned_at(&self, through: &Arc<Frozen>) -> io::Result<Pinned> {
        let mut stored_through = self.writing();
        self.write_through(&mut stored_through, through)?;
        let stored = *stored_through;
        if stored != through.index {
            return Err(io::Error::other(format!(
                "the store has moved on to index {stored}, past the snapshot's {}: ask for a new one",
                through.index
            )));
        }
        Ok(self.pinned())
    }

    /// [`Layered::checkpoint`], with the writing lock held (`stored_through` is its value).
    fn write_through(&self, stored_through: &mut u64, through: &Arc<Frozen>) -> io::Result<()> {
        let due: Vec<Arc<Frozen>> = {
            let layers = read(&self.layers);
            let Some(end) = layers.frozen.iter().position(|l| Arc::ptr_eq(l, through)) else {
                // An earlier call wrote it already.
                return Ok(());
            };
            layers.frozen.iter().take(end + 1).cloned().collect()
        };
        let store = self.store();
        for layer in &due {
            let mut batch = store.db.batch();
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
                    batch.insert(&store.tree, first, joined);
                }
                match value {
                    Some(value) => open = Some((key.as_slice(), value.clone())),
                    None => batch.remove(&store.tree, key.as_slice()),
                }
            }
            if let Some((first, joined)) = open {
                batch.insert(&store.tree, first, joined);
            }
            for (key, value) in &layer.marks {
                batch.insert(&store.tree, *key, value.as_slice());
            }
            batch.commit().map_err(store_error)?;
        }
        store.sync()?;
        *stored_through = through.index;
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

    /// Entries in memory not yet in a durable checkpoint.
    pub(crate) fn unsaved(&self) -> usize {
        let layers = read(&self.layers);
        layers.current.len() + layers.frozen.iter().map(|l| l.writes.len()).sum::<usize>()
    }

    /// Makes what the store holds durable: an fdatasync of its journal (the store syncs the
    /// tables it flushes from it before it lets a journal go).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.store().sync()
    }
}

impl Store {
    fn sync(&self) -> io::Result<()> {
        self.db
            .persist(fjall::PersistMode::SyncData)
            .map_err(store_error)
    }
}

/// What [`Layered`]'s writing lock holds when no layer was written since the store was
/// opened or replaced.
const UNKNOWN: u64 = u64::MAX;

/// Bytes of one batch when a snapshot is written into a fresh store.
const INSTALL_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Writes `pairs` into `store` in batches of about [`INSTALL_BATCH_BYTES`] and makes them
/// durable; answers how many there were.
fn fill(
    store: &Store,
    pairs: impl Iterator<Item = io::Result<(Vec<u8>, Vec<u8>)>>,
) -> io::Result<u64> {
    let mut written = 0;
    let mut batch = store.db.batch();
    let mut batch_bytes = 0;
    for pair in pairs {
        let (key, value) = pair?;
        batch_bytes += key.len() + value.len();
        batch.insert(&store.tree, key, value);
        written += 1;
        if batch_bytes >= INSTALL_BATCH_BYTES {
            batch.commit().map_err(store_error)?;
            batch = store.db.batch();
            batch_bytes = 0;
        }
    }
    batch.commit().map_err(store_error)?;
    store
        .db
        .persist(fjall::PersistMode::SyncAll)
        .map_err(store_error)?;
    Ok(written)
}

/// Closes a replaced store once nothing reads it any more (a scan, a snapshot being sent)
/// and removes its directory, on a thread of its own; a process that stops first leaves the
/// directory to the next open.
fn retire(replaced: Arc<Store>) {
    let retiring = std::thread::Builder::new()
        .name("tandem-retire".into())
        .spawn(move || {
            let mut replaced = replaced;
            let store = loop {
                match Arc::try_unwrap(replaced) {
                    Ok(store) => break store,
                    Err(shared) => {
                        replaced = shared;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                }
            };
            let dir = store.dir.clone();
            drop(store);
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(%error, dir = %dir.display(), "a replaced checkpoint stays until the next start");
            }
        });
    if let Err(error) = retiring {
        tracing::warn!(%error, "a replaced checkpoint stays until the next start");
    }
}

/// Moves a data directory's checkpoint from sled (`state/`, before decision 0023) into the
/// store at `path`, once, at open: everything sled holds is copied into a store beside it,
/// made durable, and renamed into place; only then does sled's directory go. A crash at any
/// point leaves either sled whole (the copy is redone) or the store whole (sled's leftovers
/// are removed). Answers the keys copied, if there was anything to move.
pub(crate) fn move_from_sled(sled_dir: &Path, path: &Path) -> io::Result<Option<u64>> {
    let copying = path.with_extension("copying");
    if !sled_dir.join("db").exists() {
        return Ok(None);
    }
    if path.exists() {
        // Moved already; the crash came before sled's directory was gone.
        std::fs::remove_dir_all(sled_dir)?;
        return Ok(None);
    }
    if copying.exists() {
        std::fs::remove_dir_all(&copying)?;
    }
    let started = std::time::Instant::now();
    let sled = sled::Config::new()
        .path(sled_dir)
        .flush_every_ms(None)
        .open()
        .map_err(|error| match error {
            sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock") => {
                io::Error::new(io::ErrorKind::WouldBlock, io.to_string())
            }
            other => io::Error::other(other),
        })?;
    let copied = {
        let store = Store::open(&copying, 64 * 1024 * 1024)?;
        // Bounded batches: the copy is made whole by the rename, not by one batch.
        fill(
            &store,
            sled.iter().map(|item| {
                item.map(|(key, value)| (key.to_vec(), value.to_vec()))
                    .map_err(io::Error::other)
            }),
        )?
    };
    drop(sled);
    std::fs::rename(&copying, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    std::fs::remove_dir_all(sled_dir)?;
    tracing::info!(
        keys = copied,
        ms = started.elapsed().as_millis(),
        "the checkpoint moved from sled to the store"
    );
    Ok(Some(copied))
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
        let layered =
            Layered::open(&dir.path().join("checkpoint"), 8 * 1024 * 1024).expect("store opens");
        (dir, layered)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever has been frozen or written to the store, every read answers as one map of
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

    /// A checkpoint's batch is durable when it answers: the store reopened holds it, large
    /// values (kept apart from the keys) included.
    #[test]
    fn a_checkpoint_survives_reopening_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let large = vec![7u8; 64 * 1024];
        {
            let layered = Layered::open(&dir.path().join("checkpoint"), 8 * 1024 * 1024)
                .expect("store opens");
            let mut batch = Writes::new();
            batch.insert(key(1), Some(large.clone()));
            batch.insert(key(2), Some(vec![2]));
            layered.apply(batch);
            let frozen = layered.freeze(1, vec![(b"m:applied", vec![1])]);
            layered.checkpoint(&frozen).expect("checkpoint");
        }
        let layered =
            Layered::open(&dir.path().join("checkpoint"), 8 * 1024 * 1024).expect("store reopens");
        assert_eq!(layered.stored(&key(1)).unwrap(), Some(large));
        assert_eq!(layered.stored(&key(2)).unwrap(), Some(vec![2]));
        assert_eq!(layered.stored(b"m:applied").unwrap(), Some(vec![1]));
        // A snapshot installed: a fresh directory holds only what it brought, and stays the
        // current one across a reopen.
        let replaced = layered.dir();
        layered
            .install([Ok((key(3), vec![3]))].into_iter())
            .expect("install");
        assert_ne!(layered.dir(), replaced);
        assert_eq!(layered.stored(&key(1)).unwrap(), None);
        assert_eq!(layered.stored(&key(3)).unwrap(), Some(vec![3]));
        let installed = layered.dir();
        drop(layered);
        let layered =
            Layered::open(&dir.path().join("checkpoint"), 8 * 1024 * 1024).expect("store reopens");
        assert_eq!(layered.dir(), installed);
        assert_eq!(layered.stored(&key(3)).unwrap(), Some(vec![3]));
        assert!(!replaced.exists(), "the replaced directory is gone");
    }

    /// A snapshot's layer is pinned at its own index or not at all: writes applied after it
    /// stay out of the pinned store, and once a later layer reached the store first, the
    /// snapshot is refused (a new one is asked for) rather than read ahead of its index.
    #[test]
    fn a_snapshot_is_pinned_at_its_own_index_or_refused() {
        let (_dir, layered) = temporary();
        let write = |k: u8, v: u8| {
            let mut batch = Writes::new();
            batch.insert(key(k), Some(vec![v]));
            layered.apply(batch);
        };
        write(1, 1);
        let at_1 = layered.freeze(1, vec![]);
        write(2, 2);
        let pinned = layered.pinned_at(&at_1).expect("pinned at 1");
        let keys: Vec<Vec<u8>> = pinned
            .range((Bound::Unbounded, Bound::Unbounded))
            .map(|pair| pair.unwrap().0.to_vec())
            .collect();
        assert_eq!(keys, vec![key(1)], "the write after index 1 is not in it");
        let at_2 = layered.freeze(2, vec![]);
        write(3, 3);
        let at_3 = layered.freeze(3, vec![]);
        layered.checkpoint(&at_3).unwrap();
        assert!(
            layered.pinned_at(&at_2).is_err(),
            "the store is at 3, past 2"
        );
        assert!(layered.pinned_at(&at_3).is_ok());
    }

    /// An install whose records fail half-way (a stream not whole, a disk error) switches to
    /// nothing: the state is what it was, and the fresh directory is gone.
    #[test]
    fn an_install_that_fails_half_way_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layered =
            Layered::open(&dir.path().join("checkpoint"), 8 * 1024 * 1024).expect("store opens");
        let mut batch = Writes::new();
        batch.insert(key(1), Some(vec![1]));
        layered.apply(batch);
        let frozen = layered.freeze(1, vec![(b"m:applied", vec![1])]);
        layered.checkpoint(&frozen).expect("checkpoint");
        let before = layered.dir();
        let failing = [
            Ok((key(2), vec![2])),
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut")),
        ];
        assert!(layered.install(failing.into_iter()).is_err());
        assert_eq!(layered.dir(), before);
        assert_eq!(layered.get(&key(1)).unwrap(), Some(vec![1]));
        assert_eq!(layered.get(&key(2)).unwrap(), None);
        assert!(!dir.path().join("checkpoint-1").exists());
        assert!(!dir.path().join("checkpoint.current").exists());
    }

    /// A checkpoint leaves nothing in memory and the store holds its writes and marks.
    #[test]
    fn a_checkpoint_moves_its_layer_into_the_store() {
        let (_dir, layered) = temporary();
        let mut batch = Writes::new();
        batch.insert(key(1), Some(vec![7]));
        layered.apply(batch);
        assert_eq!(layered.unsaved(), 1);
        assert_eq!(layered.stored(&key(1)).unwrap(), None);
        let frozen = layered.freeze(1, vec![(b"m:applied", vec![9])]);
        layered.checkpoint(&frozen).unwrap();
        assert_eq!(layered.unsaved(), 0);
        assert_eq!(layered.stored(&key(1)).unwrap(), Some(vec![7]));
        assert_eq!(layered.stored(b"m:applied").unwrap(), Some(vec![9]));
        // A second call for the same layer writes nothing more.
        layered.checkpoint(&frozen).unwrap();
    }

    fn sled_with(dir: &Path, pairs: &[(&[u8], &[u8])]) {
        let db = sled::open(dir).expect("sled opens");
        for (key, value) in pairs {
            db.insert(key, *value).expect("insert");
        }
        db.flush().expect("flush");
    }

    /// A data directory from before decision 0023: its sled checkpoint moves into the store
    /// whole, once, and sled's directory goes.
    #[test]
    fn a_sled_checkpoint_moves_into_the_store_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (old, new) = (dir.path().join("state"), dir.path().join("checkpoint"));
        let large = vec![5u8; 100 * 1024];
        sled_with(
            &old,
            &[(b"a:1", b"one"), (b"m:applied", b"9"), (b"e:big", &large)],
        );
        assert_eq!(move_from_sled(&old, &new).expect("moves"), Some(3));
        assert!(!old.exists(), "sled's directory went");
        assert_eq!(move_from_sled(&old, &new).expect("nothing left"), None);
        let store = Layered::open(&new, 8 * 1024 * 1024).expect("store opens");
        assert_eq!(store.stored(b"a:1").unwrap(), Some(b"one".to_vec()));
        assert_eq!(store.stored(b"m:applied").unwrap(), Some(b"9".to_vec()));
        assert_eq!(store.stored(b"e:big").unwrap(), Some(large));
    }

    /// A crash during the move leaves either a partial copy (redone from sled) or the whole
    /// store with sled's directory still there (removed).
    #[test]
    fn a_move_cut_short_is_redone_or_finished() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (old, new) = (dir.path().join("state"), dir.path().join("checkpoint"));
        sled_with(&old, &[(b"a:1", b"one")]);
        // A copy cut short: its directory holds something, but it never took the name.
        let copying = new.with_extension("copying");
        std::fs::create_dir_all(&copying).expect("dir");
        std::fs::write(copying.join("junk"), b"half").expect("junk");
        assert_eq!(move_from_sled(&old, &new).expect("redone"), Some(1));
        assert!(!copying.exists());
        // Cut after the rename, before sled's directory went: the store stands.
        sled_with(&old, &[(b"a:1", b"stale")]);
        assert_eq!(move_from_sled(&old, &new).expect("finished"), None);
        assert!(!old.exists());
        let store = Layered::open(&new, 8 * 1024 * 1024).expect("store opens");
        assert_eq!(store.stored(b"a:1").unwrap(), Some(b"one".to_vec()));
    }
}
