//! Which balances fund a spend, and how much of each.
//!
//! Order: the spend's own currency first; then the account's policy — an owner-set priority
//! list, or the largest available balance first (compared by value in the rate table's base
//! currency, ties broken by alphabetic code). When one balance is not enough, several fund
//! the spend, each as a [`Leg`] recording the rate used.
//!
//! Rounding: a leg that fully covers the rest of the spend holds the conversion rounded **up**
//! (`UpToCover`); a balance too small to cover the rest is used for as much of the spend as it
//! covers rounded **down** (`DownToCovered`), and holds the up-rounded cost of exactly that
//! part, which is never more than it has. Every leg therefore covers its part of the spend.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::currency::Currency;
use crate::fx::{RateTable, Rounding};
use crate::limits::FUNDING_PRIORITY_ENTRIES_MAX;
use crate::money::Money;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FundingPolicy {
    /// After the spend's currency, the balance worth most in the base currency first.
    #[default]
    LargestAvailableFirst,
    /// After the spend's currency, these currencies in this order; others are not used.
    Priority { currencies: Vec<Currency> },
}

impl FundingPolicy {
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            FundingPolicy::LargestAvailableFirst => Ok(()),
            FundingPolicy::Priority { currencies } => {
                if currencies.len() > FUNDING_PRIORITY_ENTRIES_MAX {
                    return Err("too many currencies in the priority list");
                }
                let unique: std::collections::BTreeSet<_> = currencies.iter().collect();
                if unique.len() != currencies.len() {
                    return Err("a currency appears twice in the priority list");
                }
                Ok(())
            }
        }
    }
}

/// The part of a spend one balance carries: `amount_minor` of `currency` (held or posted)
/// covering `covers_minor` of the spend's currency, at `rate` (major units of `currency` per
/// major unit of the spend's currency; 1 when they are the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub currency: Currency,
    pub amount_minor: i64,
    pub covers_minor: i64,
    pub rate: Decimal,
}

impl Leg {
    pub fn amount(&self) -> Money {
        Money::new(self.amount_minor, self.currency)
    }

    /// True when the amount covers its part of the spend at the rate the leg was made at.
    /// The recorded rate has ten decimals, so the check allows the sub-unit that rounding of
    /// the rate itself can hide; the exact property (`RateTable::covers`) is tested on the
    /// conversion.
    pub fn covers_at_its_rate(&self, spend_currency: Currency) -> bool {
        if self.currency == spend_currency {
            return self.amount_minor >= self.covers_minor;
        }
        let scale = |exponent: u32| Decimal::from(10i64.pow(exponent));
        let needed = Decimal::from(self.covers_minor)
            .checked_mul(self.rate)
            .and_then(|n| n.checked_mul(scale(self.currency.exponent())))
            .and_then(|n| n.checked_div(scale(spend_currency.exponent())));
        needed.is_none_or(|needed| Decimal::from(self.amount_minor) >= needed.floor())
    }

    /// Takes `part` (of the spend's currency, at most `covers_minor`) out of this leg. What
    /// stays keeps covering what stays: its amount is `ceil(remaining_covers * amount / covers)`,
    /// and the taken amount is the difference, so taking everything takes the whole amount.
    pub fn take(&mut self, part: i64) -> Leg {
        debug_assert!(part >= 0 && part <= self.covers_minor);
        let remaining_covers = self.covers_minor - part;
        let remaining_amount = if self.covers_minor == 0 {
            0
        } else {
            let numerator = i128::from(remaining_covers) * i128::from(self.amount_minor);
            let denominator = i128::from(self.covers_minor);
            i64::try_from((numerator + denominator - 1).div_euclid(denominator))
                .expect("fits: below amount")
        };
        let taken = Leg {
            currency: self.currency,
            amount_minor: self.amount_minor - remaining_amount,
            covers_minor: part,
            rate: self.rate,
        };
        self.amount_minor = remaining_amount;
        self.covers_minor = remaining_covers;
        taken
    }
}

/// Takes `part` of the spend from `legs`, first leg first (or last leg first when
/// `from_back`), dropping legs that are used up. Returns the taken pieces.
pub fn take_from_legs(legs: &mut Vec<Leg>, mut part: i64, from_back: bool) -> Vec<Leg> {
    let mut taken = Vec::new();
    let order: Vec<usize> = if from_back {
        (0..legs.len()).rev().collect()
    } else {
        (0..legs.len()).collect()
    };
    for index in order {
        if part == 0 {
            break;
        }
        let piece = part.min(legs[index].covers_minor);
        if piece > 0 || legs[index].covers_minor == 0 {
            taken.push(legs[index].take(piece));
            part -= piece;
        }
    }
    legs.retain(|leg| leg.covers_minor > 0 || leg.amount_minor > 0);
    taken
}

/// What planning needs to know of an account's balances: the available amount per currency.
/// Implemented for the account's own balances (no copy on the hot path) and for plain maps.
pub trait AvailableBalances {
    fn available_in(&self, currency: Currency) -> Option<i64>;
    fn all_available(&self) -> Vec<(Currency, i64)>;
}

