//! What an account is ([`AccountKind`]), whether it takes traffic ([`AccountStatus`]), and
//! one currency's balance ([`Balance`]): the plain values an account's state, its commands
//! and its events all name.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// Two or more adults with equal standing.
    Joint,
    /// Flatmates, friends, a trip: a pot with a split rule.
    Group,
    /// A child's account run by guardians.
    Kid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Not yet opened: only `OpenAccount` is accepted.
    Unopened,
    Active,
    /// No new spending; advices, clearings and credits still post.
    Frozen,
    /// Final.
    Closed,
}

/// One currency balance. `available = ledger - held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Balance {
    pub ledger_minor: i64,
    pub held_minor: i64,
}

impl Balance {
    pub fn available_minor(self) -> i64 {
        self.ledger_minor
            .checked_sub(self.held_minor)
            .expect("available fits in i64")
    }
}
