//! Creates a run's accounts, members, cards, controls, FX rates and deposits through the
//! admin API, many at once.

use futures_util::StreamExt;
use tandem_proto::v1 as pb;

use crate::nodes::Nodes;
use crate::scenario::Population;
use crate::target::AdminCall;

/// Rates against EUR used by every run (decimal strings, as the API takes them).
pub const RATES: &[(&str, &str)] = &[
    ("GBP", "0.8571"),
    ("USD", "1.0842"),
    ("JPY", "162.35"),
    ("CHF", "0.9412"),
    ("SEK", "11.482"),
];

fn amount(currency: &str, amount_minor: i64) -> pb::Amount {
    pb::Amount {
        currency: currency.to_owned(),
        amount_minor,
    }
}

/// The calls that set up account `index`, in order.
pub fn account_calls(population: &Population, index: usize) -> Vec<AdminCall> {
    let account_id = population.account_id(index);
    let kid = population.is_kid(index);
    let mut calls = vec![AdminCall::Open(pb::OpenAccountRequest {
        account_id: account_id.clone(),
        kind: if kid {
            "kid"
        } else if population.members_per_account > 2 {
            "group"
        } else {
            "joint"
        }
        .to_owned(),
    })];
    let members = population.members(index);
    for (position, (member, role)) in members.iter().enumerate() {
        calls.push(AdminCall::Member(pb::MemberRequest {
            account_id: account_id.clone(),
            member_id: member.clone(),
            role: (*role).to_owned(),
        }));
        calls.push(AdminCall::Card(pb::IssueCardRequest {
            account_id: account_id.clone(),
            card_id: population.card_id(index, member),
            member_id: member.clone(),
            pan: population.pan(index, position),
            ..Default::default()
        }));
    }
    let home = population
        .currencies
        .first()
        .cloned()
        .unwrap_or_else(|| "EUR".into());
    if kid {
        calls.push(AdminCall::Controls(Box::new(pb::MemberControlsRequest {
            account_id: account_id.clone(),
            member_id: "child".into(),
            controls: Some(pb::Controls {
                limits: Some(pb::Limits {
                    per_transaction: Some(amount(&home, 5_000)),
                    daily: Some(amount(&home, 20_000)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })));
        calls.push(AdminCall::Deposit(pb::MoneyRequest {
            account_id: account_id.clone(),
            idempotency_key: format!("{account_id}-deposit"),
            currency: home,
            amount_minor: population.kid_deposit_minor,
            member_id: "guardian".into(),
        }));
    } else {
        for currency in &population.currencies {
            calls.push(AdminCall::Deposit(pb::MoneyRequest {
                account_id: account_id.clone(),
                idempotency_key: format!("{account_id}-deposit-{currency}"),
                currency: currency.clone(),
                amount_minor: population.deposit_minor,
                member_id: members[0].0.clone(),
            }));
        }
    }
    calls
}

/// Provisions every account with up to `parallel` accounts in flight.
pub async fn provision(
    target: &Nodes,
    population: &Population,
    parallel: usize,
) -> Result<(), String> {
    target
        .admin(AdminCall::Rates(pb::SetRatesRequest {
            base: "EUR".into(),
            rates: RATES
                .iter()
                .map(|(c, r)| ((*c).to_owned(), (*r).to_owned()))
                .collect(),
        }))
        .await?;
    let results: Vec<Result<(), String>> = futures_util::stream::iter(0..population.accounts)
        .map(|index| async move {
            for call in account_calls(population, index) {
                target.admin(call).await?;
            }
            Ok(())
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// The ledger a run starts with: the deposits provisioning made.
pub fn ledger_of_deposits(population: &Population) -> crate::audit::Ledger {
    let mut ledger = crate::audit::Ledger::default();
    for index in 0..population.accounts {
        for call in account_calls(population, index) {
            if let AdminCall::Deposit(deposit) = call {
                *ledger
                    .deposits
                    .entry(deposit.account_id)
                    .or_default()
                    .entry(deposit.currency)
                    .or_default() += deposit.amount_minor;
            }
        }
    }
    ledger
}