impl AvailableBalances for BTreeMap<Currency, i64> {
    fn available_in(&self, currency: Currency) -> Option<i64> {
        self.get(&currency).copied()
    }
    fn all_available(&self) -> Vec<(Currency, i64)> {
        self.iter().map(|(&c, &a)| (c, a)).collect()
    }
}

impl AvailableBalances for crate::small_map::SmallMap<Currency, crate::kinds::Balance> {
    fn available_in(&self, currency: Currency) -> Option<i64> {
        self.get(&currency).map(|b| b.available_minor())
    }
    fn all_available(&self) -> Vec<(Currency, i64)> {
        self.iter()
            .map(|(&c, b)| (c, b.available_minor()))
            .collect()
    }
}

/// The result of planning: legs covering `spend - uncovered_minor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingPlan {
    pub legs: Vec<Leg>,
    pub uncovered_minor: i64,
}

impl FundingPlan {
    pub fn covered_minor(&self) -> i64 {
        self.legs.iter().map(|l| l.covers_minor).sum()
    }
}

/// The candidate balances for a spend in `spend_currency`, in funding order.
pub fn funding_order(
    spend_currency: Currency,
    available: &[(Currency, i64)],
    policy: &FundingPolicy,
    rates: &RateTable,
) -> Vec<Currency> {
    let mut order = Vec::with_capacity(available.len() + 1);
    order.push(spend_currency);
    match policy {
        FundingPolicy::Priority { currencies } => {
            order.extend(currencies.iter().copied().filter(|c| *c != spend_currency));
        }
        FundingPolicy::LargestAvailableFirst => {
            let mut others: Vec<(Currency, Decimal)> = available
                .iter()
                .filter(|(c, _)| *c != spend_currency)
                .filter_map(|&(currency, amount)| {
                    let rate = rates.rate(currency)?;
                    let major =
                        Decimal::from(amount) / Decimal::from(10i64.pow(currency.exponent()));
                    Some((currency, major.checked_div(rate)?))
                })
                .collect();
            others.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            order.extend(others.into_iter().map(|(c, _)| c));
        }
    }
    order
}

/// Plans legs for `spend` against `available` (per currency). With `overdraft`, whatever no
/// balance covers is put on the first balance in funding order that the account holds (or
/// the spend's currency), which may then go negative: only for what the network already
/// decided.
pub fn plan(
    spend: Money,
    balances: &impl AvailableBalances,
    policy: &FundingPolicy,
    rates: &RateTable,
    overdraft: bool,
) -> FundingPlan {
    // The common case first: the spend's own balance covers it, no rate is looked at.
    if balances
        .available_in(spend.currency)
        .is_some_and(|have| have >= spend.amount_minor)
    {
        return FundingPlan {
            legs: vec![Leg {
                currency: spend.currency,
                amount_minor: spend.amount_minor,
                covers_minor: spend.amount_minor,
                rate: Decimal::ONE,
            }],
            uncovered_minor: 0,
        };
    }
    let mut legs: Vec<Leg> = Vec::new();
    let mut remaining = spend.amount_minor;
    let available = balances.all_available();
    let order = funding_order(spend.currency, &available, policy, rates);
    for &currency in &order {
        if remaining == 0 {
            break;
        }
        let have = balances.available_in(currency).unwrap_or(0);
        if have <= 0 {
            continue;
        }
        let Some(leg) = leg_within(
            Money::new(remaining, spend.currency),
            Money::new(have, currency),
            rates,
        ) else {
            continue;
        };
        remaining -= leg.covers_minor;
        legs.push(leg);
    }
    if remaining > 0 && overdraft {
        let target = order
            .iter()
            .copied()
            .find(|c| {
                balances.available_in(*c).is_some() && rates.cross(spend.currency, *c).is_ok()
            })
            .unwrap_or(spend.currency);
        let rest = Money::new(remaining, spend.currency);
        let cost = rates
            .convert(rest, target, Rounding::UpToCover)
            .unwrap_or(Money::new(remaining, spend.currency));
        // When even the spend's own currency cannot be converted into (no rates at all), the
        // overdraft lands on the spend's currency at par, which needs no rate.
        let (target, cost_minor) = if cost.currency == target {
            (target, cost.amount_minor)
        } else {
            (spend.currency, remaining)
        };
        if let Some(existing) = legs.iter_mut().find(|l| l.currency == target) {
            existing.amount_minor += cost_minor;
            existing.covers_minor += remaining;
        } else {
            let rate = rates.cross(spend.currency, target).unwrap_or(Decimal::ONE);
            legs.push(Leg {
                currency: target,
                amount_minor: cost_minor,
                covers_minor: remaining,
                rate,
            });
        }
        remaining = 0;
    }
    FundingPlan {
        legs,
        uncovered_minor: remaining,
    }
}

