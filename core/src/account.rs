//! The state of one shared account, and the invariants it must always satisfy
//! ([`Account::validate`]).

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::kinds::{AccountKind, AccountStatus, Balance};
pub use crate::recorded::RecordedOutcome;
pub use crate::small_map::{SmallMap, fitted_entry, fitted_insert};

use crate::authorization::Authorization;
use crate::card::Card;
use crate::currency::Currency;
use crate::funding::FundingPolicy;
use crate::ids::{AccountId, AuthorizationId, CardId, IdempotencyKey, MemberId};
use crate::member::Member;
use crate::outcome::BalanceView;
use crate::split::{SplitRule, Transfer, settle_up};
use crate::time::Timestamp;

/// One account's whole committed state (members, cards, balances, lifecycles, retained
/// history): what `decide` reads and `apply` changes; its invariants are `Account::validate`.
/// The other account types are views of it: `BalanceSnapshot` (what readers see),
/// `tandem_actors`' `AccountState` (the resident copy) and `AccountView` (its published side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub kind: AccountKind,
    pub status: AccountStatus,
    pub opened_at: Option<Timestamp>,
    pub balances: SmallMap<Currency, Balance>,
    pub members: SmallMap<MemberId, Member>,
    /// Each member's net position per currency (paid in minus their share of spending).
    /// Former members stay here at zero.
    pub positions: SmallMap<MemberId, SmallMap<Currency, i64>>,
    /// Outstanding overdrafts per currency, attributed to the members whose spending the
    /// network pushed through. Cleared when the balance is back to zero or above.
    pub overdrafts: SmallMap<Currency, SmallMap<MemberId, i64>>,
    pub cards: SmallMap<CardId, Card>,
    pub split_rule: SplitRule,
    pub funding_policy: FundingPolicy,
    /// Open lifecycles, and closed ones still within retention.
    pub authorizations: FxHashMap<AuthorizationId, Box<Authorization>>,
    /// Boxed: a hash table keeps about a third of its slots empty, and an inline slot is the
    /// size of a whole recorded answer (about 250 bytes).
    pub outcomes: FxHashMap<IdempotencyKey, Box<RecordedOutcome>>,
    pub tombstones: FxHashMap<AuthorizationId, Timestamp>,
    /// Other keys of lifecycles (`Event::Referenced`): reference → lifecycle, each naming a
    /// lifecycle in `authorizations`. Not in serde's encoding: storage format 2 writes it
    /// beside the account, so a format-1 snapshot still decodes (to none).
    #[serde(skip)]
    pub references: FxHashMap<AuthorizationId, AuthorizationId>,
    /// Open lifecycles (kept in step by `apply`, checked by `validate`).
    pub open_holds: usize,
    /// Expiry times of open card holds (kept in step by `apply`, checked by `validate`), so
    /// the earliest is found without scanning every lifecycle.
    #[serde(default)]
    pub open_expiries: std::collections::BTreeSet<(Timestamp, AuthorizationId)>,
    /// Events applied so far.
    pub seq: u64,
    /// The forgettable history in the order retention forgets it, and how many outcomes are
    /// pinned by open lifecycles (derived, never stored: built by the first decision that may
    /// pass a count limit, then kept in step by `apply`; `retention.rs`).
    #[serde(skip)]
    pub retention: crate::retention::Retention,
}

/// A broken invariant: a bug, never a business outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant broken: {0}")]
pub struct InvariantViolation(pub String);

impl Account {
    pub fn new(id: AccountId) -> Self {
        Self {
            id,
            kind: AccountKind::Joint,
            status: AccountStatus::Unopened,
            opened_at: None,
            balances: SmallMap::new(),
            members: SmallMap::new(),
            positions: SmallMap::new(),
            overdrafts: SmallMap::new(),
            cards: SmallMap::new(),
            split_rule: SplitRule::default(),
            funding_policy: FundingPolicy::default(),
            authorizations: FxHashMap::default(),
            outcomes: FxHashMap::default(),
            tombstones: FxHashMap::default(),
            references: FxHashMap::default(),
            open_holds: 0,
            open_expiries: std::collections::BTreeSet::new(),
            seq: 0,
            retention: Default::default(),
        }
    }

