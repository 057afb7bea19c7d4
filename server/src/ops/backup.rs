//! Backups, as an operation: a consistent copy of the running node written where an admin
//! asks (`POST /v1/admin/backup`, what `tandem backup` calls). Restoring one is the wiring's
//! (`crate::backup`), on a stopped node.

use std::path::Path;

use super::OpError;
use crate::app::App;
use crate::keys::Principal;

/// Files beside the state that backups taken before API keys and FX rates were committed
/// to the log carried; a restore copies them back, and the restored node imports them at
/// start. Backups now carry both in the state.
pub const LEGACY_SIDE_FILES: &[&str] = &[
    crate::keys::LEGACY_KEY_FILE,
    super::admin::LEGACY_RATES_FILE,
];

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupTaken {
    pub to: String,
    /// The log index the copy covers: every decision answered before the backup began.
    pub covers_log_index: u64,
    pub bytes: u64,
}

impl App {
    /// Writes a consistent copy of the node into `to`, an empty or new absolute directory on
    /// the node's host: the checkpoint at one log index (API keys and FX rates included) and
    /// the PAN hashing key. Admin only; audited.
    pub async fn backup(&self, principal: &Principal, to: &str) -> Result<BackupTaken, OpError> {
        self.admin_only(principal, "taking a backup")?;
        let dir = Path::new(to);
        if to.is_empty() || !dir.is_absolute() {
            return Err(OpError::invalid(
                "to",
                "must be an absolute directory path on the server's host",
            ));
        }
        self.audit(principal, "backup", serde_json::json!({"to": to}))?;
        let system = self.system()?;
        let info = system
            .backup(&self.data_dir, dir)
            .await
            .map_err(|e| match e {
                tandem_actors::BackupError::NotEmpty(_) => {
                    OpError::conflict("backup_exists", e.to_string())
                }
                other => OpError::unavailable("backup_failed", other.to_string()),
            })?;
        tracing::info!(key_id = %principal.key_id, to, covers_index = info.covers_index, "backup written");
        Ok(BackupTaken {
            to: to.to_owned(),
            covers_log_index: info.covers_index,
            bytes: info.bytes,
        })
    }
}
