//! Backup and restore. `tandem backup --to DIR` asks the running node (HTTP, admin key) to
//! write a consistent copy into DIR on its host; `tandem restore --from DIR --data-dir NEW`
//! turns that copy into a data directory a stopped node can start from.

use std::path::Path;

use crate::app::App;
use crate::keys::{KeyRole, Principal};
use crate::ops::OpError;

/// Files beside the state that a restored node needs as well.
const SIDE_FILES: &[&str] = &["api-keys.json", "fx-rates.json"];

pub async fn take(
    app: &App,
    principal: &Principal,
    to: &str,
) -> Result<serde_json::Value, OpError> {
    if principal.role != KeyRole::Admin {
        return Err(OpError::forbidden("backups need an admin key"));
    }
    let dir = Path::new(to);
    if to.is_empty() || !dir.is_absolute() {
        return Err(OpError::invalid(
            "to",
            "must be an absolute directory path on the server's host",
        ));
    }
    app.audit(principal, "backup", serde_json::json!({"to": to}))?;
    let system = app.system()?;
    let info = system
        .backup(&app.data_dir, dir)
        .await
        .map_err(|e| match e {
            tandem_storage::BackupError::NotEmpty(_) => {
                OpError::conflict("backup_exists", e.to_string())
            }
            other => OpError::unavailable("backup_failed", other.to_string()),
        })?;
    for name in SIDE_FILES {
        let source = app.data_dir.join(name);
        if source.exists() {
            std::fs::copy(&source, dir.join(name))
                .map_err(|e| OpError::unavailable("backup_failed", format!("{name}: {e}")))?;
        }
    }
    tracing::info!(key_id = %principal.key_id, to, covers_index = info.covers_index, "backup written");
    Ok(serde_json::json!({
        "to": to,
        "covers_log_index": info.covers_index,
        "bytes": info.bytes,
    }))
}

/// `tandem restore`: rebuilds `data_dir` from `backup`.
pub async fn restore(backup: &Path, data_dir: &Path) -> Result<u64, String> {
    let index = tandem_storage::restore(backup, data_dir)
        .await
        .map_err(|e| format!("restore failed: {e}"))?;
    for name in SIDE_FILES {
        let source = backup.join(name);
        if source.exists() {
            std::fs::copy(&source, data_dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    Ok(index)
}
