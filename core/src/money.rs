//! Amounts: integers in a currency's minor unit, tagged with the currency. Every operation is
//! checked; an overflow or a currency mismatch is an error value, never a wrap.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::currency::Currency;
use crate::limits::AMOUNT_MINOR_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("arithmetic on {currency} amounts overflowed")]
    Overflow { currency: Currency },
    #[error("cannot combine {left} with {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("amount must be between 1 and {AMOUNT_MINOR_MAX} minor units, got {amount_minor}")]
    OutOfRange { amount_minor: i64 },
}

/// An amount of one currency, in minor units (cents for EUR, yen for JPY, fils for BHD).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub const fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    pub const fn zero(currency: Currency) -> Self {
        Self {
            amount_minor: 0,
            currency,
        }
    }

    /// A request amount: strictly positive and at most twelve digits (ISO 8583 DE 4).
    pub fn positive(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if (1..=AMOUNT_MINOR_MAX).contains(&amount_minor) {
            Ok(Self {
                amount_minor,
                currency,
            })
        } else {
            Err(MoneyError::OutOfRange { amount_minor })
        }
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor =
            self.amount_minor
                .checked_add(other.amount_minor)
                .ok_or(MoneyError::Overflow {
                    currency: self.currency,
                })?;
        Ok(Money {
            amount_minor,
            currency: self.currency,
        })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor =
            self.amount_minor
                .checked_sub(other.amount_minor)
                .ok_or(MoneyError::Overflow {
                    currency: self.currency,
                })?;
        Ok(Money {
            amount_minor,
            currency: self.currency,
        })
    }

    pub fn checked_neg(self) -> Result<Money, MoneyError> {
        let amount_minor = self
            .amount_minor
            .checked_neg()
            .ok_or(MoneyError::Overflow {
                currency: self.currency,
            })?;
        Ok(Money {
            amount_minor,
            currency: self.currency,
        })
    }

    pub fn is_positive(self) -> bool {
        self.amount_minor > 0
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

impl fmt::Display for Money {
    /// Shows major units with the currency's exponent: `12.34 EUR`, `1200 JPY`, `1.005 BHD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = self.currency.exponent();
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let magnitude = self.amount_minor.unsigned_abs();
        if exponent == 0 {
            return write!(f, "{sign}{magnitude} {}", self.currency);
        }
        let scale = 10u64.pow(exponent);
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            magnitude / scale,
            magnitude % scale,
            self.currency,
            width = exponent as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::from_alpha("EUR").unwrap()
    }

    #[test]
    fn arithmetic_is_checked() {
        let max = Money::new(i64::MAX, eur());
        assert_eq!(
            max.checked_add(Money::new(1, eur())),
            Err(MoneyError::Overflow { currency: eur() })
        );
        assert_eq!(
            Money::new(i64::MIN, eur()).checked_neg(),
            Err(MoneyError::Overflow { currency: eur() })
        );
        let usd = Currency::from_alpha("USD").unwrap();
        assert!(matches!(
            Money::new(1, eur()).checked_sub(Money::new(1, usd)),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        assert_eq!(
            Money::new(5, eur()).checked_sub(Money::new(7, eur())),
            Ok(Money::new(-2, eur()))
        );
    }

    #[test]
    fn request_amounts_are_positive_and_twelve_digits_at_most() {
        assert!(Money::positive(0, eur()).is_err());
        assert!(Money::positive(-1, eur()).is_err());
        assert!(Money::positive(AMOUNT_MINOR_MAX + 1, eur()).is_err());
        assert!(Money::positive(AMOUNT_MINOR_MAX, eur()).is_ok());
    }

    #[test]
    fn display_uses_the_minor_unit_exponent() {
        assert_eq!(Money::new(1234, eur()).to_string(), "12.34 EUR");
        assert_eq!(Money::new(-5, eur()).to_string(), "-0.05 EUR");
        let jpy = Currency::from_alpha("JPY").unwrap();
        assert_eq!(Money::new(1200, jpy).to_string(), "1200 JPY");
        let bhd = Currency::from_alpha("BHD").unwrap();
        assert_eq!(Money::new(1005, bhd).to_string(), "1.005 BHD");
    }
}
