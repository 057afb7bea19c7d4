//! A power cut, simulated on a stopped node's data directory.
//!
//! `kill -9` leaves the page cache intact, so everything written reaches the disk and a
//! missing fdatasync would go unnoticed. A power cut keeps only what was synced. The worker
//! reports, through the log store's sync observer, the last log entry each fdatasync covered
//! (before any answer that depends on it). After the kill, [`cut`] truncates the log's open
//! chunk file to a random length that keeps every synced entry and any part of what came
//! after: unsynced entries vanish and the last record may be torn, as on a real power loss.
//!
//! The checkpoint store is written only by checkpoints, each made durable before the log may
//! be purged up to it (its own threads then flush and compact what the checkpoint wrote,
//! syncing each file before it counts). So a power cut leaves the store as its last durable
//! checkpoint left it: the worker copies the store's files right after each one is durable
//! ([`CHECKPOINT_COPY`]), and [`restore_store`] puts that copy back after the kill, dropping
//! whatever the store wrote after it.

use std::io;
use std::path::{Path, PathBuf};
use tandem_storage::log_store::LogStore;

/// Where the worker copies the store's files after each durable checkpoint, in the data
/// directory.
pub const CHECKPOINT_COPY: &str = "checkpoint-copy";

/// Copies the directory `from` (files and subdirectories) to `to`, which must not exist.
pub fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Files under `dir` with their lengths, in order.
fn listing(dir: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            files.extend(listing(&entry.path())?);
        } else {
            files.push((entry.path(), entry.metadata()?.len()));
        }
    }
    files.sort();
    Ok(files)
}

/// [`copy_dir`] of a directory the store's own threads may be writing (a flush or a
/// compaction adds a file, then drops the ones it replaced): copied again until no file came,
/// went or changed length during a copy, so the copy is one moment of the store, as a power
/// cut would leave it.
fn copy_store(from: &Path, to: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        let before = listing(from)?;
        let copied = copy_dir(from, to);
        let settled = copied.is_ok() && listing(from)? == before;
        if settled {
            return Ok(());
        }
        tries += 1;
        if tries >= 200 {
            return copied.and(Err(io::Error::other(
                "the store kept changing while it was copied",
            )));
        }
        remove_if_present(to)?;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Where a copy is made before it takes [`CHECKPOINT_COPY`]'s name.
const PARTIAL_COPY: &str = "checkpoint-copy.partial";
/// Where the previous copy waits while the new one takes its name.
const PREVIOUS_COPY: &str = "checkpoint-copy.previous";

/// Copies the store's files (`<data_dir>/checkpoint`) to [`CHECKPOINT_COPY`], replacing the copy there
/// so that a SIGKILL at any moment leaves one whole copy: the new one is made aside, the old
/// one is renamed away, the new one renamed in, and only then is the old one removed. (A
/// copy removed in place and then made again can be cut in half by the kill; restoring half
/// a copy is no power cut the store could see.) Called while the checkpoint observer runs, so the
/// log is not yet purged up to the new checkpoint and the previous copy is still a whole,
/// usable checkpoint if the kill lands between the renames.
pub fn save_checkpoint_copy(data_dir: &Path) -> io::Result<()> {
    let copy = data_dir.join(CHECKPOINT_COPY);
    let partial = data_dir.join(PARTIAL_COPY);
    let previous = data_dir.join(PREVIOUS_COPY);
    remove_if_present(&partial)?;
    copy_store(&data_dir.join(tandem_storage::CHECKPOINT_DIR), &partial)?;
    if copy.exists() {
        remove_if_present(&previous)?;
        std::fs::rename(&copy, &previous)?;
    }
    std::fs::rename(&partial, &copy)?;
    remove_if_present(&previous)
}

fn remove_if_present(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Leaves the store in `data_dir` as a power cut would: as of the last durable checkpoint
/// (its copy), or empty if none was made. Answers whether a checkpoint was restored.
pub fn restore_store(data_dir: &Path) -> io::Result<bool> {
    let copy = data_dir.join(CHECKPOINT_COPY);
    let previous = data_dir.join(PREVIOUS_COPY);
    // Killed between [`save_checkpoint_copy`]'s renames: the previous copy is the whole one.
    if !copy.exists() && previous.exists() {
        std::fs::rename(&previous, &copy)?;
    }
    remove_if_present(&previous)?;
    remove_if_present(&data_dir.join(PARTIAL_COPY))?;
    let state = data_dir.join(tandem_storage::CHECKPOINT_DIR);
    remove_if_present(&state)?;
    if !copy.exists() {
        return Ok(false);
    }
    copy_dir(&copy, &state)?;
    Ok(true)
}

/// What a cut did, for the test's log.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    /// The open chunk's length before and after.
    pub length_before: u64,
    pub length_after: u64,
    /// The shortest length that still held every synced entry.
    pub synced_length: u64,
}

/// The log's chunk files (`r-<offset>.wal`), oldest first.
fn chunks(log: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    Ok(files)
}

/// The last entry a restart finds when the open chunk is cut to `length`, tried on a copy.
fn last_index_if_cut(log: &Path, chunk: &Path, length: u64, scratch: &Path) -> Option<u64> {
    let copy = scratch.join(format!("try-{length}"));
    std::fs::create_dir_all(&copy).ok()?;
    for file in std::fs::read_dir(log).ok()?.filter_map(Result::ok) {
        if file.path().is_file() {
            std::fs::copy(file.path(), copy.join(file.file_name())).ok()?;
        }
    }
    let cut = copy.join(chunk.file_name()?);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .and_then(|f| f.set_len(length))
        .ok()?;
    let last = LogStore::last_index(&copy).ok().flatten();
    let _ = std::fs::remove_dir_all(&copy);
    last
}

/// Cuts power on the data directory `data_dir`, whose log synced every entry up to
/// `synced_index`: the open chunk keeps the bytes those entries need plus `keep_extra`
/// (a fraction in 0..=1) of the bytes after them.
pub fn cut(data_dir: &Path, synced_index: u64, keep_extra: f64) -> io::Result<Cut> {
    let log = data_dir.join("log");
    let chunks = chunks(&log)?;
    let chunk = chunks
        .last()
        .ok_or_else(|| io::Error::other("the log has no chunk file"))?
        .clone();
    let length_before = std::fs::metadata(&chunk)?.len();
    let scratch = tempfile::tempdir()?;
    let holds = |length: u64| {
        last_index_if_cut(&log, &chunk, length, scratch.path()).is_some_and(|i| i >= synced_index)
    };
    if !holds(length_before) {
        return Err(io::Error::other(format!(
            "the log does not hold synced entry {synced_index} even uncut"
        )));
    }
    // The shortest length that still holds every synced entry (holding is monotonic in the
    // length: a longer prefix holds at least the same entries).
    let (mut low, mut high) = (0u64, length_before);
    while low < high {
        let middle = low + (high - low) / 2;
        if holds(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let synced_length = high;
    let extra = ((length_before - synced_length) as f64 * keep_extra.clamp(0.0, 1.0)) as u64;
    let length_after = synced_length + extra;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&chunk)?
        .set_len(length_after)?;
    Ok(Cut {
        length_before,
        length_after,
        synced_length,
    })
}
