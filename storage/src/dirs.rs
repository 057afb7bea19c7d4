//! Which directory holds the checkpoint store.
//!
//! A data directory starts with `checkpoint/`. A snapshot installed from the leader is
//! written into a fresh directory beside it, `checkpoint-<generation>/`, made durable, and
//! only then made the current one by replacing the pointer file `checkpoint.current` (written
//! aside, synced, renamed over the old pointer, and the data directory synced). The switch is
//! that one rename: a crash leaves either the old checkpoint current or the new one, never a
//! mix, and never a state that is half one and half the other. At open, every checkpoint
//! directory that is not the current one (an install cut short, or one replaced) is removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub(crate) struct Dirs {
    /// The first checkpoint directory (`checkpoint`); the others are named after it.
    base: PathBuf,
}

impl Dirs {
    pub(crate) fn new(base: &Path) -> Self {
        Self {
            base: base.to_owned(),
        }
    }

    fn name(&self) -> &str {
        self.base
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("checkpoint")
    }

    fn parent(&self) -> &Path {
        self.base.parent().unwrap_or_else(|| Path::new("."))
    }

    fn pointer(&self) -> PathBuf {
        self.parent().join(format!("{}.current", self.name()))
    }

    fn pointer_aside(&self) -> PathBuf {
        self.parent().join(format!("{}.current.new", self.name()))
    }

    /// The generation of the checkpoint directory called `name`: 0 for the first, `n` for
    /// `<base>-<n>`, `None` for anything else.
    fn generation(&self, name: &str) -> Option<u64> {
        if name == self.name() {
            return Some(0);
        }
        let digits = name.strip_prefix(self.name())?.strip_prefix('-')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// The current checkpoint directory: the one the pointer names, or the first.
    pub(crate) fn current(&self) -> io::Result<PathBuf> {
        match fs::read_to_string(self.pointer()) {
            Ok(named) => {
                let named = named.trim();
                if self.generation(named).is_none() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} names {named:?}, which is not a checkpoint directory",
                            self.pointer().display()
                        ),
                    ));
                }
                Ok(self.parent().join(named))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(self.base.clone()),
            Err(error) => Err(error),
        }
    }

    /// A fresh, empty directory for the generation after `current`'s (emptied first if an
    /// install cut short left one there).
    pub(crate) fn fresh(&self, current: &Path) -> io::Result<PathBuf> {
        let generation = current
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| self.generation(n))
            .unwrap_or(0);
        let fresh = self
            .parent()
            .join(format!("{}-{}", self.name(), generation + 1));
        if fresh.exists() {
            fs::remove_dir_all(&fresh)?;
        }
        Ok(fresh)
    }

    /// Makes `dir` (durable already) the current checkpoint directory, atomically.
    pub(crate) fn switch_to(&self, dir: &Path) -> io::Result<()> {
        use std::io::Write;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| self.generation(n).is_some())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a checkpoint directory", dir.display()),
                )
            })?;
        let aside = self.pointer_aside();
        let mut file = fs::File::create(&aside)?;
        file.write_all(format!("{name}\n").as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&aside, self.pointer())?;
        fs::File::open(self.parent())?.sync_all()
    }

    /// Removes every checkpoint directory but `current`, and a pointer left aside.
    pub(crate) fn remove_all_but(&self, current: &Path) -> io::Result<()> {
        let aside = self.pointer_aside();
        if aside.exists() {
            fs::remove_file(&aside)?;
        }
        for entry in fs::read_dir(self.parent())? {
            let entry = entry?;
            let path = entry.path();
            let ours = entry
                .file_name()
                .to_str()
                .is_some_and(|n| self.generation(n).is_some());
            if ours && path != current && entry.file_type()?.is_dir() {
                tracing::info!(dir = %path.display(), "removing a checkpoint directory that is not the current one");
                fs::remove_dir_all(&path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pointer_names_the_current_directory_and_open_removes_the_others() {
        let data = tempfile::tempdir().expect("temp dir");
        let dirs = Dirs::new(&data.path().join("checkpoint"));
        let first = dirs.current().expect("current");
        assert_eq!(first, data.path().join("checkpoint"));
        fs::create_dir_all(&first).unwrap();
        let second = dirs.fresh(&first).expect("fresh");
        assert_eq!(second, data.path().join("checkpoint-1"));
        fs::create_dir_all(&second).unwrap();
        // Cut short before the switch: the first stays current, the fresh one goes at open.
        assert_eq!(dirs.current().unwrap(), first);
        dirs.remove_all_but(&first).unwrap();
        assert!(!second.exists() && first.exists());
        // Switched: the second is current, the first goes; other names are left alone.
        fs::create_dir_all(&second).unwrap();
        fs::create_dir_all(data.path().join("checkpoint-x")).unwrap();
        fs::create_dir_all(data.path().join("log")).unwrap();
        dirs.switch_to(&second).unwrap();
        assert_eq!(dirs.current().unwrap(), second);
        dirs.remove_all_but(&second).unwrap();
        assert!(!first.exists() && second.exists());
        assert!(data.path().join("checkpoint-x").exists() && data.path().join("log").exists());
        assert_eq!(
            dirs.fresh(&second).unwrap(),
            data.path().join("checkpoint-2")
        );
        // A pointer that names something else is refused, not followed.
        fs::write(data.path().join("checkpoint.current"), "../elsewhere\n").unwrap();
        assert_eq!(
            dirs.current().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
