//! Retention: keeps an account's history within its limits by count, in the decision that
//! passes them (`Event::Forgotten`); the index it reads is `crate::retention`.

use super::*;
use crate::scan::scanned;

/// Keeps an account's history within its limits by count (`limits.rs`): when this
/// decision's events would leave more closed lifecycles, forgettable recorded outcomes or
/// tombstones than an account keeps, the oldest go in the same decision (`Event::Forgotten`,
/// last), down to an eighth below the limit and at most `SWEEP_ITEMS_MAX` of each kind.
/// Nothing this decision touches is a candidate, nor an outcome of an open lifecycle (those
/// are pinned and not counted against the limit). Oldest is by `(closed_at, id)`, `(at, key)`
/// and `(at, id)`, so the choice is the same on every replay and replica. A sweep forgets by
/// time and is left alone.
///
/// Cost: the counts it compares are kept by `apply` (`open_holds`, and in the retention index
/// the outcomes pinned by open lifecycles), so a decision that stays within the limits reads
/// only its own events; one that passes a limit takes the oldest from the retention index
/// (`retention.rs`), walking what it forgets and what it skips. An account holding fewer
/// outcomes and closed lifecycles than the limits, pinned ones included, never builds the
/// index. Per decision that is O(log n) whatever the account keeps open.
pub(super) fn bound_history(state: &Account, events: &mut Vec<Event>) {
    // The common case, on every decision, is one pass over the events and no allocation:
    // even if every lifecycle, outcome and tombstone they carry were new and forgettable,
    // and every lifecycle they close released all of its outcomes, the account stays within
    // its limits.
    let built = state.retention.built();
    let (mut records, mut recorded_at_most, mut tombstoned_at_most) = (0, 0, 0);
    for event in events.iter() {
        match event {
            Event::Movement(movement) => {
                if let Some(record) = &movement.authorization {
                    records += 1;
                    // Closing a lifecycle releases its pinned outcomes (counted in
                    // `outcomes.len()` already when the index is not built).
                    if !record.state.is_open()
                        && let Some(index) = built
                    {
                        recorded_at_most += index.outcomes_of(&record.id);
                    }
                }
            }
            Event::OutcomeRecorded(_) => recorded_at_most += 1,
            Event::Tombstoned { .. } => tombstoned_at_most += 1,
            Event::Forgotten { .. } => return,
            _ => {}
        }
    }
    let unpinned_before = state.outcomes.len() - built.map_or(0, |index| index.pinned());
    let lifecycles_within =
        state.authorizations.len() - state.open_holds + records <= CLOSED_LIFECYCLES_KEPT_MAX;
    let outcomes_within = unpinned_before + recorded_at_most <= OUTCOMES_KEPT_MAX;
    if lifecycles_within
        && outcomes_within
        && state.tombstones.len() + tombstoned_at_most <= TOMBSTONES_KEPT_MAX
    {
        return;
    }
    // What this decision's events do to each count, exactly.
    let mut touched: rustc_hash::FxHashMap<&AuthorizationId, bool> = Default::default();
    let mut recorded: Vec<(&IdempotencyKey, Option<&AuthorizationId>)> = Vec::new();
    let mut tombstoned: Vec<&AuthorizationId> = Vec::new();
    for event in events.iter() {
        match event {
            Event::Movement(movement) => {
                if let Some(record) = &movement.authorization {
                    touched.insert(&record.id, record.state.is_open());
                }
            }
            Event::OutcomeRecorded(record) => {
                recorded.push((&record.key, record.authorization.as_ref()));
            }
            Event::Tombstoned { authorization, .. } => tombstoned.push(authorization),
            _ => {}
        }
    }
    // The last record of a key is the one that stays.
    recorded.reverse();
    recorded.sort_by(|a, b| a.0.cmp(b.0));
    recorded.dedup_by(|a, b| a.0 == b.0);
    tombstoned.sort_unstable();
    tombstoned.dedup();
    let new_tombstones = tombstoned
        .iter()
        .filter(|id| !state.tombstones.contains_key(**id))
        .count();
    let closed_before = state.authorizations.len() - state.open_holds;
    let closed_after = touched.iter().fold(closed_before, |count, (id, open)| {
        let was_closed = state
            .authorizations
            .get(*id)
            .is_some_and(|a| !a.state.is_open());
        count + usize::from(!*open) - usize::from(was_closed)
    });
    let open = |id: &AuthorizationId| {
        touched
            .get(id)
            .copied()
            .unwrap_or_else(|| state.is_open_lifecycle(id))
    };
    // Closed lifecycles and forgettable outcomes come oldest first from the retention index
    // (built here the first time; `apply` keeps it): finding them costs what is forgotten.
    let index = (!(lifecycles_within && outcomes_within)).then(|| {
        state
            .retention
            .get_or_build(&state.outcomes, &state.authorizations)
    });
    let authorizations = index.map_or_else(Vec::new, |index| {
        oldest_in_order(
            closed_after,
            CLOSED_LIFECYCLES_KEPT_MAX,
            index.closed().map(|(_, id)| id),
            |id| !touched.contains_key(id),
        )
    });
    let outcomes = index.map_or_else(Vec::new, |index| {
        // Forgettable outcomes after this decision: the lifecycles it opens or closes pin or
        // release theirs, and each outcome it records replaces any under the same key.
        let mut unpinned_after = touched.iter().fold(
            state.outcomes.len() - index.pinned(),
            |count, (id, now_open)| {
                let outcomes = index.outcomes_of(id);
                match (state.is_open_lifecycle(id), *now_open) {
                    (true, false) => count + outcomes,
                    (false, true) => count - outcomes,
                    _ => count,
                }
            },
        );
        for (key, lifecycle) in &recorded {
            if let Some(old) = state.outcomes.get(*key)
                && !old.authorization.as_ref().is_some_and(open)
            {
                unpinned_after -= 1;
            }
            if !lifecycle.is_some_and(open) {
                unpinned_after += 1;
            }
        }
        oldest_in_order(
            unpinned_after,
            OUTCOMES_KEPT_MAX,
            index.forgettable().map(|(_, key)| key),
            |key| {
                recorded.binary_search_by(|(k, _)| k.cmp(&key)).is_err()
                    && !state
                        .outcomes
                        .get(key)
                        .and_then(|r| r.authorization.as_ref())
                        .is_some_and(|id| touched.contains_key(id))
            },
        )
    });
    let tombstones = oldest(
        state.tombstones.len() + new_tombstones,
        TOMBSTONES_KEPT_MAX,
        state.tombstones.len(),
        state
            .tombstones
            .iter()
            .filter(|(id, _)| !touched.contains_key(id) && tombstoned.binary_search(id).is_err())
            .map(|(id, at)| (*at, id)),
    );
    if !(authorizations.is_empty() && outcomes.is_empty() && tombstones.is_empty()) {
        events.push(Event::Forgotten {
            outcomes,
            authorizations,
            tombstones,
        });
    }
}

