//! Spending controls on a member or a card: amount and count limits per window, ATM limits,
//! merchant-category lists, channel permissions and blocked countries.
//!
//! A spend must pass the member's controls **and** the card's controls, so the lowest
//! applicable limit wins. Children additionally always carry [`CHILD_BLOCKED_MCCS`], which no
//! one can lift.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

use crate::currency::Currency;
use crate::limits::CONTROL_LIST_ENTRIES_MAX;
use crate::money::Money;
use crate::time::Window;

/// A merchant category code (ISO 18245), 0000..=9999.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Mcc(u16);

impl Mcc {
    /// Automated cash disbursement (ATM).
    pub const ATM: Mcc = Mcc(6011);

    pub fn new(code: u16) -> Result<Self, ControlsError> {
        if code <= 9999 {
            Ok(Self(code))
        } else {
            Err(ControlsError::BadMcc { code })
        }
    }

    pub fn code(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for Mcc {
    type Error = ControlsError;
    fn try_from(code: u16) -> Result<Self, ControlsError> {
        Mcc::new(code)
    }
}

impl From<Mcc> for u16 {
    fn from(mcc: Mcc) -> u16 {
        mcc.0
    }
}

impl fmt::Debug for Mcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// Merchant categories no child may spend in, whatever the guardian sets. Sources: the built-in
/// restrictions of kid-card issuers (Greenlight, GoHenry) mapped to ISO 18245 codes.
pub const CHILD_BLOCKED_MCCS: &[(u16, &str)] = &[
    (4829, "wire transfers and money orders"),
    (5813, "bars, taverns, nightclubs (alcohol)"),
    (5921, "package stores: beer, wine, liquor"),
    (
        5967,
        "direct marketing: inbound teleservices (adult content)",
    ),
    (5993, "cigar stores and stands (tobacco)"),
    (6050, "quasi-cash: member financial institution"),
    (
        6051,
        "quasi-cash: non-financial institutions, money orders, crypto",
    ),
    (7273, "dating and escort services"),
    (7800, "government-owned lotteries (US)"),
    (7801, "government-licensed online casinos"),
    (7802, "government-licensed horse and dog racing"),
    (7995, "betting, casino gambling, lottery tickets"),
    (9406, "government-owned lotteries (non-US)"),
];

pub fn child_blocks(mcc: Mcc) -> bool {
    CHILD_BLOCKED_MCCS.iter().any(|&(code, _)| code == mcc.0)
}

/// An ISO 3166-1 alpha-2 merchant country, e.g. `GB`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Country([u8; 2]);

impl Country {
    pub fn new(code: &str) -> Result<Self, ControlsError> {
        let bytes = code.as_bytes();
        if bytes.len() == 2 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Self([bytes[0], bytes[1]]))
        } else {
            Err(ControlsError::BadCountry {
                code: code.chars().take(8).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl TryFrom<String> for Country {
    type Error = ControlsError;
    fn try_from(code: String) -> Result<Self, ControlsError> {
        Country::new(&code)
    }
}

impl From<Country> for String {
    fn from(country: Country) -> String {
        country.as_str().to_owned()
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the card was presented (ISO 8583 DE 22, plus the wallet and ATM cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Ecommerce,
    Chip,
    Contactless,
    Magstripe,
    Atm,
    Wallet,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Ecommerce,
        Channel::Chip,
        Channel::Contactless,
        Channel::Magstripe,
        Channel::Atm,
        Channel::Wallet,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Which channels are permitted. All are, unless switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Channels {
    permitted_bits: u8,
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            permitted_bits: Channel::ALL.iter().fold(0, |bits, c| bits | c.bit()),
        }
    }
}

impl Channels {
    pub fn permits(self, channel: Channel) -> bool {
        self.permitted_bits & channel.bit() != 0
    }

    pub fn with(mut self, channel: Channel, permitted: bool) -> Self {
        if permitted {
            self.permitted_bits |= channel.bit();
        } else {
            self.permitted_bits &= !channel.bit();
        }
        self
    }
}

/// An amount limit in its own currency. A spend in another currency counts at the context's
/// rate, rounded up (`Rounding::UpToCover`), so a limit is never exceeded by rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AmountLimit {
    pub currency: Currency,
    pub amount_minor: i64,
}

impl AmountLimit {
    pub fn as_money(self) -> Money {
        Money::new(self.amount_minor, self.currency)
    }
}

/// What a limit counts: all spending, or cash (ATM withdrawals and cashback) only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    All,
    Cash,
}

/// One counted limit: a scope, a window, and an amount and/or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WindowLimit {
    pub scope: LimitScope,
    pub window: Window,
    pub amount: Option<AmountLimit>,
    pub count: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Controls {
    /// The most one spend may be.
    pub per_transaction: Option<AmountLimit>,
    /// Counted limits, at most one per (scope, window).
    pub window_limits: Vec<WindowLimit>,
    /// Categories refused.
    pub blocked_mccs: BTreeSet<Mcc>,
    /// When set, only these categories are accepted.
    pub allowed_mccs: Option<BTreeSet<Mcc>>,
    pub channels: Channels,
    pub blocked_countries: BTreeSet<Country>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlsError {
    #[error("merchant category code must be 0000..9999, got {code}")]
    BadMcc { code: u16 },
    #[error("country must be two upper-case letters (ISO 3166-1 alpha-2), got {code:?}")]
    BadCountry { code: String },
    #[error("limit amounts must be positive, got {amount_minor}")]
    BadLimitAmount { amount_minor: i64 },
    #[error("count limits must be at least 1")]
    BadLimitCount,
    #[error("two limits for the same scope and window")]
    DuplicateLimit,
    #[error("a list holds at most {CONTROL_LIST_ENTRIES_MAX} entries")]
    ListTooLong,
    #[error("a limit needs an amount or a count")]
    EmptyLimit,
}

impl Controls {
    /// Checks shape: positive amounts, counts at least one, one limit per scope and window,
    /// bounded lists.
    pub fn validate(&self) -> Result<(), ControlsError> {
        let check_amount = |limit: &AmountLimit| {
            if limit.amount_minor <= 0 {
                Err(ControlsError::BadLimitAmount {
                    amount_minor: limit.amount_minor,
                })
            } else {
                Ok(())
            }
        };
        if let Some(limit) = &self.per_transaction {
            check_amount(limit)?;
        }
        let mut seen = BTreeSet::new();
        for limit in &self.window_limits {
            if limit.amount.is_none() && limit.count.is_none() {
                return Err(ControlsError::EmptyLimit);
            }
            if let Some(amount) = &limit.amount {
                check_amount(amount)?;
            }
            if limit.count == Some(0) {
                return Err(ControlsError::BadLimitCount);
            }
            if !seen.insert((limit.scope, limit.window)) {
                return Err(ControlsError::DuplicateLimit);
            }
        }
        let allowed_len = self.allowed_mccs.as_ref().map_or(0, BTreeSet::len);
        if self.blocked_mccs.len() > CONTROL_LIST_ENTRIES_MAX
            || allowed_len > CONTROL_LIST_ENTRIES_MAX
            || self.blocked_countries.len() > CONTROL_LIST_ENTRIES_MAX
            || self.window_limits.len() > 2 * Window::ALL.len()
        {
            return Err(ControlsError::ListTooLong);
        }
        Ok(())
    }

    pub fn permits_mcc(&self, mcc: Mcc) -> bool {
        if self.blocked_mccs.contains(&mcc) {
            return false;
        }
        self.allowed_mccs
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&mcc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_default_to_all_permitted_and_switch_individually() {
        let channels = Channels::default().with(Channel::Atm, false);
        assert!(!channels.permits(Channel::Atm));
        for channel in Channel::ALL.into_iter().filter(|&c| c != Channel::Atm) {
            assert!(channels.permits(channel), "{channel:?}");
        }
        assert!(channels.with(Channel::Atm, true).permits(Channel::Atm));
    }

    #[test]
    fn allow_list_and_block_list_combine() {
        let mut controls = Controls::default();
        let groceries = Mcc::new(5411).unwrap();
        let fuel = Mcc::new(5542).unwrap();
        assert!(controls.permits_mcc(fuel));
        controls.allowed_mccs = Some([groceries].into_iter().collect());
        assert!(controls.permits_mcc(groceries));
        assert!(!controls.permits_mcc(fuel));
        controls.blocked_mccs.insert(groceries);
        assert!(!controls.permits_mcc(groceries));
    }

    #[test]
    fn children_always_have_gambling_and_quasi_cash_blocked() {
        assert!(child_blocks(Mcc::new(7995).unwrap()));
        assert!(child_blocks(Mcc::new(6051).unwrap()));
        assert!(!child_blocks(Mcc::new(5411).unwrap()));
    }

    #[test]
    fn validation_refuses_duplicate_and_empty_limits() {
        let eur = Currency::from_alpha("EUR").unwrap();
        let daily = WindowLimit {
            scope: LimitScope::All,
            window: Window::Day,
            amount: Some(AmountLimit {
                currency: eur,
                amount_minor: 100,
            }),
            count: None,
        };
        let controls = Controls {
            window_limits: vec![daily, daily],
            ..Controls::default()
        };
        assert_eq!(controls.validate(), Err(ControlsError::DuplicateLimit));
        let empty = WindowLimit {
            amount: None,
            ..daily
        };
        let controls = Controls {
            window_limits: vec![empty],
            ..Controls::default()
        };
        assert_eq!(controls.validate(), Err(ControlsError::EmptyLimit));
        assert!(Country::new("gb").is_err());
        assert!(Mcc::new(10_000).is_err());
    }
}
