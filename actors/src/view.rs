//! The published side of an account: its latest committed balance snapshot, read without
//! locking, and the stream of its changes that watchers receive.

use std::sync::Arc;
use tandem_core::{BalanceSnapshot, Cause};
use tokio::sync::broadcast;

use crate::cell::SnapshotCell;

/// A change to an account, as watchers receive it.
#[derive(Debug, Clone)]
pub struct Change {
    pub snapshot: Arc<BalanceSnapshot>,
    /// The causes of the money movements in this change (empty for other changes).
    pub causes: Vec<Cause>,
}

/// The published side of an account: its latest committed snapshot and its change stream.
pub struct AccountView {
    pub snapshot: SnapshotCell<BalanceSnapshot>,
    /// Created by the first watcher: most accounts are never watched, and a channel
    /// pre-allocates its whole buffer.
    pub changes: std::sync::OnceLock<broadcast::Sender<Change>>,
}

impl AccountView {
    /// A view holding `snapshot`, with no change stream yet.
    pub(crate) fn new(snapshot: BalanceSnapshot) -> Arc<Self> {
        Arc::new(Self {
            snapshot: SnapshotCell::new(snapshot),
            changes: std::sync::OnceLock::new(),
        })
    }
}
