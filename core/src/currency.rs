//! ISO 4217 currencies, through the `iso_currency` crate (generated from the standard's
//! list): alphabetic code, numeric code (ISO 8583 DE 49/51) and minor-unit exponent.
//!
//! Only currencies with a minor-unit exponent can hold money here; funds codes without one
//! (XAU gold, XDR special drawing rights, ...) are refused when parsed.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;

/// Why a code does not name a currency Tandem can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error("{code:?} is not an ISO 4217 alphabetic currency code")]
    UnknownAlpha { code: String },
    #[error("{code} is not an ISO 4217 numeric currency code")]
    UnknownNumeric { code: u16 },
    #[error("{code} has no minor unit in ISO 4217, so it cannot hold money")]
    NoMinorUnit { code: &'static str },
}

/// A currency with a minor unit. Ordered by alphabetic code, which is the documented
/// tie-break wherever currencies compete.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    /// The three upper-case ASCII letters, kept inline: comparisons and map lookups never go
    /// back to the ISO table.
    alpha: [u8; 3],
    numeric: u16,
    exponent: u8,
}

impl Currency {
    fn from_iso(code: iso_currency::Currency) -> Result<Self, CurrencyError> {
        let exponent = code
            .exponent()
            .ok_or(CurrencyError::NoMinorUnit { code: code.code() })?;
        let exponent =
            u8::try_from(exponent).map_err(|_| CurrencyError::NoMinorUnit { code: code.code() })?;
        let letters = code.code().as_bytes();
        let alpha = [letters[0], letters[1], letters[2]];
        Ok(Self {
            alpha,
            numeric: code.numeric(),
            exponent,
        })
    }

    /// From the three-letter code, e.g. `"EUR"`. Case matters: codes are upper case.
    pub fn from_alpha(code: &str) -> Result<Self, CurrencyError> {
        let iso =
            iso_currency::Currency::from_code(code).ok_or_else(|| CurrencyError::UnknownAlpha {
                code: code.chars().take(8).collect(),
            })?;
        Self::from_iso(iso)
    }

    /// From the numeric code, e.g. `978` for EUR (ISO 8583 DE 49).
    pub fn from_numeric(code: u16) -> Result<Self, CurrencyError> {
        let iso = iso_currency::Currency::from_numeric(code)
            .ok_or(CurrencyError::UnknownNumeric { code })?;
        Self::from_iso(iso)
    }

    pub fn alpha(&self) -> &str {
        // Built only from the ISO table's three ASCII letters.
        std::str::from_utf8(&self.alpha).unwrap_or("XXX")
    }

    pub fn numeric(self) -> u16 {
        self.numeric
    }

    /// Digits after the decimal point: JPY 0, EUR 2, BHD 3, CLF 4.
    pub fn exponent(self) -> u32 {
        u32::from(self.exponent)
    }
}

impl Ord for Currency {
    fn cmp(&self, other: &Self) -> Ordering {
        self.alpha.cmp(&other.alpha)
    }
}

impl PartialOrd for Currency {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.alpha())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.alpha())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.alpha())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Currency::from_alpha(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample of the standard's list (ISO 4217, list one), chosen to cover every exponent
    /// and the codes card networks send most. Each row: alpha, numeric, exponent.
    const ISO_4217_SAMPLE: &[(&str, u16, u32)] = &[
        ("EUR", 978, 2),
        ("USD", 840, 2),
        ("GBP", 826, 2),
        ("JPY", 392, 0),
        ("KRW", 410, 0),
        ("ISK", 352, 0),
        ("BHD", 48, 3),
        ("KWD", 414, 3),
        ("JOD", 400, 3),
        ("TND", 788, 3),
        ("CLF", 990, 4),
        ("CHF", 756, 2),
        ("SEK", 752, 2),
        ("INR", 356, 2),
        ("BRL", 986, 2),
        ("CAD", 124, 2),
        ("AUD", 36, 2),
        ("PLN", 985, 2),
    ];

    #[test]
    fn table_agrees_with_the_standard_sample() {
        for &(alpha, numeric, exponent) in ISO_4217_SAMPLE {
            let by_alpha = Currency::from_alpha(alpha).unwrap();
            let by_numeric = Currency::from_numeric(numeric).unwrap();
            assert_eq!(by_alpha, by_numeric, "{alpha}");
            assert_eq!(by_alpha.numeric(), numeric, "{alpha}");
            assert_eq!(by_alpha.exponent(), exponent, "{alpha}");
            assert_eq!(by_alpha.alpha(), alpha);
        }
    }

    #[test]
    fn codes_without_a_minor_unit_cannot_hold_money() {
        assert!(matches!(
            Currency::from_alpha("XAU"),
            Err(CurrencyError::NoMinorUnit { .. })
        ));
        assert!(matches!(
            Currency::from_alpha("XDR"),
            Err(CurrencyError::NoMinorUnit { .. })
        ));
    }

    #[test]
    fn unknown_codes_are_refused() {
        assert!(matches!(
            Currency::from_alpha("EURO"),
            Err(CurrencyError::UnknownAlpha { .. })
        ));
        assert!(matches!(
            Currency::from_alpha("eur"),
            Err(CurrencyError::UnknownAlpha { .. })
        ));
        assert_eq!(
            Currency::from_numeric(1),
            Err(CurrencyError::UnknownNumeric { code: 1 })
        );
    }

    #[test]
    fn currencies_order_by_alphabetic_code() {
        let mut list = [
            Currency::from_alpha("USD").unwrap(),
            Currency::from_alpha("AUD").unwrap(),
            Currency::from_alpha("EUR").unwrap(),
        ];
        list.sort();
        let codes: Vec<_> = list.iter().map(|c| c.alpha()).collect();
        assert_eq!(codes, ["AUD", "EUR", "USD"]);
    }
}
