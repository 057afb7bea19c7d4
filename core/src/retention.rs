//! The retention index: an account's forgettable history in the order retention by count
//! forgets it, so that finding the oldest costs what is forgotten, not what is kept.
//!
//! Retention by count (`decide/history.rs` `bound_history`, `docs/domain-model.md` 8.4) forgets the
//! oldest closed lifecycles by `(closed_at, id)` and the oldest outcomes of no open lifecycle
//! by `(at, key)`. Finding them by walking the account costs the whole history, and on a hot
//! account that keeps thousands of holds open (their outcomes pinned) it is most of a
//! decision's time. The index keeps both orders as sorted sets and, per lifecycle, the keys
//! of its outcomes, so that a lifecycle that opens or closes moves exactly its own outcomes in
//! or out of the forgettable set.
//!
//! It also counts the outcomes pinned by open lifecycles, which retention does not count
//! against `OUTCOMES_KEPT_MAX`.
//!
//! It is derived, never stored, and built only for an account that needs it: the first
//! decision that may pass a limit (an account holding more outcomes or closed lifecycles than
//! a limit, pinned ones included) builds it from the state (one walk), and from then on `apply`
//! keeps it in step, event by event. An account that never comes near a limit (nearly all of
//! them) never pays for it, in memory or in time. Decoding, cloning for a read, or comparing accounts ignore it
//! or carry it along; `Account::validate` checks it against the state when it is built.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use rustc_hash::FxHashMap;

use crate::authorization::Authorization;
use crate::ids::{AuthorizationId, IdempotencyKey};
use crate::recorded::RecordedOutcome;
use crate::time::Timestamp;

/// An account's recorded outcomes, as `Account::outcomes` holds them.
pub type Outcomes = FxHashMap<IdempotencyKey, Box<RecordedOutcome>>;

/// An account's lifecycles, as `Account::authorizations` holds them.
pub type Lifecycles = FxHashMap<AuthorizationId, Box<Authorization>>;

/// The index itself (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RetentionIndex {
    /// Outcomes that name no open lifecycle, oldest first.
    pub(crate) forgettable: BTreeSet<(Timestamp, IdempotencyKey)>,
    /// Closed lifecycles, oldest closed first.
    pub(crate) closed: BTreeSet<(Option<Timestamp>, AuthorizationId)>,
    /// The keys of the outcomes that name each lifecycle id.
    keys_of: FxHashMap<AuthorizationId, Vec<IdempotencyKey>>,
    /// Outcomes that name an open lifecycle: pinned, in no set above.
    pinned: usize,
}

/// The account's retention index, once built. Equal to any other (it is derived from the
/// state it sits in), so accounts compare by their state alone; a copy of an account starts
/// without it (a read's copy never needs it, and a copy that decides builds its own).
#[derive(Debug, Default)]
pub struct Retention(OnceLock<Box<RetentionIndex>>);

impl Clone for Retention {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Retention {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Retention {}

impl Retention {
    /// The index of the account whose field this is (its outcomes and lifecycles), built
    /// now if it was not.
    pub(crate) fn get_or_build(
        &self,
        outcomes: &Outcomes,
        lifecycles: &Lifecycles,
    ) -> &RetentionIndex {
        self.0
            .get_or_init(|| Box::new(RetentionIndex::of(outcomes, lifecycles)))
    }

    /// The index, if it is built.
    pub fn built(&self) -> Option<&RetentionIndex> {
        self.0.get().map(|index| &**index)
    }

    pub(crate) fn get_mut(&mut self) -> Option<&mut RetentionIndex> {
        self.0.get_mut().map(|index| &mut **index)
    }
}

impl RetentionIndex {
    /// Built from an account's outcomes and lifecycles: one walk over both.
    pub fn of(outcomes: &Outcomes, lifecycles: &Lifecycles) -> Self {
        crate::scan::scanned(outcomes.len() + lifecycles.len());
        let mut index = Self::default();
        for (key, recorded) in outcomes {
            index.add_outcome(key, recorded, |id| {
                lifecycles.get(id).is_some_and(|a| a.state.is_open())
            });
        }
        for record in lifecycles.values() {
            if !record.state.is_open() {
                index.closed.insert((record.closed_at, record.id.clone()));
            }
        }
        index
    }

    /// Whether two indexes hold the same (the keys of a lifecycle in any order).
    pub fn same_as(&self, other: &Self) -> bool {
        fn sorted(index: &RetentionIndex) -> Vec<(&AuthorizationId, Vec<&IdempotencyKey>)> {
            let mut keys: Vec<(&AuthorizationId, Vec<&IdempotencyKey>)> = index
                .keys_of
                .iter()
                .map(|(id, keys)| {
                    let mut keys: Vec<&IdempotencyKey> = keys.iter().collect();
                    keys.sort();
                    (id, keys)
                })
                .collect();
            keys.sort();
            keys
        }
        self.forgettable == other.forgettable
            && self.closed == other.closed
            && self.pinned == other.pinned
            && sorted(self) == sorted(other)
    }

