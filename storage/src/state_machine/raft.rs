//! The openraft seam: the state machine trait, the checkpoint builder (a snapshot is the
//! checkpoint at one log index, `snapshot.rs` its data).

use super::*;
use crate::snapshot::SnapshotData;

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
            // openraft keeps only the meta; a snapshot's data is read when one is asked for.
            snapshot: Box::new(SnapshotData::empty()),
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
        let delay = self.faults.apply_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        SnapshotData::spool_in(&self.spool_dir)
            .map(Box::new)
            .map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let failed = |e: &io::Error| StorageIOError::read_snapshot(Some(meta.signature()), e);
        let marks = [
            (APPLIED, encoded(&meta.last_log_id)),
            (MEMBERSHIP, encoded(&meta.last_membership)),
        ]
        .into_iter()
        .map(|(key, value)| value.map(|value| (key.to_vec(), value)))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| failed(&e))?;
        // The store is replaced whole, from the stream, on a blocking thread; memory with it.
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let records = snapshot.records()?.filter(|pair| {
                !pair.as_ref().is_ok_and(|(key, _)| {
                    // An image from an older node may hold expiry pointers (module docs);
                    // the marks are the meta's.
                    key.starts_with(OLD_EXPIRY_POINTERS)
                        || key.as_slice() == APPLIED
                        || key.as_slice() == MEMBERSHIP
                })
            });
            store.install(records.chain(marks.into_iter().map(Ok)))
        })
        .await
        .map_err(io::Error::other)
        .and_then(|written| written)
        .map_err(|e| {
            tracing::error!(error = %e, index = ?meta.last_log_id, "installing a snapshot failed");
            failed(&e)
        })?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.directory.forget();
        self.format1_expiries = None;
        self.accounts.clear();
        self.load_settings()
            .and_then(|()| self.load_time_floor())
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        tracing::info!(
            index = ?meta.last_log_id,
            keys = written,
            ms = started.elapsed().as_millis(),
            dir = %self.store.dir().display(),
            "snapshot installed into a fresh checkpoint directory"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TandemRaft>>, StorageError> {
        // At start openraft only wants the last snapshot's meta, and rebuilds it through the
        // builder (a sync, no copy) when the log was purged; reading the state there would
        // cost O(state) at every start.
        if !self.startup_asked {
            self.startup_asked = true;
            return Ok(None);
        }
        if self.applied.is_none() {
            return Ok(None);
        }
        // On the state machine's task, between applies: what is applied is frozen at
        // `applied`. When the stream is first read (off this task, so applies go on), a
        // checkpoint writes it to the store, which is pinned right after: exactly the state
        // at `applied`, read as it is sent while the store goes on. Checkpoints wait while
        // it is held (`SnapshotSends`), so the log is not purged past it.
        let hold = self.sends.hold();
        let builder = self.get_snapshot_builder().await;
        Ok(Some(Snapshot {
            meta: builder.meta,
            snapshot: Box::new(SnapshotData::frozen(
                self.store.clone(),
                builder.frozen,
                hold,
            )),
        }))
    }
}