    /// Whether `id` names an open lifecycle of this account.
    pub fn is_open_lifecycle(&self, id: &AuthorizationId) -> bool {
        self.authorizations
            .get(id)
            .is_some_and(|a| a.state.is_open())
    }

    /// Recorded outcomes of open lifecycles: pinned, never forgotten by count. Known from the
    /// retention index once it is built; counted (a walk, for tests and tools) before.
    pub fn pinned_outcomes(&self) -> usize {
        match self.retention.built() {
            Some(index) => index.pinned(),
            None => self
                .outcomes
                .values()
                .filter(|r| {
                    r.authorization
                        .as_ref()
                        .is_some_and(|id| self.is_open_lifecycle(id))
                })
                .count(),
        }
    }

    /// Recorded outcomes that may be forgotten by count: those of no open lifecycle.
    pub fn unpinned_outcomes(&self) -> usize {
        self.outcomes.len() - self.pinned_outcomes()
    }

    pub fn balance(&self, currency: Currency) -> Balance {
        self.balances.get(&currency).copied().unwrap_or_default()
    }

    pub fn balance_view(&self, currency: Currency) -> BalanceView {
        let balance = self.balance(currency);
        BalanceView {
            currency,
            ledger_minor: balance.ledger_minor,
            held_minor: balance.held_minor,
            available_minor: balance.available_minor(),
        }
    }

    pub fn balance_views(&self) -> Vec<BalanceView> {
        self.balances
            .keys()
            .map(|&c| self.balance_view(c))
            .collect()
    }

    pub fn is_overdrawn(&self) -> bool {
        self.balances.values().any(|b| b.available_minor() < 0)
    }

    pub fn position(&self, member: &MemberId, currency: Currency) -> i64 {
        self.positions
            .get(member)
            .and_then(|p| p.get(&currency))
            .copied()
            .unwrap_or(0)
    }

    /// Settle-up transfers per currency (see `split::settle_up`).
    pub fn settle_up(&self) -> Vec<Transfer> {
        let mut currencies: Vec<Currency> = self
            .positions
            .values()
            .flat_map(|p| p.keys().copied())
            .collect();
        currencies.sort();
        currencies.dedup();
        currencies
            .into_iter()
            .flat_map(|currency| {
                let positions: Vec<(MemberId, i64)> = self
                    .positions
                    .iter()
                    .map(|(m, p)| (m.clone(), p.get(&currency).copied().unwrap_or(0)))
                    .collect();
                settle_up(currency, &positions)
            })
            .collect()
    }