    /// Forgettable outcomes, oldest first.
    pub fn forgettable(&self) -> impl Iterator<Item = &(Timestamp, IdempotencyKey)> {
        self.forgettable.iter()
    }

    /// Closed lifecycles, oldest closed first.
    pub fn closed(&self) -> impl Iterator<Item = &(Option<Timestamp>, AuthorizationId)> {
        self.closed.iter()
    }

    /// Outcomes of open lifecycles, never forgotten by count.
    pub fn pinned(&self) -> usize {
        self.pinned
    }

    /// How many recorded outcomes name lifecycle `id`.
    pub fn outcomes_of(&self, id: &AuthorizationId) -> usize {
        self.keys_of.get(id).map_or(0, Vec::len)
    }

    fn add_outcome(
        &mut self,
        key: &IdempotencyKey,
        recorded: &RecordedOutcome,
        open: impl Fn(&AuthorizationId) -> bool,
    ) {
        if let Some(id) = &recorded.authorization {
            match self.keys_of.get_mut(id) {
                Some(keys) => keys.push(key.clone()),
                None => {
                    self.keys_of.insert(id.clone(), vec![key.clone()]);
                }
            }
            if open(id) {
                self.pinned += 1;
                return;
            }
        }
        self.forgettable.insert((recorded.at, key.clone()));
    }

    fn remove_outcome(
        &mut self,
        key: &IdempotencyKey,
        recorded: &RecordedOutcome,
        authorizations: &FxHashMap<AuthorizationId, Box<Authorization>>,
    ) {
        if let Some(id) = &recorded.authorization {
            if let Some(keys) = self.keys_of.get_mut(id) {
                if let Some(at) = keys.iter().position(|k| k == key) {
                    keys.swap_remove(at);
                }
                if keys.is_empty() {
                    self.keys_of.remove(id);
                }
            }
            if authorizations.get(id).is_some_and(|a| a.state.is_open()) {
                self.pinned -= 1;
                return;
            }
        }
        self.forgettable.remove(&(recorded.at, key.clone()));
    }

    /// An outcome was recorded under `key` (`outcomes` holds it already), replacing
    /// `replaced` if the key was known.
    pub(crate) fn outcome_recorded(
        &mut self,
        key: &IdempotencyKey,
        replaced: Option<&RecordedOutcome>,
        outcomes: &FxHashMap<IdempotencyKey, Box<RecordedOutcome>>,
        authorizations: &FxHashMap<AuthorizationId, Box<Authorization>>,
    ) {
        if let Some(old) = replaced {
            self.remove_outcome(key, old, authorizations);
        }
        if let Some(recorded) = outcomes.get(key) {
            self.add_outcome(key, recorded, |id| {
                authorizations.get(id).is_some_and(|a| a.state.is_open())
            });
        }
    }

    /// An outcome was forgotten.
    pub(crate) fn outcome_forgotten(
        &mut self,
        key: &IdempotencyKey,
        old: &RecordedOutcome,
        authorizations: &FxHashMap<AuthorizationId, Box<Authorization>>,
    ) {
        self.remove_outcome(key, old, authorizations);
    }

    /// Lifecycle `record` was written over `previous` (none if it is new): its place among the
    /// closed moves, and if it opened or closed, its outcomes leave or join the forgettable.
    pub(crate) fn lifecycle_written(
        &mut self,
        record: &Authorization,
        previous: Option<&Authorization>,
        outcomes: &FxHashMap<IdempotencyKey, Box<RecordedOutcome>>,
    ) {
        let was_open = previous.is_some_and(|old| old.state.is_open());
        let now_open = record.state.is_open();
        if let Some(old) = previous
            && !was_open
        {
            self.closed.remove(&(old.closed_at, old.id.clone()));
        }
        if !now_open {
            self.closed.insert((record.closed_at, record.id.clone()));
        }
        if was_open == now_open {
            return;
        }
        let Some(keys) = self.keys_of.get(&record.id) else {
            return;
        };
        for key in keys {
            if let Some(recorded) = outcomes.get(key) {
                let entry = (recorded.at, key.clone());
                if now_open {
                    self.forgettable.remove(&entry);
                    self.pinned += 1;
                } else {
                    self.forgettable.insert(entry);
                    self.pinned -= 1;
                }
            }
        }
    }

    /// A closed lifecycle was forgotten.
    pub(crate) fn lifecycle_forgotten(&mut self, old: &Authorization) {
        self.closed.remove(&(old.closed_at, old.id.clone()));
    }
}
