//! Usage counters: how much a member or a card has spent, and how often, in the current window
//! of each configured limit.
//!
//! A counter belongs to one (scope, window) and remembers which window and which currency it
//! counts in, and an epoch that goes up every time it starts afresh. A charge into a newer
//! window (or for a limit whose currency changed) starts the counter afresh; a restoration (a
//! hold reversed or expired) only subtracts when it carries the epoch it was charged in, so a
//! restored amount never leaks into a later window or a counter that restarted in between.
//!
//! Only configured limits count: a limit set mid-window starts from zero at the next spend.

use crate::small_map::{SmallMap, fitted_entry};
use serde::{Deserialize, Serialize};

use crate::controls::LimitScope;
use crate::currency::Currency;
use crate::ids::{CardId, MemberId};
use crate::time::{Timestamp, Window};

/// Whose counters: a member's (across all their cards) or one card's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSubject {
    Member(MemberId),
    Card(CardId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counter {
    /// Goes up each time the counter restarts.
    pub epoch: u32,
    pub window_id: i64,
    /// The currency `amount_minor` is counted in; `None` for a count-only limit.
    pub currency: Option<Currency>,
    pub amount_minor: i64,
    pub count: u32,
}

/// One change to one counter: positive when a spend is charged, negative when a charge is
/// given back. Holds keep the charges they made so that exactly those can be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDelta {
    pub subject: UsageSubject,
    pub scope: LimitScope,
    pub window: Window,
    pub window_id: i64,
    pub currency: Option<Currency>,
    /// The counter's epoch this charge belongs to (see the module notes).
    pub epoch: u32,
    pub amount_minor: i64,
    pub count: i32,
}

impl UsageDelta {
    /// The delta that gives this charge back.
    pub fn restoration(&self) -> UsageDelta {
        UsageDelta {
            amount_minor: -self.amount_minor,
            count: -self.count,
            ..self.clone()
        }
    }
}

/// Counters of one subject.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    counters: SmallMap<(LimitScope, Window), Counter>,
}

impl Usage {
    /// Amount and count already used in the window containing `now`, counted in `currency`.
    pub fn current(
        &self,
        scope: LimitScope,
        window: Window,
        now: Timestamp,
        currency: Option<Currency>,
    ) -> (i64, u32) {
        match self.counters.get(&(scope, window)) {
            Some(counter)
                if counter.window_id == window.id(now) && counter.currency == currency =>
            {
                (counter.amount_minor, counter.count)
            }
            Some(counter) if counter.window_id == window.id(now) && currency.is_none() => {
                (0, counter.count)
            }
            _ => (0, 0),
        }
    }

    pub fn counters(&self) -> &SmallMap<(LimitScope, Window), Counter> {
        &self.counters
    }

    /// The epoch a charge at `now` in `currency` belongs to: the counter's own when it still
    /// counts this window in this currency, otherwise the next one (it will restart).
    pub fn epoch_for(
        &self,
        scope: LimitScope,
        window: Window,
        now: Timestamp,
        currency: Option<Currency>,
    ) -> u32 {
        match self.counters.get(&(scope, window)) {
            Some(counter)
                if counter.window_id == window.id(now) && counter.currency == currency =>
            {
                counter.epoch
            }
            Some(counter) => counter.epoch.wrapping_add(1),
            None => 1,
        }
    }

    /// Applies one delta (see the module notes). Never panics: a restoration for a counter that
    /// has since restarted changes nothing, and amounts never go below zero.
    pub fn apply(&mut self, delta: &UsageDelta) {
        let key = (delta.scope, delta.window);
        let charging = delta.amount_minor > 0 || delta.count > 0;
        if charging {
            let counter = fitted_entry(&mut self.counters, &key);
            if counter.epoch != delta.epoch {
                *counter = Counter {
                    epoch: delta.epoch,
                    window_id: delta.window_id,
                    currency: delta.currency,
                    amount_minor: 0,
                    count: 0,
                };
            }
            counter.amount_minor = counter.amount_minor.saturating_add(delta.amount_minor);
            counter.count = counter.count.saturating_add_signed(delta.count);
        } else if let Some(counter) = self.counters.get_mut(&key)
            && counter.epoch == delta.epoch
        {
            counter.amount_minor = counter
                .amount_minor
                .saturating_add(delta.amount_minor)
                .max(0);
            counter.count = counter.count.saturating_add_signed(delta.count);
        }
    }

    /// True when every counter is non-negative (counts are unsigned by type).
    pub fn is_valid(&self) -> bool {
        self.counters.values().all(|c| c.amount_minor >= 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::DAY_MS;

    fn eur() -> Option<Currency> {
        Some(Currency::from_alpha("EUR").unwrap())
    }

    fn delta(at: Timestamp, amount_minor: i64) -> UsageDelta {
        UsageDelta {
            subject: UsageSubject::Member(MemberId::new("m").unwrap()),
            scope: LimitScope::All,
            window: Window::Day,
            window_id: Window::Day.id(at),
            currency: eur(),
            epoch: u32::try_from(Window::Day.id(at)).unwrap(),
            amount_minor,
            count: 1,
        }
    }

    #[test]
    fn charges_add_up_within_a_window_and_restart_in_the_next() {
        let mut usage = Usage::default();
        let day_one = Timestamp(10 * DAY_MS);
        usage.apply(&delta(day_one, 300));
        usage.apply(&delta(day_one, 200));
        assert_eq!(
            usage.current(LimitScope::All, Window::Day, day_one, eur()),
            (500, 2)
        );
        let day_two = Timestamp(11 * DAY_MS);
        assert_eq!(
            usage.current(LimitScope::All, Window::Day, day_two, eur()),
            (0, 0)
        );
        usage.apply(&delta(day_two, 50));
        assert_eq!(
            usage.current(LimitScope::All, Window::Day, day_two, eur()),
            (50, 1)
        );
    }

    #[test]
    fn a_restoration_from_an_old_window_changes_nothing() {
        let mut usage = Usage::default();
        let day_one = Timestamp(10 * DAY_MS);
        let day_two = Timestamp(11 * DAY_MS);
        let old = delta(day_one, 300);
        usage.apply(&old);
        usage.apply(&delta(day_two, 50));
        usage.apply(&old.restoration());
        assert_eq!(
            usage.current(LimitScope::All, Window::Day, day_two, eur()),
            (50, 1)
        );
    }

    #[test]
    fn a_restoration_in_the_same_window_gives_the_charge_back() {
        let mut usage = Usage::default();
        let day_one = Timestamp(10 * DAY_MS);
        let charge = delta(day_one, 300);
        usage.apply(&delta(day_one, 100));
        usage.apply(&charge);
        usage.apply(&charge.restoration());
        assert_eq!(
            usage.current(LimitScope::All, Window::Day, day_one, eur()),
            (100, 1)
        );
    }
}