    /// The earliest time an open card hold expires, for the expiry sweeper. Withdrawals do not
    /// expire: the payout they stand for may already have left.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.open_expiries.first().map(|(at, _)| *at)
    }

    /// Checks every invariant from DESIGN.md that can be seen in one state. Tests call this
    /// after every step; the actor can call it in debug builds.
    pub fn validate(&self) -> Result<(), InvariantViolation> {
        let fail = |text: String| Err(InvariantViolation(text));
        // held == Σ open holds, per currency; legs only on open lifecycles.
        let mut held: BTreeMap<Currency, i64> = BTreeMap::new();
        let mut open = 0;
        for record in self.authorizations.values() {
            if record.state.is_open() {
                open += 1;
            } else if !record.legs.is_empty() {
                return fail(format!(
                    "closed lifecycle {} still holds {:?}",
                    record.id, record.legs
                ));
            }
            for leg in &record.legs {
                if leg.amount_minor < 0 || leg.covers_minor < 0 {
                    return fail(format!("negative leg on {}: {leg:?}", record.id));
                }
                *held.entry(leg.currency).or_default() += leg.amount_minor;
                if !leg.covers_at_its_rate(record.spend_currency()) {
                    return fail(format!(
                        "leg on {} under-holds its part: {leg:?}",
                        record.id
                    ));
                }
            }
            if record.residual_minor()
                > record.authorized_minor.max(0) + record.cleared_minor.max(0)
                && !record.network_decided
            {
                return fail(format!("{} holds more than it authorized", record.id));
            }
            if record.credited_minor > record.cleared_minor {
                return fail(format!("{} credited more than it cleared", record.id));
            }
        }
        let expiries: std::collections::BTreeSet<(Timestamp, AuthorizationId)> = self
            .authorizations
            .values()
            .filter(|a| a.state.is_open() && a.kind != crate::authorization::SpendKind::Withdrawal)
            .map(|a| (a.expires_at, a.id.clone()))
            .collect();
        if expiries != self.open_expiries {
            return fail("the expiry set does not match the open card holds".into());
        }
        for (reference, lifecycle) in &self.references {
            if !self.authorizations.contains_key(lifecycle) {
                return fail(format!(
                    "reference {reference} names {lifecycle}, which is not a lifecycle"
                ));
            }
        }
        if let Some(index) = self.retention.built()
            && !index.same_as(&crate::retention::RetentionIndex::of(
                &self.outcomes,
                &self.authorizations,
            ))
        {
            return fail("the retention index drifted from the state".into());
        }
        if open != self.open_holds {
            return fail(format!(
                "open hold count {} but {} open lifecycles",
                self.open_holds, open
            ));
        }
        for (&currency, balance) in &self.balances {
            let expected = held.get(&currency).copied().unwrap_or(0);
            if balance.held_minor != expected {
                return fail(format!(
                    "{currency} held {} but open holds sum to {expected}",
                    balance.held_minor
                ));
            }
            let positions: i64 = self
                .positions
                .values()
                .filter_map(|p| p.get(&currency))
                .sum();
            if positions != balance.ledger_minor {
                return fail(format!(
                    "{currency} ledger {} but member positions sum to {positions}",
                    balance.ledger_minor
                ));
            }
            if balance.available_minor() < 0
                && self.overdrafts.get(&currency).is_none_or(|o| o.is_empty())
            {
                return fail(format!(
                    "{currency} available {} with no overdraft attributed",
                    balance.available_minor()
                ));
            }
        }
        for (currency, amount) in &held {
            if *amount != 0 && !self.balances.contains_key(currency) {
                return fail(format!("hold in {currency} without a balance"));
            }
        }
        for card in self.cards.values() {
            if !self.positions.contains_key(&card.member)
                && !self.members.contains_key(&card.member)
            {
                return fail(format!(
                    "card {} belongs to unknown member {}",
                    card.id, card.member
                ));
            }
            if !self.members.contains_key(&card.member)
                && card.status != crate::card::CardStatus::Blocked
            {
                return fail(format!(
                    "card {} of a former member is not blocked",
                    card.id
                ));
            }
            if !card.usage.is_valid() {
                return fail(format!("card {} has negative usage", card.id));
            }
        }
        for member in self.members.values() {
            if !member.usage.is_valid() {
                return fail(format!("member {} has negative usage", member.id));
            }
        }
        if self.status == AccountStatus::Closed
            && (open > 0 || self.balances.values().any(|b| b.ledger_minor != 0))
        {
            return fail("closed account still holds money".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fitted_small_map_holds_no_empty_slots_and_stays_sorted() {
        let mut map: SmallMap<u32, u64> = SmallMap::new();
        for key in [5, 1, 9, 3, 7] {
            assert_eq!(fitted_insert(&mut map, key, u64::from(key) * 10), None);
        }
        assert_eq!(fitted_insert(&mut map, 3, 33), Some(30));
        *fitted_entry(&mut map, &4) += 4;
        *fitted_entry(&mut map, &9) += 1;
        let entries = map.into_tuple_vec();
        assert_eq!(entries.capacity(), entries.len());
        assert_eq!(
            entries,
            vec![(1, 10), (3, 33), (4, 4), (5, 50), (7, 70), (9, 91)]
        );
    }
}
