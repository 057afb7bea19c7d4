//! The money audit at the end of a run. The tester keeps what it was told (every approval,
//! decline, clearing, reversal, increment and deposit); afterwards it reads each account's
//! balance, open holds and posted entries from the server and checks they agree. Any
//! mismatch is a finding, and a run with findings fails.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use tandem_proto::v1 as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    Open,
    Closed,
}

/// One authorization as the tester saw it.
#[derive(Debug, Clone)]
pub struct Expected {
    pub account: String,
    pub currency: String,
    /// Approved so far (first approval plus increments).
    pub approved_minor: i64,
    pub state: HoldState,
    /// Cleared (posted) in total.
    pub cleared_minor: i64,
    /// When the tester was told of the approval (Unix ms).
    pub approved_at_ms: i64,
}

/// What the tester was told, per authorization and account.
#[derive(Debug, Default)]
pub struct Ledger {
    pub authorizations: HashMap<String, Expected>,
    pub declined: HashSet<String>,
    /// Lifecycles with an answer we did not get (a transport error): not checked.
    pub uncertain: HashSet<String>,
    /// account -> currency -> deposited.
    pub deposits: BTreeMap<String, BTreeMap<String, i64>>,
    /// Accounts where an authorization got no answer: a hold we were never told of may exist.
    pub uncertain_accounts: HashSet<String>,
    pub touched: HashSet<String>,
    /// The server's hold expiry window (`--hold-expiry-secs`), when known: a hold the server
    /// says expired sooner than this after its approval is a finding.
    pub hold_expiry_ms: Option<i64>,
}

/// What the server holds for one account.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub balance: pb::BalanceSnapshot,
    pub holds: Vec<pb::Hold>,
    pub entries: Vec<pb::PostedEntry>,
    /// Every committed change to its lifecycles, oldest first (`ListLifecycleEvents`).
    pub lifecycle_events: Vec<pb::LifecycleEvent>,
    /// When it was read (Unix ms).
    pub read_at_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditSummary {
    pub accounts_checked: usize,
    pub holds_checked: usize,
    pub entries_checked: usize,
    /// Approved holds the tester left open that the server's lifecycle feed shows expired.
    pub holds_expired: usize,
    pub findings: Vec<String>,
}

/// The ledger's authorizations by account, built once for an audit: checking each account
/// against the whole ledger was quadratic (10,000 accounts after a million lifecycles took
/// minutes).
pub fn authorizations_by_account(ledger: &Ledger) -> HashMap<&str, Vec<(&String, &Expected)>> {
    let mut by_account: HashMap<&str, Vec<(&String, &Expected)>> = HashMap::new();
    for (id, expected) in &ledger.authorizations {
        by_account
            .entry(expected.account.as_str())
            .or_default()
            .push((id, expected));
    }
    by_account
}

/// Checks one account's observed state against the ledger; appends findings.
pub fn check_account(
    ledger: &Ledger,
    account: &str,
    observed: &Observed,
    summary: &mut AuditSummary,
) {
    let of_account: Vec<(&String, &Expected)> = ledger
        .authorizations
        .iter()
        .filter(|(_, expected)| expected.account == account)
        .collect();
    check_account_with(ledger, &of_account, account, observed, summary);
}

