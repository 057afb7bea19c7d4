//! Everything a decision needs from outside the account: the time, the FX rates and the
//! policy windows. The core never reads a clock or a rate feed itself.

use crate::controls::Mcc;
use crate::fx::RateTable;
use crate::limits::DAY_MS;
use crate::time::Timestamp;

/// Windows that are configuration rather than law.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How long an ordinary hold stays open without clearing (default 7 days).
    pub hold_expiry_ms: i64,
    /// How long a hold stays open for lodging, car rental and cruise lines, whose clearings
    /// come late (default 31 days).
    pub hold_expiry_extended_ms: i64,
    /// How long an outcome (and a closed lifecycle, and a tombstone) is remembered after its
    /// lifecycle closed, so repeats and late messages are recognised (default 7 days).
    pub outcome_retention_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            hold_expiry_ms: 7 * DAY_MS,
            hold_expiry_extended_ms: 31 * DAY_MS,
            outcome_retention_ms: 7 * DAY_MS,
        }
    }
}

impl Policy {
    /// Lodging (3501–3999, 7011), car rental (3351–3500, 7512) and cruise lines (4411) get the
    /// extended window, as the card schemes allow.
    pub fn hold_expiry_ms_for(&self, mcc: Option<Mcc>) -> i64 {
        match mcc.map(Mcc::code) {
            Some(3351..=3999 | 7011 | 7512 | 4411) => self.hold_expiry_extended_ms,
            _ => self.hold_expiry_ms,
        }
    }
}

/// The outside facts for one decision.
#[derive(Debug, Clone, Copy)]
pub struct DecisionContext<'a> {
    pub now: Timestamp,
    pub rates: &'a RateTable,
    pub policy: &'a Policy,
}
