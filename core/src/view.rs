//! The read model apps see: an immutable snapshot of one account's committed balances and
//! each member's usage against their limits, with the account's sequence number.

use serde::{Deserialize, Serialize};

use crate::account::{Account, AccountKind, AccountStatus};
use crate::controls::{LimitScope, WindowLimit};
use crate::ids::{AccountId, MemberId};
use crate::member::Role;
use crate::money::Money;
use crate::outcome::BalanceView;
use crate::time::{Timestamp, Window};

/// One limit and how much of it is used in its current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitUsage {
    pub scope: LimitScope,
    pub window: Window,
    pub limit: Option<Money>,
    pub used_minor: i64,
    pub limit_count: Option<u32>,
    pub used_count: u32,
    /// When the window resets (`None` for lifetime limits).
    pub resets_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberUsage {
    pub member: MemberId,
    pub role: Role,
    pub limits: Vec<LimitUsage>,
}

/// A committed account as readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceSnapshot {
    pub account: AccountId,
    /// Events applied: a reader can tell which of two snapshots is newer.
    pub seq: u64,
    pub kind: AccountKind,
    pub status: AccountStatus,
    pub balances: Vec<BalanceView>,
    pub members: Vec<MemberUsage>,
    pub overdrawn: bool,
}

impl BalanceSnapshot {
    /// The snapshot of `account` with usage windows evaluated at `now`.
    pub fn of(account: &Account, now: Timestamp) -> Self {
        let limit_usage = |limit: &WindowLimit, usage: &crate::usage::Usage| {
            let currency = limit.amount.map(|a| a.currency);
            let (used_minor, used_count) = usage.current(limit.scope, limit.window, now, currency);
            LimitUsage {
                scope: limit.scope,
                window: limit.window,
                limit: limit.amount.map(|a| a.as_money()),
                used_minor,
                limit_count: limit.count,
                used_count,
                resets_at: limit.window.resets_at(now),
            }
        };
        BalanceSnapshot {
            account: account.id.clone(),
            seq: account.seq,
            kind: account.kind,
            status: account.status,
            balances: account.balance_views(),
            members: account
                .members
                .values()
                .map(|member| MemberUsage {
                    member: member.id.clone(),
                    role: member.role,
                    limits: member
                        .controls
                        .window_limits
                        .iter()
                        .map(|l| limit_usage(l, &member.usage))
                        .collect(),
                })
                .collect(),
            overdrawn: account.is_overdrawn(),
        }
    }
}