/// [`check_account`] with the account's authorizations found already
/// ([`authorizations_by_account`]).
pub fn check_account_with(
    ledger: &Ledger,
    of_account: &[(&String, &Expected)],
    account: &str,
    observed: &Observed,
    summary: &mut AuditSummary,
) {
    summary.accounts_checked += 1;
    summary.holds_checked += observed.holds.len();
    summary.entries_checked += observed.entries.len();
    let findings = &mut summary.findings;

    // Holds: every open approval exactly once at its amount; nothing else.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for hold in &observed.holds {
        *seen.entry(hold.authorization_id.as_str()).or_default() += 1;
        let id = hold.authorization_id.as_str();
        if ledger.uncertain.contains(id) {
            continue;
        }
        match ledger.authorizations.get(id) {
            Some(expected) if expected.state == HoldState::Open => {
                let same_currency: i64 = hold
                    .held
                    .iter()
                    .filter(|a| a.currency == expected.currency)
                    .map(|a| a.amount_minor)
                    .sum();
                let in_spend_currency =
                    hold.held.len() == 1 && hold.held[0].currency == expected.currency;
                if in_spend_currency && same_currency != expected.approved_minor {
                    findings.push(format!(
                        "{account}: hold {id} holds {same_currency} {}, the tester was approved {}",
                        expected.currency, expected.approved_minor
                    ));
                }
            }
            Some(_) => findings.push(format!(
                "{account}: hold {id} is open but was cleared or reversed"
            )),
            None if ledger.declined.contains(id) => {
                findings.push(format!("{account}: hold {id} exists but was declined"))
            }
            None if ledger.uncertain_accounts.contains(account) => {}
            None => findings.push(format!(
                "{account}: hold {id} was never approved to the tester"
            )),
        }
    }
    for (id, count) in &seen {
        if *count > 1 {
            findings.push(format!("{account}: hold {id} appears {count} times"));
        }
    }
    // An approved hold the tester left open and the server no longer holds: the server's
    // lifecycle feed must say what became of it, and only an expiry, after its window, is
    // something the tester did not do itself.
    let mut last_change: HashMap<&str, &pb::LifecycleEvent> = HashMap::new();
    for event in &observed.lifecycle_events {
        last_change.insert(event.authorization_id.as_str(), event);
    }
    let mut expired = 0;
    for &(id, expected) in of_account {
        if expected.state != HoldState::Open
            || ledger.uncertain.contains(id)
            || seen.contains_key(id.as_str())
        {
            continue;
        }
        match last_change.get(id.as_str()) {
            Some(change) if change.state == "expired" || change.cause == "expired" => {
                let early = ledger
                    .hold_expiry_ms
                    .is_some_and(|window| change.at_ms - expected.approved_at_ms < window - 1_000);
                if early {
                    findings.push(format!(
                        "{account}: approved hold {id} expired {} ms after its approval, before its window",
                        change.at_ms - expected.approved_at_ms
                    ));
                } else {
                    expired += 1;
                }
            }
            Some(change) if !matches!(change.state.as_str(), "pending" | "partially_cleared") => {
                findings.push(format!(
                    "{account}: approved hold {id} is gone ({} by {}), but the tester did not close it",
                    change.state, change.cause
                ))
            }
            _ => findings.push(format!(
                "{account}: approved hold {id} is missing, and no lifecycle change says what became of it"
            )),
        }
    }

    // Entries: shares sum to each entry; the ledger is the sum of the entries.
    let mut posted: BTreeMap<&str, i64> = BTreeMap::new();
    let mut by_authorization: HashMap<&str, BTreeMap<&str, i64>> = HashMap::new();
    let mut deposits: BTreeMap<&str, i64> = BTreeMap::new();
    for entry in &observed.entries {
        let shares: i64 = entry.shares.iter().map(|s| s.amount_minor).sum();
        if shares != entry.amount_minor {
            findings.push(format!(
                "{account}: entry {} of {} has shares summing to {shares}",
                entry.id, entry.amount_minor
            ));
        }
        *posted.entry(entry.currency.as_str()).or_default() += entry.amount_minor;
        if entry.cause == "deposit" {
            *deposits.entry(entry.currency.as_str()).or_default() += entry.amount_minor;
        }
        if !entry.authorization_id.is_empty() && entry.kind == "principal" {
            *by_authorization
                .entry(entry.authorization_id.as_str())
                .or_default()
                .entry(entry.currency.as_str())
                .or_default() += entry.amount_minor;
        }
    }
    for balance in &observed.balance.balances {
        let sum = posted.get(balance.currency.as_str()).copied().unwrap_or(0);
        if sum != balance.ledger_minor {
            findings.push(format!(
                "{account}: {} ledger is {} but its entries sum to {sum}",
                balance.currency, balance.ledger_minor
            ));
        }
        if balance.available_minor < 0 {
            findings.push(format!(
                "{account}: {} available is {} (no network-decided postings were sent)",
                balance.currency, balance.available_minor
            ));
        }
        if balance.ledger_minor - balance.held_minor != balance.available_minor {
            findings.push(format!(
                "{account}: {} available is not ledger minus held",
                balance.currency
            ));
        }
    }
    // What was posted for each authorization matches what the tester cleared.
    for &(id, expected) in of_account {
        if ledger.uncertain.contains(id) {
            continue;
        }
        match by_authorization.get(id.as_str()) {
            None if expected.cleared_minor != 0 => findings.push(format!(
                "{account}: {id} posted nothing, the tester cleared {}",
                expected.cleared_minor
            )),
            None => {}
            // Funded in the spend's currency: the debit is exactly what was cleared. (Legs in
            // other currencies are converted at a rate, so only their presence is checked.)
            Some(by) if by.len() == 1 && by.contains_key(expected.currency.as_str()) => {
                let debited = by[expected.currency.as_str()];
                if debited != -expected.cleared_minor {
                    findings.push(format!(
                        "{account}: {id} posted {debited} {}, the tester cleared {}",
                        expected.currency, expected.cleared_minor
                    ));
                }
            }
            Some(_) => {}
        }
    }
    // Deposits.
    if let Some(made) = ledger.deposits.get(account) {
        for (currency, amount) in made {
            let found = deposits.get(currency.as_str()).copied().unwrap_or(0);
            if found != *amount {
                findings.push(format!("{account}: deposits of {currency} sum to {found}, the tester deposited {amount}"));
            }
        }
    }
    summary.holds_expired += expired;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance(currency: &str, ledger: i64, held: i64) -> pb::Balance {
        pb::Balance {
            currency: currency.into(),
            ledger_minor: ledger,
            held_minor: held,
            available_minor: ledger - held,
        }
    }

    fn entry(id: &str, cause: &str, amount: i64, authorization: &str) -> pb::PostedEntry {
        pb::PostedEntry {
            id: id.into(),
            cause: cause.into(),
            kind: "principal".into(),
            currency: "EUR".into(),
            amount_minor: amount,
            authorization_id: authorization.into(),
            shares: vec![pb::Share {
                member_id: "m0".into(),
                amount_minor: amount,
            }],
            ..Default::default()
        }
    }

    fn change(id: &str, seq: u64, at_ms: i64, cause: &str, state: &str) -> pb::LifecycleEvent {
        pb::LifecycleEvent {
            id: seq.to_string(),
            seq,
            at_ms,
            cause: cause.into(),
            authorization_id: id.into(),
            state: state.into(),
            ..Default::default()
        }
    }

    fn hold(id: &str, amount: i64) -> pb::Hold {
        pb::Hold {
            authorization_id: id.into(),
            held: vec![pb::Amount {
                currency: "EUR".into(),
                amount_minor: amount,
            }],
            ..Default::default()
        }
    }

    /// A consistent account: deposit 100.00, one open hold of 10.00, one cleared spend of 5.00.
    fn consistent() -> (Ledger, Observed) {
        let mut ledger = Ledger::default();
        ledger
            .deposits
            .entry("a".into())
            .or_default()
            .insert("EUR".into(), 10_000);
        ledger.authorizations.insert(
            "a:open".into(),
            Expected {
                account: "a".into(),
                currency: "EUR".into(),
                approved_minor: 1_000,
                state: HoldState::Open,
                cleared_minor: 0,
                approved_at_ms: 0,
            },
        );
        ledger.authorizations.insert(
            "a:done".into(),
            Expected {
                account: "a".into(),
                currency: "EUR".into(),
                approved_minor: 500,
                state: HoldState::Closed,
                cleared_minor: 500,
                approved_at_ms: 0,
            },
        );
        ledger.declined.insert("a:no".into());
        let observed = Observed {
            balance: pb::BalanceSnapshot {
                balances: vec![balance("EUR", 9_500, 1_000)],
                ..Default::default()
            },
            holds: vec![hold("a:open", 1_000)],
            entries: vec![
                entry("1-0", "deposit", 10_000, ""),
                entry("5-0", "cleared", -500, "a:done"),
            ],
            lifecycle_events: vec![
                change("a:open", 2, 0, "authorized", "pending"),
                change("a:done", 3, 0, "authorized", "pending"),
                change("a:done", 5, 0, "cleared", "cleared"),
            ],
            read_at_ms: 1_000,
        };
        (ledger, observed)
    }

    #[test]
    fn a_consistent_account_audits_clean() {
        let (ledger, observed) = consistent();
        let mut summary = AuditSummary::default();
        check_account(&ledger, "a", &observed, &mut summary);
        assert!(summary.findings.is_empty(), "{:?}", summary.findings);
        assert_eq!((summary.holds_checked, summary.entries_checked), (1, 2));
    }

    #[test]
    fn a_hold_gone_is_counted_as_expired_only_when_the_server_says_it_expired() {
        let (mut ledger, mut observed) = consistent();
        // The hold was released (its amount back in available), and nothing says how.
        observed.holds.clear();
        observed.balance.balances[0] = balance("EUR", 9_500, 0);
        ledger.hold_expiry_ms = Some(5_000);
        observed.read_at_ms = 60_000;
        let findings = |ledger: &Ledger, observed: &Observed| {
            let mut summary = AuditSummary::default();
            check_account(ledger, "a", observed, &mut summary);
            (summary.findings, summary.holds_expired)
        };
        let (missing, _) = findings(&ledger, &observed);
        assert!(
            missing.iter().any(|f| f.contains(
                "approved hold a:open is missing, and no lifecycle change says what became of it"
            )),
            "{missing:?}"
        );
        // The server reversed it: the tester never asked, so it is a finding.
        observed
            .lifecycle_events
            .push(change("a:open", 7, 5_500, "reversed", "reversed"));
        let (reversed, _) = findings(&ledger, &observed);
        assert!(
            reversed
                .iter()
                .any(|f| f.contains("a:open is gone (reversed by reversed)")),
            "{reversed:?}"
        );
        // It expired, but sooner than the window allows.
        observed.lifecycle_events.pop();
        observed
            .lifecycle_events
            .push(change("a:open", 7, 2_000, "expired", "expired"));
        let (early, _) = findings(&ledger, &observed);
        assert!(
            early.iter().any(|f| f.contains("before its window")),
            "{early:?}"
        );
        // It expired after its window: accounted for.
        observed.lifecycle_events.pop();
        observed
            .lifecycle_events
            .push(change("a:open", 7, 5_200, "expired", "expired"));
        let (clean, expired) = findings(&ledger, &observed);
        assert!(clean.is_empty(), "{clean:?}");
        assert_eq!(expired, 1);
    }

    #[test]
    fn each_planted_discrepancy_is_found() {
        type Plant = Box<dyn Fn(&mut Observed)>;
        let plants: Vec<(&str, Plant)> = vec![
            (
                "hold a:no exists but was declined",
                Box::new(|o: &mut Observed| o.holds.push(hold("a:no", 1))),
            ),
            (
                "approved hold a:open is missing",
                Box::new(|o: &mut Observed| o.holds.clear()),
            ),
            (
                "appears 2 times",
                Box::new(|o: &mut Observed| o.holds.push(hold("a:open", 1_000))),
            ),
            (
                "holds 999 EUR",
                Box::new(|o: &mut Observed| o.holds[0] = hold("a:open", 999)),
            ),
            (
                "entries sum to",
                Box::new(|o: &mut Observed| o.entries.pop().map(|_| ()).unwrap_or(())),
            ),
            (
                "never approved",
                Box::new(|o: &mut Observed| o.holds.push(hold("x:ghost", 5))),
            ),
            (
                "shares summing",
                Box::new(|o: &mut Observed| o.entries[0].shares[0].amount_minor = 1),
            ),
            (
                "available is -1",
                Box::new(|o: &mut Observed| o.balance.balances[0] = balance("EUR", 999, 1_000)),
            ),
            (
                "the tester cleared 500",
                Box::new(|o: &mut Observed| o.entries[1].amount_minor = -400),
            ),
        ];
        for (expected, plant) in plants {
            let (ledger, mut observed) = consistent();
            plant(&mut observed);
            let mut summary = AuditSummary::default();
            check_account(&ledger, "a", &observed, &mut summary);
            assert!(
                summary.findings.iter().any(|f| f.contains(expected)),
                "planted `{expected}`, found {:?}",
                summary.findings
            );
        }
    }
}
