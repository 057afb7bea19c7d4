//! Live balance streams (gRPC `WatchBalance`, HTTP Server-Sent Events), as an operation: the
//! current committed state first, then every committed change with its cause. A reader that
//! falls behind the change buffer gets the latest state instead of the changes it missed
//! (states, not deltas, so nothing is lost by skipping); sequence numbers only ever increase
//! on one stream. Each gateway renders the updates in its own wire (`edge::v1`).

use std::sync::Arc;

use futures_util::Stream;
use tandem_core::{AccountId, BalanceSnapshot};
use tokio::sync::broadcast::error::RecvError;

use super::OpError;
use crate::app::App;
use crate::keys::Principal;
use crate::names::snake;

/// One update of a balance stream: the account's committed state after a change, and what
/// caused it (the money movements' causes, comma-separated; empty for the first state and
/// for changes that moved no money; `resync` after the reader fell behind).
#[derive(Debug, Clone)]
pub struct BalanceUpdate {
    pub snapshot: Arc<BalanceSnapshot>,
    pub cause: String,
}

impl App {
    /// The balance stream of `account` for a caller that may read it, starting after the
    /// update numbered `seen` (a resuming reader's last) or with the current state.
    pub async fn watch_balance(
        &self,
        principal: &Principal,
        account: AccountId,
        seen: Option<u64>,
    ) -> Result<impl Stream<Item = BalanceUpdate> + Send + 'static, OpError> {
        self.may_read(principal, &account)?;
        let system = self.system()?;
        let (mut current, mut receiver) = system.watch(&account).await?;
        // A lagging member asks the leader before it says an account does not exist.
        if current.status == tandem_core::AccountStatus::Unopened && self.caught_up().await? {
            (current, receiver) = system.watch(&account).await?;
        }
        if current.status == tandem_core::AccountStatus::Unopened {
            return Err(OpError::not_found(format!("no account {account}")));
        }
        let system = system.clone();
        let first = (seen.is_none_or(|s| current.seq > s)).then(|| BalanceUpdate {
            snapshot: current,
            cause: String::new(),
        });
        let last = seen
            .unwrap_or(0)
            .max(first.as_ref().map_or(0, |f| f.snapshot.seq));
        metrics::gauge!("tandem_watchers").increment(1.0);
        let watch = Watch {
            first,
            receiver: Some(receiver),
            last,
            system,
            account,
        };
        Ok(futures_util::stream::unfold(
            watch,
            |mut watch| async move {
                if let Some(first) = watch.first.take() {
                    return Some((first, watch));
                }
                loop {
                    let receiver = watch.receiver.as_mut()?;
                    let next = match receiver.recv().await {
                        Ok(change) => BalanceUpdate {
                            cause: change
                                .causes
                                .iter()
                                .map(snake)
                                .collect::<Vec<_>>()
                                .join(","),
                            snapshot: change.snapshot,
                        },
                        Err(RecvError::Lagged(_)) => {
                            match watch.system.snapshot(&watch.account).await {
                                Ok(snapshot) => BalanceUpdate {
                                    snapshot,
                                    cause: "resync".to_owned(),
                                },
                                Err(_) => return None,
                            }
                        }
                        Err(RecvError::Closed) => return None,
                    };
                    if next.snapshot.seq > watch.last {
                        watch.last = next.snapshot.seq;
                        return Some((next, watch));
                    }
                }
            },
        ))
    }
}

/// One watcher's stream state. When it goes, its receiver goes first, so the account's view
/// can go with its last watcher when no actor holds the account.
struct Watch {
    first: Option<BalanceUpdate>,
    receiver: Option<tokio::sync::broadcast::Receiver<tandem_actors::Change>>,
    last: u64,
    system: Arc<tandem_actors::AccountSystem>,
    account: AccountId,
}

impl Drop for Watch {
    fn drop(&mut self) {
        metrics::gauge!("tandem_watchers").decrement(1.0);
        drop(self.receiver.take());
        self.system.unwatched(&self.account);
    }
}