/// The first of `in_order` (oldest first) that `candidate` accepts, as many as bring `count`
/// items down to `kept_after_trim(max)` when `count` is over `max` (at most
/// `SWEEP_ITEMS_MAX`); none otherwise. Sorted by id.
pub(super) fn oldest_in_order<'s, K: Ord + Clone + 's>(
    count: usize,
    max: usize,
    in_order: impl Iterator<Item = &'s K>,
    mut candidate: impl FnMut(&K) -> bool,
) -> Vec<K> {
    if count <= max {
        return Vec::new();
    }
    let wanted = (count - kept_after_trim(max)).min(SWEEP_ITEMS_MAX);
    let mut walked = 0;
    let mut ids: Vec<K> = in_order
        .inspect(|_| walked += 1)
        .filter(|id| candidate(id))
        .take(wanted)
        .cloned()
        .collect();
    scanned(walked);
    ids.sort_unstable();
    ids
}

/// The ids of the oldest `candidates` (by age, then id) to forget so that `count` items come
/// down to `kept_after_trim(max)`, when `count` is over `max`; none otherwise. Sorted by id.
/// `walked` is how many items the candidates are filtered from (what finding them costs).
pub(super) fn oldest<'s, A: Ord, K: Ord + Clone + 's>(
    count: usize,
    max: usize,
    walked: usize,
    candidates: impl Iterator<Item = (A, &'s K)>,
) -> Vec<K> {
    if count <= max {
        return Vec::new();
    }
    scanned(walked);
    let wanted = (count - kept_after_trim(max)).min(SWEEP_ITEMS_MAX);
    let mut candidates: Vec<(A, &K)> = candidates.collect();
    if candidates.len() > wanted {
        candidates.select_nth_unstable(wanted);
        candidates.truncate(wanted);
    }
    let mut ids: Vec<K> = candidates.into_iter().map(|(_, id)| id.clone()).collect();
    ids.sort_unstable();
    ids
}
