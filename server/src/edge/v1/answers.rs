//! Rendering core outcomes and views as `tandem.v1` response messages.

use super::*;

pub fn result(outcome: &Outcome) -> pb::CommandResult {
    let (status, reason, balance) = match outcome {
        Outcome::Approved {
            approved,
            requested,
            balance,
            ..
        } => (
            if approved.amount_minor < requested.amount_minor {
                "partially_approved"
            } else {
                "approved"
            },
            String::new(),
            Some(*balance),
        ),
        Outcome::Declined { reason, balance } => ("declined", snake(reason), *balance),
        Outcome::Accepted { balance } => ("accepted", String::new(), *balance),
        Outcome::Rejected { reason } => ("rejected", snake(reason), None),
        Outcome::Balances { balances } => ("accepted", String::new(), balances.first().copied()),
    };
    pb::CommandResult {
        status: status.to_owned(),
        response_code: outcome.response_code().as_str().to_owned(),
        reason,
        balance: balance.as_ref().map(self::balance),
    }
}

/// The answer to card traffic; `authorization` is the lifecycle (none for an unknown card).
pub fn authorize_response(
    authorization: Option<&AuthorizationId>,
    outcome: &Outcome,
) -> pb::AuthorizeResponse {
    let summary = result(outcome);
    let (approved_amount_minor, approval_code) = match outcome {
        Outcome::Approved {
            approved,
            approval_code,
            ..
        } => (approved.amount_minor, approval_code.as_str().to_owned()),
        _ => (0, String::new()),
    };
    pb::AuthorizeResponse {
        authorization_id: authorization.map(ToString::to_string).unwrap_or_default(),
        status: summary.status,
        approved_amount_minor,
        response_code: summary.response_code,
        decline_reason: summary.reason,
        approval_code,
        balance: summary.balance,
    }
}

pub fn created(id: impl ToString, outcome: &Outcome) -> pb::Created {
    pb::Created {
        id: id.to_string(),
        result: Some(result(outcome)),
    }
}

pub fn balance(view: &BalanceView) -> pb::Balance {
    pb::Balance {
        currency: view.currency.alpha().to_owned(),
        ledger_minor: view.ledger_minor,
        held_minor: view.held_minor,
        available_minor: view.available_minor,
    }
}

pub fn money(value: Money) -> pb::Amount {
    pb::Amount {
        currency: value.currency.alpha().to_owned(),
        amount_minor: value.amount_minor,
    }
}

pub fn snapshot(view: &BalanceSnapshot, cause: String) -> pb::BalanceSnapshot {
    pb::BalanceSnapshot {
        account_id: view.account.to_string(),
        seq: view.seq,
        status: snake(&view.status),
        balances: view.balances.iter().map(balance).collect(),
        members: view
            .members
            .iter()
            .map(|member| pb::MemberUsage {
                member_id: member.member.to_string(),
                role: snake(&member.role),
                usage: member
                    .limits
                    .iter()
                    .map(|limit| pb::LimitUsage {
                        scope: snake(&limit.scope),
                        window: snake(&limit.window),
                        limit: limit.limit.map(money),
                        used_minor: limit.used_minor,
                        limit_count: limit.limit_count,
                        used_count: limit.used_count,
                        resets_at_ms: limit.resets_at.map_or(0, |t| t.0),
                    })
                    .collect(),
            })
            .collect(),
        overdrawn: view.overdrawn,
        cause,
        commit_index: 0,
    }
}
