//! Exchange rates and conversion. Rates come in through the decision context (the core never
//! fetches them); every conversion names its rounding.
//!
//! A table has a base currency and, for each other currency, how many major units of it one
//! major unit of the base buys (`base EUR, GBP 0.8571`: 1 EUR = 0.8571 GBP). Any pair converts
//! through the base: `amount_to = amount_from / rate_from * rate_to`, scaled by the two
//! currencies' minor-unit exponents.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::currency::Currency;
use crate::limits::RATE_TABLE_ENTRIES_MAX;
use crate::money::Money;

/// How a conversion rounds to whole minor units. Every conversion in Tandem uses one of these
/// two, and the names say which way money may move because of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Toward +∞: the result is never less than the exact value. Used for what a spend needs
    /// from the balance that funds it, so a hold always covers the spend.
    UpToCover,
    /// Toward zero: the result is never more than the exact value. Used for how much of a spend
    /// a balance can cover, so a balance is never asked for more than it has.
    DownToCovered,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FxError {
    #[error("no exchange rate for {currency}")]
    NoRate { currency: Currency },
    #[error("exchange rate for {currency} must be between 1e-9 and 1e9, got {rate}")]
    BadRate { currency: Currency, rate: Decimal },
    #[error("the base currency's own rate must be 1")]
    BaseRateNotOne,
    #[error("a rate table holds at most {RATE_TABLE_ENTRIES_MAX} currencies")]
    TooManyRates,
    #[error("converting {amount:?} to {to} overflowed")]
    Overflow { amount: Money, to: Currency },
}

/// A set of rates against one base currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RateTableWire", into = "RateTableWire")]
pub struct RateTable {
    base: Currency,
    rates: BTreeMap<Currency, Decimal>,
}

#[derive(Serialize, Deserialize)]
struct RateTableWire {
    base: Currency,
    rates: BTreeMap<Currency, Decimal>,
}

impl TryFrom<RateTableWire> for RateTable {
    type Error = FxError;
    fn try_from(wire: RateTableWire) -> Result<Self, FxError> {
        RateTable::new(wire.base, wire.rates)
    }
}

impl From<RateTable> for RateTableWire {
    fn from(table: RateTable) -> Self {
        RateTableWire {
            base: table.base,
            rates: table.rates,
        }
    }
}

/// The smallest rate accepted: with the largest (1e9) it bounds every cross rate and every
/// conversion well inside `Decimal`'s 28 digits.
fn rate_min() -> Decimal {
    Decimal::new(1, 9)
}

fn rate_max() -> Decimal {
    Decimal::from(1_000_000_000u32)
}

impl RateTable {
    /// Checks every rate (between 1e-9 and 1e9, the base's own rate 1 if listed).
    pub fn new(base: Currency, rates: BTreeMap<Currency, Decimal>) -> Result<Self, FxError> {
        if rates.len() > RATE_TABLE_ENTRIES_MAX {
            return Err(FxError::TooManyRates);
        }
        for (&currency, &rate) in &rates {
            if currency == base {
                if rate != Decimal::ONE {
                    return Err(FxError::BaseRateNotOne);
                }
            } else if rate < rate_min() || rate > rate_max() {
                return Err(FxError::BadRate { currency, rate });
            }
        }
        Ok(Self { base, rates })
    }

    /// A table that knows only its base: every cross-currency conversion fails.
    pub fn only(base: Currency) -> Self {
        Self {
            base,
            rates: BTreeMap::new(),
        }
    }

    pub fn base(&self) -> Currency {
        self.base
    }

    pub fn rates(&self) -> &BTreeMap<Currency, Decimal> {
        &self.rates
    }

    /// Major units of `currency` per major unit of the base.
    pub fn rate(&self, currency: Currency) -> Option<Decimal> {
        if currency == self.base {
            return Some(Decimal::ONE);
        }
        self.rates.get(&currency).copied()
    }

    /// Major units of `to` per major unit of `from` (for display and records; conversion itself
    /// never divides by a rounded cross rate).
    pub fn cross(&self, from: Currency, to: Currency) -> Result<Decimal, FxError> {
        let rate_from = self.rate(from).ok_or(FxError::NoRate { currency: from })?;
        let rate_to = self.rate(to).ok_or(FxError::NoRate { currency: to })?;
        let cross = rate_to.checked_div(rate_from).ok_or(FxError::Overflow {
            amount: Money::new(1, from),
            to,
        })?;
        Ok(cross.round_dp(10))
    }

    /// The exact conversion as a fraction `numerator / denominator`, both exact decimals:
    /// `amount * rate_to * 10^exp_to / (rate_from * 10^exp_from)`.
    fn fraction(&self, amount: Money, to: Currency) -> Result<(Decimal, Decimal), FxError> {
        let rate_from = self.rate(amount.currency).ok_or(FxError::NoRate {
            currency: amount.currency,
        })?;
        let rate_to = self.rate(to).ok_or(FxError::NoRate { currency: to })?;
        let overflow = || FxError::Overflow { amount, to };
        let numerator = Decimal::from(amount.amount_minor)
            .checked_mul(rate_to)
            .and_then(|n| n.checked_mul(Decimal::from(10i64.pow(to.exponent()))))
            .ok_or_else(overflow)?;
        let denominator = rate_from
            .checked_mul(Decimal::from(10i64.pow(amount.currency.exponent())))
            .ok_or_else(overflow)?;
        Ok((numerator, denominator))
    }

