//! Live balance streams (gRPC `WatchBalance`, HTTP Server-Sent Events): the current committed
//! state first, then every committed change with its cause. A reader that falls behind the
//! change buffer gets the latest state instead of the changes it missed (states, not deltas,
//! so nothing is lost by skipping); sequence numbers only ever increase on one stream.

use futures_util::Stream;
use tandem_proto::v1 as pb;
use tokio::sync::broadcast::error::RecvError;

use crate::app::App;
use crate::keys::Principal;
use crate::names::snake;
use crate::ops::OpError;

pub async fn changes(
    app: &App,
    principal: &Principal,
    account_id: &str,
    seen: Option<u64>,
) -> Result<impl Stream<Item = pb::BalanceSnapshot> + Send + 'static, OpError> {
    let account = crate::edge::v1::reader_account(app, principal, account_id)?;
    let (current, receiver) = app.system()?.watch(&account).await?;
    if current.status == tandem_core::AccountStatus::Unopened {
        return Err(OpError::not_found(format!("no account {account}")));
    }
    let system = app.system()?.clone();
    let first = (seen.is_none_or(|s| current.seq > s))
        .then(|| crate::edge::v1::snapshot(&current, String::new()));
    let last = seen.unwrap_or(0).max(first.as_ref().map_or(0, |f| f.seq));
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
                    Ok(change) => {
                        let causes: Vec<String> = change.causes.iter().map(snake).collect();
                        crate::edge::v1::snapshot(&change.snapshot, causes.join(","))
                    }
                    Err(RecvError::Lagged(_)) => {
                        match watch.system.snapshot(&watch.account).await {
                            Ok(snapshot) => {
                                crate::edge::v1::snapshot(&snapshot, "resync".to_owned())
                            }
                            Err(_) => return None,
                        }
                    }
                    Err(RecvError::Closed) => return None,
                };
                if next.seq > watch.last {
                    watch.last = next.seq;
                    return Some((next, watch));
                }
            }
        },
    ))
}

/// One watcher's stream state. When it goes, its receiver goes first, so the account's view
/// can go with its last watcher when no actor holds the account.
struct Watch {
    first: Option<pb::BalanceSnapshot>,
    receiver: Option<tokio::sync::broadcast::Receiver<tandem_actors::Change>>,
    last: u64,
    system: std::sync::Arc<tandem_actors::AccountSystem>,
    account: tandem_core::AccountId,
}

impl Drop for Watch {
    fn drop(&mut self) {
        metrics::gauge!("tandem_watchers").decrement(1.0);
        drop(self.receiver.take());
        self.system.unwatched(&self.account);
    }
}
