//! The checkpoint timer: a checkpoint every `every` or every `every_entries` log entries,
//! whichever comes first, none while a snapshot is being sent, and accounts at rest let go
//! of on an idle node.

use super::*;

use crate::snapshot::SnapshotSends;

/// How often checkpoints are written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cadence {
    pub(super) every: Duration,
    pub(super) every_entries: u64,
}

/// What the timer does at one tick.
#[derive(Debug, PartialEq, Eq)]
enum Tick {
    /// Ask openraft for a checkpoint.
    Checkpoint,
    /// Nothing applied since the last checkpoint: let accounts at rest go.
    Evict,
    Wait,
}

/// The rule, apart from the clock and openraft: `behind` entries applied past the last
/// checkpoint, `since` the last time the timer acted, `sending` snapshots held.
///
/// While a snapshot is being sent no checkpoint is asked for: openraft purges the log after
/// each checkpoint, and a purge past the snapshot's index would leave the follower it is
/// for without the entries that follow it, to be sent another snapshot.
fn tick(cadence: Cadence, behind: u64, since: Duration, sending: usize) -> Tick {
    if sending > 0 {
        Tick::Wait
    } else if behind == 0 {
        if since >= cadence.every {
            Tick::Evict
        } else {
            Tick::Wait
        }
    } else if behind >= cadence.every_entries || since >= cadence.every {
        Tick::Checkpoint
    } else {
        Tick::Wait
    }
}

/// Asks openraft for a checkpoint on the [`Cadence`] (openraft skips it while one is being
/// written), looking every tenth of `every` at most.
///
/// With nothing applied since the last checkpoint there is nothing to write, but accounts at
/// rest still leave memory on the same rule a checkpoint applies (untouched since the last
/// tick, last change in the durable checkpoint, which then holds everything applied): an idle
/// node does not keep every account its last burst of traffic brought in.
pub(super) async fn checkpoint_timer(
    raft: Raft<TandemRaft>,
    cadence: Cadence,
    accounts: Arc<Accounts>,
    sends: SnapshotSends,
) {
    let look = (cadence.every / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let mut ticks = tokio::time::interval(look);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last = tokio::time::Instant::now();
    loop {
        ticks.tick().await;
        let (applied, checkpointed) = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            (metrics.last_applied, metrics.snapshot)
        };
        let behind = applied
            .map_or(0, |a| a.index)
            .saturating_sub(checkpointed.map_or(0, |c| c.index));
        let behind = if applied == checkpointed {
            0
        } else {
            behind.max(1)
        };
        let sending = sends.in_flight();
        metrics::gauge!("tandem_snapshot_sends").set(sending as f64);
        match tick(cadence, behind, last.elapsed(), sending) {
            Tick::Wait => continue,
            Tick::Evict => {
                last = tokio::time::Instant::now();
                if let Some(checkpointed) = checkpointed
                    && accounts.resting() > 0
                {
                    let accounts = accounts.clone();
                    let evicting = tokio::task::spawn_blocking(move || {
                        accounts.evict_clean(checkpointed.index)
                    });
                    if evicting.await.is_err() {
                        return;
                    }
                }
            }
            Tick::Checkpoint => {
                last = tokio::time::Instant::now();
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_come_by_time_or_entries_and_wait_while_a_snapshot_is_sent() {
        let cadence = Cadence {
            every: Duration::from_secs(1),
            every_entries: 100,
        };
        let (soon, late) = (Duration::from_millis(10), Duration::from_secs(2));
        assert_eq!(tick(cadence, 5, soon, 0), Tick::Wait);
        assert_eq!(tick(cadence, 5, late, 0), Tick::Checkpoint);
        assert_eq!(tick(cadence, 100, soon, 0), Tick::Checkpoint);
        assert_eq!(tick(cadence, 0, soon, 0), Tick::Wait);
        assert_eq!(tick(cadence, 0, late, 0), Tick::Evict);
        // A snapshot being sent holds every checkpoint, however far behind.
        assert_eq!(tick(cadence, 100_000, late, 1), Tick::Wait);
        assert_eq!(tick(cadence, 0, late, 2), Tick::Wait);
    }
}
