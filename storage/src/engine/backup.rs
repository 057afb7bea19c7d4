//! Backup and restore: a consistent copy of the node (a snapshot at one log index and the PAN
//! hashing key), and a data directory built back from it.

use super::*;

use std::io::{self, Read, Write};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use serde::{Deserialize, Serialize};

use crate::snapshot::SnapshotData;

impl Engine {
    /// Writes a consistent copy of the node to `dir` (which must not exist or be empty): a
    /// fresh snapshot covering everything applied when this is called (so every answer given
    /// before it), and the PAN hashing key. [`restore`] turns it back into a data directory.
    pub async fn backup(&self, data_dir: &Path, dir: &Path) -> Result<BackupInfo, BackupError> {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(BackupError::NotEmpty(dir.display().to_string()));
        }
        // openraft asks the state machine on its task, between two applies: the store is
        // pinned right after a checkpoint, the state exactly at the log index it names, which
        // covers every answer given before this call; it is streamed to the file from there.
        let snapshot = self
            .raft
            .get_snapshot()
            .await
            .map_err(|e| BackupError::Raft(e.to_string()))?
            .ok_or_else(|| BackupError::Raft("nothing has been applied yet".into()))?;
        let covers = snapshot.meta.last_log_id.map_or(0, |l| l.index);
        std::fs::create_dir_all(dir)?;
        let path = dir.join(BACKUP_SNAPSHOT);
        let written = tokio::task::spawn_blocking(move || write_backup(&snapshot, &path))
            .await
            .map_err(io::Error::other)??;
        let key = std::fs::read(data_dir.join(crate::pan_key::PAN_KEY_FILE))?;
        write_copy(&dir.join(crate::pan_key::PAN_KEY_FILE), &key)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(BackupInfo {
            covers_index: covers,
            bytes: written + key.len() as u64,
        })
    }
}

/// The snapshot file's name inside a backup directory.
pub const BACKUP_SNAPSHOT: &str = "snapshot.bin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The log index the copy covers: every decision answered before the backup began.
    pub covers_index: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not empty; back up into a new directory")]
    NotEmpty(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
}

/// A new file at `path` only its owner may read (mode 0600); an existing one is refused.
fn create_private(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

pub(super) fn write_copy(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_private(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// What a backup file starts with: then the meta's length (a big-endian `u32`), the meta,
/// and the snapshot stream (`snapshot.rs`).
pub const BACKUP_MAGIC: [u8; 8] = *b"TDMBACK2";

/// The most bytes a backup's meta may take (it is a log id and a membership).
const BACKUP_META_BYTES_MAX: u32 = 16 * 1024 * 1024;

type Meta = SnapshotMeta<NodeId, BasicNode>;

/// A backup file of an earlier version: meta and image.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

/// The image a backup of an earlier version held, whole: every key and value.
#[derive(Serialize, Deserialize)]
struct SnapshotImage {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Writes a snapshot openraft handed out (`Raft::get_snapshot`) to a new backup file at
/// `path`, streamed from the store, and syncs it; answers its size. Blocking.
fn write_backup(snapshot: &Snapshot<TandemRaft>, path: &Path) -> io::Result<u64> {
    let meta = postcard::to_allocvec(&snapshot.meta).map_err(io::Error::other)?;
    let meta_len = u32::try_from(meta.len()).map_err(io::Error::other)?;
    let mut out = io::BufWriter::with_capacity(1024 * 1024, create_private(path)?);
    out.write_all(&BACKUP_MAGIC)?;
    out.write_all(&meta_len.to_be_bytes())?;
    out.write_all(&meta)?;
    snapshot.snapshot.write_to(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    file.metadata().map(|m| m.len())
}

/// The meta and data of the backup file at `path`. A backup of an earlier version (one
/// postcard image) is converted into a stream spooled in `spool_dir` first.
fn read_backup(path: &Path, spool_dir: &Path) -> io::Result<(Meta, SnapshotData)> {
    let invalid = |e: postcard::Error| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 8];
    if file.read_exact(&mut magic).is_ok() && magic == BACKUP_MAGIC {
        let mut len = [0u8; 4];
        file.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len > BACKUP_META_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a backup's meta cannot be that long",
            ));
        }
        let mut meta = vec![0u8; len as usize];
        file.read_exact(&mut meta)?;
        let meta = postcard::from_bytes(&meta).map_err(invalid)?;
        return Ok((meta, SnapshotData::file(path, 12 + u64::from(len))));
    }
    let stored: StoredSnapshot = postcard::from_bytes(&std::fs::read(path)?).map_err(invalid)?;
    let image: SnapshotImage = postcard::from_bytes(&stored.data).map_err(invalid)?;
    let mut stream = Vec::new();
    crate::snapshot::write_stream(&mut stream, image.pairs.into_iter().map(Ok))?;
    let mut data = SnapshotData::spool_in(spool_dir)?;
    data.append(&stream)?;
    data.finish()?;
    Ok((stored.meta, data))
}

/// Builds a data directory at `data_dir` (which must not exist or be empty) from a backup
/// made by [`Engine::backup`]. Starting an engine on it serves the backed-up state.
pub async fn restore(backup: &Path, data_dir: &Path) -> Result<u64, BackupError> {
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        return Err(BackupError::NotEmpty(data_dir.display().to_string()));
    }
    let snapshot = backup.join(BACKUP_SNAPSHOT);
    if !snapshot.exists() {
        return Err(BackupError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} holds no {BACKUP_SNAPSHOT}", backup.display()),
        )));
    }
    let key = std::fs::read(backup.join(crate::pan_key::PAN_KEY_FILE))?;
    std::fs::create_dir_all(data_dir)?;
    write_copy(&data_dir.join(crate::pan_key::PAN_KEY_FILE), &key)?;
    let mut machine = StateMachine::open(
        &data_dir.join(crate::CHECKPOINT_DIR),
        CheckpointSettings::default(),
    )?;
    let (meta, data) = read_backup(&snapshot, data_dir)?;
    machine
        .install_snapshot(&meta, Box::new(data))
        .await
        .map_err(io::Error::other)?;
    let covers = meta.last_log_id;
    machine.sync()?;
    drop(machine);
    // The log starts empty, purged up to the snapshot: openraft resumes after it.
    let mut log = LogStore::open(&data_dir.join("log"))?;
    if let Some(last) = covers {
        openraft::storage::RaftLogStorage::purge(&mut log, last)
            .await
            .map_err(|e| BackupError::Raft(e.to_string()))?;
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(covers.map_or(0, |l| l.index))
}
