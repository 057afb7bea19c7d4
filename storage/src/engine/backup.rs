//! Backup and restore: a consistent copy of the node (a snapshot at one log index and the PAN
//! hashing key), and a data directory built back from it.

use super::*;

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
        let written = tokio::task::spawn_blocking(move || {
            crate::state_machine::write_backup(&snapshot, &path)
        })
        .await
        .map_err(std::io::Error::other)??;
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

pub(super) fn write_copy(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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
    let covers = machine.restore(&snapshot).await?;
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
