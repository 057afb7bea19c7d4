//! From an outcome to the answer's fields: DE 39, the approval code, DE 4 on a partial
//! approval, DE 54's balance blocks.

use super::*;

/// One DE 54 block: account type 00, amount type, currency, sign, 12 digits.
pub(super) fn amount_block(amount_type: &str, currency: Currency, minor: i64) -> String {
    let sign = if minor < 0 { 'D' } else { 'C' };
    format!(
        "00{amount_type}{:03}{sign}{:012}",
        currency.numeric(),
        minor.unsigned_abs()
    )
}

pub(super) fn balance_blocks(balance: &BalanceView) -> [String; 2] {
    [
        amount_block("01", balance.currency, balance.ledger_minor),
        amount_block("02", balance.currency, balance.available_minor),
    ]
}

pub(super) fn decision_answer(outcome: &Outcome) -> Answer {
    let code = outcome.response_code().as_str();
    match outcome {
        Outcome::Approved {
            approved,
            requested,
            approval_code,
            balance,
            ..
        } => {
            let mut amounts = balance_blocks(balance).to_vec();
            let partial = approved.amount_minor < requested.amount_minor;
            if partial {
                amounts.push(amount_block(
                    "57",
                    requested.currency,
                    requested.amount_minor,
                ));
            }
            Answer {
                code,
                approval_code: Some(approval_code.as_str().to_owned()),
                approved_minor: partial.then_some(approved.amount_minor),
                amounts,
                lifecycle: None,
            }
        }
        Outcome::Declined { balance, .. } => Answer {
            code,
            amounts: balance.iter().flat_map(balance_blocks).collect(),
            ..Answer::default()
        },
        // At most 240 characters of DE 54: six balances.
        Outcome::Balances { balances } => Answer {
            code,
            amounts: balances.iter().take(6).flat_map(balance_blocks).collect(),
            ..Answer::default()
        },
        Outcome::Accepted { balance } => Answer {
            code,
            amounts: balance.iter().flat_map(balance_blocks).collect(),
            ..Answer::default()
        },
        Outcome::Rejected { .. } => Answer::code(code),
    }
}