/// The largest part of `rest` (spend currency) that `have` (a positive balance) can carry.
fn leg_within(rest: Money, have: Money, rates: &RateTable) -> Option<Leg> {
    let rate = if rest.currency == have.currency {
        Decimal::ONE
    } else {
        rates.cross(rest.currency, have.currency).ok()?
    };
    let need = rates
        .convert(rest, have.currency, Rounding::UpToCover)
        .ok()?;
    if need.amount_minor <= have.amount_minor {
        return Some(Leg {
            currency: have.currency,
            amount_minor: need.amount_minor,
            covers_minor: rest.amount_minor,
            rate,
        });
    }
    let covered = rates
        .convert(have, rest.currency, Rounding::DownToCovered)
        .ok()?;
    let covered_minor = covered.amount_minor.min(rest.amount_minor);
    if covered_minor <= 0 {
        return None;
    }
    let cost = rates
        .convert(
            Money::new(covered_minor, rest.currency),
            have.currency,
            Rounding::UpToCover,
        )
        .ok()?;
    debug_assert!(cost.amount_minor <= have.amount_minor);
    Some(Leg {
        currency: have.currency,
        amount_minor: cost.amount_minor,
        covers_minor: covered_minor,
        rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn c(code: &str) -> Currency {
        Currency::from_alpha(code).unwrap()
    }

    fn rates() -> RateTable {
        let mut rates = BTreeMap::new();
        rates.insert(c("GBP"), Decimal::from_str("0.8").unwrap());
        rates.insert(c("USD"), Decimal::from_str("1.25").unwrap());
        RateTable::new(c("EUR"), rates).unwrap()
    }

    #[test]
    fn same_currency_first() {
        let available = BTreeMap::from([(c("EUR"), 10_000), (c("GBP"), 50_000)]);
        let plan = plan(
            Money::new(2_000, c("EUR")),
            &available,
            &FundingPolicy::default(),
            &rates(),
            false,
        );
        assert_eq!(plan.legs.len(), 1);
        assert_eq!(plan.legs[0].currency, c("EUR"));
        assert_eq!(plan.legs[0].amount_minor, 2_000);
    }

    #[test]
    fn largest_balance_funds_a_spend_in_a_currency_not_held() {
        // EUR 100.00 is worth 100 EUR; GBP 400.00 is worth 500 EUR: GBP goes first.
        let available = BTreeMap::from([(c("EUR"), 10_000), (c("GBP"), 40_000)]);
        let plan = plan(
            Money::new(1_000, c("USD")),
            &available,
            &FundingPolicy::default(),
            &rates(),
            false,
        );
        // 10.00 USD = 8.00 EUR = 6.40 GBP.
        assert_eq!(
            plan.legs,
            vec![Leg {
                currency: c("GBP"),
                amount_minor: 640,
                covers_minor: 1_000,
                rate: Decimal::from_str("0.64").unwrap()
            }]
        );
    }

    #[test]
    fn several_balances_fund_one_spend_when_one_is_not_enough() {
        let available = BTreeMap::from([(c("USD"), 300), (c("EUR"), 10_000)]);
        let policy = FundingPolicy::Priority {
            currencies: vec![c("EUR")],
        };
        let plan = plan(
            Money::new(1_000, c("USD")),
            &available,
            &policy,
            &rates(),
            false,
        );
        assert_eq!(plan.uncovered_minor, 0);
        assert_eq!(
            plan.legs[0],
            Leg {
                currency: c("USD"),
                amount_minor: 300,
                covers_minor: 300,
                rate: Decimal::ONE
            }
        );
        // 7.00 USD = 5.60 EUR.
        assert_eq!(plan.legs[1].currency, c("EUR"));
        assert_eq!(
            (plan.legs[1].amount_minor, plan.legs[1].covers_minor),
            (560, 700)
        );
    }

    #[test]
    fn shortfall_is_uncovered_unless_overdraft_is_allowed() {
        let available = BTreeMap::from([(c("EUR"), 500)]);
        let short = plan(
            Money::new(1_000, c("EUR")),
            &available,
            &FundingPolicy::default(),
            &rates(),
            false,
        );
        assert_eq!(short.uncovered_minor, 500);
        let over = plan(
            Money::new(1_000, c("EUR")),
            &available,
            &FundingPolicy::default(),
            &rates(),
            true,
        );
        assert_eq!(over.uncovered_minor, 0);
        assert_eq!(
            over.legs,
            vec![Leg {
                currency: c("EUR"),
                amount_minor: 1_000,
                covers_minor: 1_000,
                rate: Decimal::ONE
            }]
        );
    }

    #[test]
    fn taking_part_of_a_leg_keeps_the_rest_covered() {
        let mut leg = Leg {
            currency: c("GBP"),
            amount_minor: 667,
            covers_minor: 1_000,
            rate: Decimal::ONE,
        };
        let taken = leg.take(333);
        assert_eq!(leg.amount_minor, 445); // ceil(667 * 667 / 1000)
        assert_eq!(taken.amount_minor, 222);
        let rest = leg.take(667);
        assert_eq!(rest.amount_minor, 445);
        assert_eq!((leg.amount_minor, leg.covers_minor), (0, 0));
    }
}
