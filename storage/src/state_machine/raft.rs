//! The openraft seam: the state machine trait, the checkpoint builder (a snapshot is the
//! checkpoint at one log index), the snapshot image and the backup file's encoding.

use super::*;

/// A snapshot as openraft ships it: every key and value of the state.
#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotImage {
    pub(super) pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A snapshot as a backup file holds it: meta and image.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredSnapshot {
    pub(super) meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    pub(super) data: Vec<u8>,
}

/// Encodes a snapshot openraft handed out (`Raft::get_snapshot`) as a backup file.
pub fn encode_snapshot(snapshot: Snapshot<TandemRaft>) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(&StoredSnapshot {
        meta: snapshot.meta,
        data: snapshot.snapshot.into_inner(),
    })
    .map_err(io::Error::other)
}

/// A checkpoint (what openraft calls building a snapshot): the writes applied up to one log
/// index, frozen on the state machine's task, go to the store in one batch with that index
/// and are made durable; openraft purges the log only up to the index it is then handed. The
/// store *is* the snapshot, so nothing else is copied; an image is only read when a snapshot is
/// asked for (`get_current_snapshot`: a backup, or a follower that needs one).
pub struct CheckpointBuilder {
    store: Arc<Layered>,
    accounts: Arc<Accounts>,
    frozen: Arc<Frozen>,
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
}

impl RaftSnapshotBuilder<TandemRaft> for CheckpointBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TandemRaft>, StorageError> {
        let store = self.store.clone();
        let accounts = self.accounts.clone();
        let frozen = self.frozen.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            store.checkpoint(&frozen)?;
            // Accounts idle since the last checkpoint, and clean now, leave memory.
            accounts.evict_clean(frozen.index);
            Ok::<(), io::Error>(())
        })
        .await
        .map_err(io::Error::other)
        .and_then(|written| written)
        .map_err(|e| {
            // openraft stops the log on this error; say why where operators look.
            tracing::error!(error = %e, index = ?self.meta.last_log_id, "checkpoint failed");
            StorageIOError::write_snapshot(Some(self.meta.signature()), &e)
        })?;
        metrics::histogram!("tandem_checkpoint_seconds").record(started.elapsed().as_secs_f64());
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

impl RaftStateMachine<TandemRaft> for StateMachine {
    type SnapshotBuilder = CheckpointBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchApplied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let last = entries.last().map(|e| e.log_id);
        self.apply_entries(entries)
            .map_err(|e| StorageIOError::apply(last.unwrap_or_default(), &e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // On the state machine's task, between two applies: the frozen writes are exactly
        // the state at `applied`.
        let floor = self.time_floor.load(std::sync::atomic::Ordering::Acquire);
        let marks = match (
            encoded(&self.applied),
            encoded(&self.membership),
            encoded(&floor),
        ) {
            (Ok(applied), Ok(membership), Ok(floor)) => vec![
                (APPLIED, applied),
                (MEMBERSHIP, membership),
                (TIME_FLOOR, floor),
            ],
            // Encoding a log id and a membership cannot fail; if it did, the checkpoint
            // would only lack its marks and recovery would replay more of the log.
            _ => Vec::new(),
        };
        CheckpointBuilder {
            store: self.store.clone(),
            accounts: self.accounts.clone(),
            frozen: self
                .store
                .freeze(self.applied.map_or(0, |l| l.index), marks),
            meta: self.meta(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: SnapshotImage = postcard::from_bytes(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), &io::Error::other(e))
        })?;
        // The image replaces everything: what is in memory and what the store holds.
        self.store.clear();
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let marks = [
            (APPLIED, encoded(&self.applied)),
            (MEMBERSHIP, encoded(&self.membership)),
        ];
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = image
            .pairs
            .into_iter()
            // An image from an older node may hold expiry pointers (see the module docs).
            .filter(|(key, _)| !key.starts_with(OLD_EXPIRY_POINTERS))
            .collect();
        for (key, value) in marks {
            let value = value.map_err(|e| StorageIOError::write(&e))?;
            pairs.push((key.to_vec(), value));
        }
        self.store
            .replace_stored(pairs)
            .map_err(|e| StorageIOError::write(&e))?;
        self.directory.forget();
        self.format1_expiries = None;
        self.accounts.clear();
        self.load_settings()
            .and_then(|()| self.load_time_floor())
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TandemRaft>>, StorageError> {
        // At start openraft only wants the last snapshot's meta, and rebuilds it through the
        // builder (a sync, no copy) when the log was purged; an image of the whole state
        // there would cost O(state) at every start.
        if !self.startup_asked {
            self.startup_asked = true;
            return Ok(None);
        }
        if self.applied.is_none() {
            return Ok(None);
        }
        // This runs on the state machine's task, between applies: the image is exactly the
        // state at `applied`.
        let data = self
            .image()
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        Ok(Some(Snapshot {
            meta: self.meta(),
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
