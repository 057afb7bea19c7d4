//! The checkpoint timer: a checkpoint every `checkpoint_every`, and accounts at rest let go
//! of on an idle node.

use super::*;

/// Asks openraft for a checkpoint every `every` (openraft skips it while one is being
/// written). The entry count policy asks too, whichever comes first.
///
/// With nothing applied since the last checkpoint there is nothing to write, but accounts at
/// rest still leave memory on the same rule a checkpoint applies (untouched since the last
/// tick, last change in the durable checkpoint, which then holds everything applied): an idle
/// node does not keep every account its last burst of traffic brought in.
pub(super) async fn checkpoint_timer(
    raft: Raft<TandemRaft>,
    every: Duration,
    accounts: Arc<Accounts>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let last_applied = raft.metrics().borrow().last_applied;
        let checkpointed = raft.metrics().borrow().snapshot;
        if last_applied == checkpointed {
            if let Some(checkpointed) = checkpointed
                && accounts.resting() > 0
            {
                let accounts = accounts.clone();
                let evicting =
                    tokio::task::spawn_blocking(move || accounts.evict_clean(checkpointed.index));
                if evicting.await.is_err() {
                    return;
                }
            }
            continue;
        }
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
    }
}
