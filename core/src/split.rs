//! Splitting posted money across members, and settling up.
//!
//! Rounding rule (**largest remainder**): each member first gets the floor of their exact
//! share; the minor units left over go one each to the members with the largest fractional
//! remainders, ties broken by member id (ascending). Shares therefore always sum exactly to
//! the amount, and no share is more than one minor unit away from its exact value.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::currency::Currency;
use crate::ids::MemberId;
use crate::limits::MEMBERS_PER_ACCOUNT_MAX;
use crate::money::Money;

/// How an account divides each posted spend, refund and fee among its members.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitRule {
    /// The member whose card (or request) it was bears it all.
    #[default]
    PayerPays,
    /// Every current member bears an equal share.
    Equal,
    /// Shares in proportion to weights; members not listed bear nothing.
    Weighted { weights: Vec<(MemberId, u32)> },
    /// Each listed member bears up to a fixed amount, in list order, and the payer bears what
    /// is left. For a posting in another currency the fixed amounts act as weights (no rate is
    /// applied to a split).
    Fixed {
        currency: Currency,
        amounts: Vec<(MemberId, i64)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("a split rule lists at most {MEMBERS_PER_ACCOUNT_MAX} members")]
    TooManyMembers,
    #[error("a split rule names {member} twice")]
    DuplicateMember { member: MemberId },
    #[error("weights must not all be zero")]
    ZeroWeights,
    #[error("fixed amounts must be positive")]
    BadFixedAmount,
}

