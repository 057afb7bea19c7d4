//! Members of a shared account and what their roles let them do.

use serde::{Deserialize, Serialize};

use crate::controls::Controls;
use crate::ids::MemberId;
use crate::usage::Usage;

/// A member's role. One role per member; the permission table is in `permission.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the account: members, cards, policies; spends and moves money.
    Owner,
    /// Spends, deposits and withdraws; freezes their own cards.
    Member,
    /// Sets a child's controls and manages the child's cards; spends and deposits.
    Guardian,
    /// Spends within the controls set for them and deposits; changes nothing else.
    Child,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: MemberId,
    pub role: Role,
    pub controls: Controls,
    pub usage: Usage,
}

impl Member {
    pub fn new(id: MemberId, role: Role) -> Self {
        Self {
            id,
            role,
            controls: Controls::default(),
            usage: Usage::default(),
        }
    }
}