    /// Converts `amount` into `to`, rounding as named. Same-currency conversion is the identity.
    ///
    /// Decimal division rounds at 28 digits, so the quotient is corrected against the exact
    /// fraction afterwards: the result is the true ceiling or floor, never one unit short.
    pub fn convert(
        &self,
        amount: Money,
        to: Currency,
        rounding: Rounding,
    ) -> Result<Money, FxError> {
        if amount.currency == to {
            return Ok(Money::new(amount.amount_minor, to));
        }
        let (numerator, denominator) = self.fraction(amount, to)?;
        let overflow = || FxError::Overflow { amount, to };
        let quotient = numerator.checked_div(denominator).ok_or_else(overflow)?;
        let mut result = match rounding {
            Rounding::UpToCover => quotient.ceil(),
            Rounding::DownToCovered => quotient.floor(),
        };
        // Correct a one-unit error from the rounded division, in exact arithmetic.
        let product = |q: Decimal| q.checked_mul(denominator).ok_or_else(overflow);
        match rounding {
            Rounding::UpToCover => {
                while product(result)? < numerator {
                    result += Decimal::ONE;
                }
                while result > Decimal::ZERO && product(result - Decimal::ONE)? >= numerator {
                    result -= Decimal::ONE;
                }
            }
            Rounding::DownToCovered => {
                while product(result)? > numerator {
                    result -= Decimal::ONE;
                }
                while product(result + Decimal::ONE)? <= numerator {
                    result += Decimal::ONE;
                }
            }
        }
        let amount_minor = i64::try_from(result).map_err(|_| overflow())?;
        Ok(Money::new(amount_minor, to))
    }

    /// True when `funding` (in its currency) is worth at least `spend` at this table's rates,
    /// compared exactly. The property every funding leg must have.
    pub fn covers(&self, funding: Money, spend: Money) -> Result<bool, FxError> {
        if funding.currency == spend.currency {
            return Ok(funding.amount_minor >= spend.amount_minor);
        }
        // funding >= spend * f  <=>  funding * den >= num, with num/den the exact conversion.
        let (numerator, denominator) = self.fraction(spend, funding.currency)?;
        let overflow = || FxError::Overflow {
            amount: spend,
            to: funding.currency,
        };
        let scaled = Decimal::from(funding.amount_minor)
            .checked_mul(denominator)
            .ok_or_else(overflow)?;
        Ok(scaled >= numerator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn c(code: &str) -> Currency {
        Currency::from_alpha(code).unwrap()
    }

    fn table() -> RateTable {
        let mut rates = BTreeMap::new();
        rates.insert(c("GBP"), Decimal::from_str("0.8571").unwrap());
        rates.insert(c("USD"), Decimal::from_str("1.0842").unwrap());
        rates.insert(c("JPY"), Decimal::from_str("161.37").unwrap());
        rates.insert(c("BHD"), Decimal::from_str("0.4087").unwrap());
        RateTable::new(c("EUR"), rates).unwrap()
    }

    #[test]
    fn conversion_rounds_as_named() {
        let t = table();
        // 10.00 GBP in EUR: 10 / 0.8571 = 11.6672...
        let ten_gbp = Money::new(1000, c("GBP"));
        assert_eq!(
            t.convert(ten_gbp, c("EUR"), Rounding::UpToCover).unwrap(),
            Money::new(1167, c("EUR"))
        );
        assert_eq!(
            t.convert(ten_gbp, c("EUR"), Rounding::DownToCovered)
                .unwrap(),
            Money::new(1166, c("EUR"))
        );
    }

    #[test]
    fn cross_rates_go_through_the_base_and_respect_exponents() {
        let t = table();
        // 1.00 USD → JPY: 161.37 / 1.0842 = 148.837...
        let one_usd = Money::new(100, c("USD"));
        assert_eq!(
            t.convert(one_usd, c("JPY"), Rounding::UpToCover).unwrap(),
            Money::new(149, c("JPY"))
        );
        assert_eq!(
            t.convert(one_usd, c("JPY"), Rounding::DownToCovered)
                .unwrap(),
            Money::new(148, c("JPY"))
        );
        // 100 JPY → BHD (exponent 3): 100 / 161.37 * 0.4087 = 0.25326... BHD = 253.26 fils
        let jpy = Money::new(100, c("JPY"));
        assert_eq!(
            t.convert(jpy, c("BHD"), Rounding::UpToCover).unwrap(),
            Money::new(254, c("BHD"))
        );
    }

    #[test]
    fn converted_holds_cover_the_spend_exactly_checked() {
        let t = table();
        let spend = Money::new(12_345, c("USD"));
        let held = t.convert(spend, c("GBP"), Rounding::UpToCover).unwrap();
        assert!(t.covers(held, spend).unwrap());
        assert!(
            !t.covers(Money::new(held.amount_minor - 1, c("GBP")), spend)
                .unwrap()
        );
    }

    #[test]
    fn missing_and_bad_rates_are_errors() {
        let t = table();
        assert_eq!(
            t.convert(Money::new(1, c("CHF")), c("EUR"), Rounding::UpToCover),
            Err(FxError::NoRate { currency: c("CHF") })
        );
        let mut rates = BTreeMap::new();
        rates.insert(c("GBP"), Decimal::ZERO);
        assert!(matches!(
            RateTable::new(c("EUR"), rates),
            Err(FxError::BadRate { .. })
        ));
    }
}
