//! What the shard actors and the account system share ([`Shared`]): the engine, the config,
//! the FX rates, the admission count and the published views. Below the actors and the
//! system, so neither reaches into the other for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tandem_core::{AccountId, BalanceSnapshot, RateTable, Timestamp};
use tandem_storage::{Derived, Engine};

use crate::config::SystemConfig;
use crate::leadership::Gate;
use crate::view::AccountView;

/// What actors and the system share.
pub struct Shared {
    pub(crate) engine: Engine,
    pub(crate) config: SystemConfig,
    /// The FX rates decisions use: the committed `fx-rates` setting, else the node's
    /// configured base alone (see `AccountSystem::start`).
    pub(crate) rates: Derived<RateTable>,
    pub(crate) admitted: AtomicUsize,
    pub(crate) views: RwLock<HashMap<AccountId, Arc<AccountView>>>,
    /// Whether actors may decide: this node leads, from its committed state.
    pub(crate) gate: Gate,
}

/// The time a decision is made at: the clock, but never before the latest committed entry
/// (`time_floor`), so a leader whose clock runs behind its predecessor's cannot reopen an
/// expired window or a spent limit's period.
pub(crate) fn decision_time(clock: Timestamp, time_floor: i64) -> Timestamp {
    Timestamp::from_millis(clock.millis().max(time_floor))
}

impl Shared {
    /// Now, for a decision (see [`decision_time`]).
    pub(crate) fn now(&self) -> Timestamp {
        decision_time(Timestamp::now(), self.engine.reader().time_floor())
    }

    pub(crate) fn release_admission(&self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }

    /// The account's published view, created with `initial` if it has none.
    pub(crate) fn view(&self, account: &AccountId, initial: BalanceSnapshot) -> Arc<AccountView> {
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        let view = views
            .entry(account.clone())
            .or_insert_with(|| AccountView::new(initial.clone()));
        view.snapshot.publish(Arc::new(initial));
        view.clone()
    }

    /// The account's view for a watcher: the existing one, else a new one holding `current`.
    pub(crate) fn watched_view(
        &self,
        account: &AccountId,
        current: Arc<BalanceSnapshot>,
    ) -> Arc<AccountView> {
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        views
            .entry(account.clone())
            .or_insert_with(|| AccountView::new((*current).clone()))
            .clone()
    }

    /// Whether `account` has a view somebody watches.
    pub(crate) fn is_watched(&self, account: &AccountId) -> bool {
        self.views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .is_some_and(|v| v.changes.get().is_some_and(|c| c.receiver_count() > 0))
    }

    pub(crate) fn forget_view(&self, account: &AccountId) {
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        // Keep it while someone watches, so a watcher survives passivation.
        if views
            .get(account)
            .is_some_and(|v| v.changes.get().is_none_or(|c| c.receiver_count() == 0))
        {
            views.remove(account);
        }
    }
}

/// Publishes committed changes of accounts no actor holds to their watchers: on a follower
/// (which runs no actors) every watcher is served this way, from the records it applies.
pub(crate) struct AppliedToViews(pub(crate) std::sync::Weak<Shared>);

impl tandem_storage::AppliedWatch for AppliedToViews {
    fn watched(&self, account: &AccountId) -> bool {
        self.0
            .upgrade()
            .is_some_and(|shared| shared.is_watched(account))
    }

    fn applied(&self, account: &tandem_core::Account, causes: Vec<tandem_core::Cause>) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let view = shared
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account.id)
            .cloned();
        if let Some(view) = view {
            let snapshot = Arc::new(BalanceSnapshot::of(account, Timestamp::now()));
            view.snapshot.publish(snapshot.clone());
            if let Some(changes) = view.changes.get() {
                let _ = changes.send(crate::view::Change { snapshot, causes });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_never_made_before_the_latest_committed_entry() {
        let clock = Timestamp::from_millis(1_000);
        assert_eq!(decision_time(clock, 0), clock, "no floor yet: the clock");
        assert_eq!(
            decision_time(clock, 900),
            clock,
            "a clock ahead of the floor"
        );
        assert_eq!(
            decision_time(clock, 5_000),
            Timestamp::from_millis(5_000),
            "a clock behind the last committed entry: the entry's time"
        );
    }
}
