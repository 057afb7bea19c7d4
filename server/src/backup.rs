//! Restore, the wiring half of backup and restore: `tandem backup --to DIR` asks the running
//! node (HTTP, admin key; the operation `App::backup`, `ops/backup.rs`) to write a consistent
//! copy into DIR on its host; `tandem restore --from DIR --data-dir NEW` (here) turns that copy
//! into a data directory a stopped node can start from.

use std::path::Path;

use crate::ops::backup::LEGACY_SIDE_FILES;

/// `tandem restore`: rebuilds `data_dir` from `backup`.
pub async fn restore(backup: &Path, data_dir: &Path) -> Result<u64, String> {
    let index = tandem_storage::restore(backup, data_dir)
        .await
        .map_err(|e| format!("restore failed: {e}"))?;
    for name in LEGACY_SIDE_FILES {
        let source = backup.join(name);
        if source.exists() {
            std::fs::copy(&source, data_dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    Ok(index)
}
