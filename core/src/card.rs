//! Cards: a token id bound to one member. The PAN never reaches the core; the edge maps it to
//! the card through a keyed hash.

use serde::{Deserialize, Serialize};

use crate::controls::Controls;
use crate::ids::{CardId, MemberId};
use crate::time::YearMonth;
use crate::usage::Usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    /// Temporarily stopped; can be made active again.
    Frozen,
    /// Stopped for good (lost, stolen, replaced). Final: no transition leaves it.
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub id: CardId,
    pub member: MemberId,
    pub expiry: YearMonth,
    pub status: CardStatus,
    pub controls: Controls,
    pub usage: Usage,
}