impl SplitRule {
    pub fn validate(&self) -> Result<(), SplitError> {
        let names: Vec<&MemberId> = match self {
            SplitRule::PayerPays | SplitRule::Equal => return Ok(()),
            SplitRule::Weighted { weights } => {
                if weights.iter().all(|(_, w)| *w == 0) {
                    return Err(SplitError::ZeroWeights);
                }
                weights.iter().map(|(m, _)| m).collect()
            }
            SplitRule::Fixed { amounts, .. } => {
                if amounts.iter().any(|(_, a)| *a <= 0) {
                    return Err(SplitError::BadFixedAmount);
                }
                amounts.iter().map(|(m, _)| m).collect()
            }
        };
        if names.len() > MEMBERS_PER_ACCOUNT_MAX {
            return Err(SplitError::TooManyMembers);
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in names {
            if !seen.insert(name) {
                return Err(SplitError::DuplicateMember {
                    member: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Shares of `amount` (positive: what each member bears), summing exactly to `amount`.
    /// `members` are the account's current members; names in the rule that are no longer
    /// members bear nothing. Falls back to the payer when no one else qualifies.
    pub fn shares(
        &self,
        amount: Money,
        payer: &MemberId,
        members: &[&MemberId],
    ) -> Vec<(MemberId, i64)> {
        debug_assert!(amount.amount_minor >= 0);
        let total = amount.amount_minor;
        let payer_only = || vec![(payer.clone(), total)];
        if total == 0 {
            return payer_only();
        }
        let current = |m: &MemberId| members.contains(&m);
        let weighted: Vec<(MemberId, u128)> = match self {
            SplitRule::PayerPays => return payer_only(),
            SplitRule::Equal => members.iter().map(|m| ((*m).clone(), 1)).collect(),
            SplitRule::Weighted { weights } => weights
                .iter()
                .filter(|(m, w)| *w > 0 && current(m))
                .map(|(m, w)| (m.clone(), u128::from(*w)))
                .collect(),
            SplitRule::Fixed { currency, amounts } if *currency == amount.currency => {
                return fixed_shares(total, amounts, payer, &current);
            }
            SplitRule::Fixed { amounts, .. } => amounts
                .iter()
                .filter(|(m, _)| current(m))
                .map(|(m, a)| (m.clone(), u128::try_from(*a).unwrap_or(0)))
                .collect(),
        };
        if weighted.is_empty() {
            return payer_only();
        }
        largest_remainder(total, &weighted)
    }
}

fn fixed_shares(
    total: i64,
    amounts: &[(MemberId, i64)],
    payer: &MemberId,
    current: &dyn Fn(&MemberId) -> bool,
) -> Vec<(MemberId, i64)> {
    let mut left = total;
    let mut shares: BTreeMap<MemberId, i64> = BTreeMap::new();
    for (member, fixed) in amounts.iter().filter(|(m, _)| current(m)) {
        let take = (*fixed).min(left);
        if take > 0 {
            *shares.entry(member.clone()).or_default() += take;
            left -= take;
        }
    }
    if left > 0 {
        *shares.entry(payer.clone()).or_default() += left;
    }
    shares.into_iter().collect()
}

/// Splits `total` (≥ 0) by `weights` with largest-remainder rounding.
pub fn largest_remainder(total: i64, weights: &[(MemberId, u128)]) -> Vec<(MemberId, i64)> {
    let weight_sum: u128 = weights.iter().map(|(_, w)| w).sum();
    assert!(weight_sum > 0 && total >= 0);
    let total_wide = u128::try_from(total).expect("non-negative");
    let mut rows: Vec<(MemberId, i64, u128)> = weights
        .iter()
        .map(|(member, weight)| {
            let exact = total_wide * weight;
            let floor = i64::try_from(exact / weight_sum).expect("share fits");
            (member.clone(), floor, exact % weight_sum)
        })
        .collect();
    let assigned: i64 = rows.iter().map(|r| r.1).sum();
    let leftover = usize::try_from(total - assigned).expect("leftover is below the member count");
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        rows[b]
            .2
            .cmp(&rows[a].2)
            .then_with(|| rows[a].0.cmp(&rows[b].0))
    });
    for &index in order.iter().take(leftover) {
        rows[index].1 += 1;
    }
    let mut shares: Vec<(MemberId, i64)> = rows.into_iter().map(|(m, s, _)| (m, s)).collect();
    shares.sort_by(|a, b| a.0.cmp(&b.0));
    shares
}

/// A proposed payment from one member to another to even out net positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub from: MemberId,
    pub to: MemberId,
    pub amount: Money,
}

/// Greedy settle-up in one currency: the largest debtor pays the largest creditor as much as
/// both allow, repeatedly (ties by member id). Each transfer zeroes at least one member, so
/// there are at most n−1. What remains positive afterwards is the members' claim on the
/// account's own balance.
pub fn settle_up(currency: Currency, positions: &[(MemberId, i64)]) -> Vec<Transfer> {
    let mut debtors: Vec<(MemberId, i64)> = positions
        .iter()
        .filter(|(_, p)| *p < 0)
        .map(|(m, p)| (m.clone(), -p))
        .collect();
    let mut creditors: Vec<(MemberId, i64)> =
        positions.iter().filter(|(_, p)| *p > 0).cloned().collect();
    let by_size =
        |a: &(MemberId, i64), b: &(MemberId, i64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
    let mut transfers = Vec::new();
    loop {
        debtors.retain(|d| d.1 > 0);
        creditors.retain(|c| c.1 > 0);
        if debtors.is_empty() || creditors.is_empty() {
            break;
        }
        debtors.sort_by(by_size);
        creditors.sort_by(by_size);
        let amount = debtors[0].1.min(creditors[0].1);
        transfers.push(Transfer {
            from: debtors[0].0.clone(),
            to: creditors[0].0.clone(),
            amount: Money::new(amount, currency),
        });
        debtors[0].1 -= amount;
        creditors[0].1 -= amount;
    }
    transfers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str) -> MemberId {
        MemberId::new(name).unwrap()
    }

    fn eur(amount_minor: i64) -> Money {
        Money::new(amount_minor, Currency::from_alpha("EUR").unwrap())
    }

    #[test]
    fn equal_split_of_a_hundred_cents_three_ways() {
        let (a, b, c) = (m("a"), m("b"), m("c"));
        let shares = SplitRule::Equal.shares(eur(100), &a, &[&a, &b, &c]);
        assert_eq!(shares, vec![(a.clone(), 34), (b, 33), (c, 33)]);
    }

    #[test]
    fn weighted_split_gives_leftover_to_largest_remainders() {
        let (a, b) = (m("a"), m("b"));
        let rule = SplitRule::Weighted {
            weights: vec![(a.clone(), 2), (b.clone(), 1)],
        };
        // 1000 * 2/3 = 666.67, 1000 * 1/3 = 333.33: a has the larger remainder.
        assert_eq!(
            rule.shares(eur(1000), &b, &[&a, &b]),
            vec![(a, 667), (b, 333)]
        );
    }

    #[test]
    fn fixed_amounts_fill_in_order_and_the_payer_takes_the_rest() {
        let (a, b, payer) = (m("a"), m("b"), m("p"));
        let rule = SplitRule::Fixed {
            currency: Currency::from_alpha("EUR").unwrap(),
            amounts: vec![(a.clone(), 600), (b.clone(), 300)],
        };
        assert_eq!(
            rule.shares(eur(1000), &payer, &[&a, &b, &payer]),
            vec![(a.clone(), 600), (b.clone(), 300), (payer.clone(), 100)]
        );
        assert_eq!(
            rule.shares(eur(700), &payer, &[&a, &b, &payer]),
            vec![(a, 600), (b, 100)]
        );
    }

    #[test]
    fn settle_up_pays_largest_debtor_to_largest_creditor() {
        let currency = Currency::from_alpha("EUR").unwrap();
        let positions = vec![(m("a"), 70), (m("b"), -30), (m("c"), -20), (m("d"), 10)];
        let transfers = settle_up(currency, &positions);
        assert_eq!(
            transfers,
            vec![
                Transfer {
                    from: m("b"),
                    to: m("a"),
                    amount: eur(30)
                },
                Transfer {
                    from: m("c"),
                    to: m("a"),
                    amount: eur(20)
                },
            ]
        );
    }
}
