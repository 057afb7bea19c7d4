//! Reads: balance, holds, positions, a lifecycle's events, the posted-entries feed and the
//! live balance stream.

use super::*;

/// The account a read names and where the read stands (the commit index it reports), once
/// the caller may read it: for a linearizable read, after this node applied everything
/// committed before it.
async fn read_point(
    app: &App,
    principal: &Principal,
    account_id_text: &str,
    consistency: &str,
) -> Result<(tandem_core::AccountId, u64), OpError> {
    let account = account_id(account_id_text)?;
    let commit_index = app
        .read_point(principal, &account, fields::consistency(consistency)?)
        .await?;
    Ok((account, commit_index))
}

pub async fn balance(
    app: &App,
    principal: &Principal,
    request: pb::AccountRef,
) -> Result<pb::BalanceSnapshot, OpError> {
    let (account, commit_index) =
        read_point(app, principal, &request.account_id, &request.consistency).await?;
    let snapshot = app.balance(principal, &account).await?;
    Ok(pb::BalanceSnapshot {
        commit_index,
        ..answers::snapshot(&snapshot, String::new())
    })
}

pub async fn holds(
    app: &App,
    principal: &Principal,
    request: pb::AccountRef,
) -> Result<pb::Holds, OpError> {
    let (account, commit_index) =
        read_point(app, principal, &request.account_id, &request.consistency).await?;
    let state = app.committed_state(principal, &account).await?;
    let mut holds: Vec<pb::Hold> = state
        .authorizations
        .values()
        .filter(|a| !a.legs.is_empty())
        .map(|a| pb::Hold {
            authorization_id: a.id.to_string(),
            card_id: a.card.as_ref().map(|c| c.to_string()).unwrap_or_default(),
            member_id: a.member.to_string(),
            state: snake(&a.state),
            requested: Some(answers::money(a.requested)),
            held: a.legs.iter().map(|l| answers::money(l.amount())).collect(),
            expires_at_ms: a.expires_at.0,
            merchant_name: a
                .merchant
                .as_ref()
                .and_then(|m| m.name.as_ref())
                .map(|n| n.to_string())
                .unwrap_or_default(),
            mcc: a
                .merchant
                .as_ref()
                .map(|m| format!("{:04}", m.mcc.code()))
                .unwrap_or_default(),
        })
        .collect();
    holds.sort_by(|a, b| a.authorization_id.cmp(&b.authorization_id));
    Ok(pb::Holds {
        account_id: account.to_string(),
        holds,
        seq: state.seq,
        commit_index,
    })
}

pub async fn positions(
    app: &App,
    principal: &Principal,
    request: pb::AccountRef,
) -> Result<pb::Positions, OpError> {
    let (account, commit_index) =
        read_point(app, principal, &request.account_id, &request.consistency).await?;
    let state = app.committed_state(principal, &account).await?;
    let positions = state
        .positions
        .iter()
        .map(|(member, by_currency)| pb::Position {
            member_id: member.to_string(),
            net: by_currency
                .iter()
                .map(|(currency, amount)| {
                    answers::money(tandem_core::Money::new(*amount, *currency))
                })
                .collect(),
        })
        .collect();
    let settle_up = state
        .settle_up()
        .into_iter()
        .map(|t| pb::Transfer {
            from_member_id: t.from.to_string(),
            to_member_id: t.to.to_string(),
            amount: Some(answers::money(t.amount)),
        })
        .collect();
    Ok(pb::Positions {
        account_id: account.to_string(),
        positions,
        settle_up,
        seq: state.seq,
        commit_index,
    })
}

pub async fn lifecycle_events(
    app: &App,
    principal: &Principal,
    request: pb::EntriesRequest,
) -> Result<pb::LifecycleEvents, OpError> {
    let (account, commit_index) =
        read_point(app, principal, &request.account_id, &request.consistency).await?;
    let after = if request.after.is_empty() {
        None
    } else {
        Some(request.after.parse::<u64>().map_err(|_| {
            OpError::invalid("after", "is a cursor like \"12\" from an earlier page")
        })?)
    };
    let page = app
        .lifecycle_events(principal, &account, after, request.limit)
        .await?;
    let events: Vec<pb::LifecycleEvent> = page
        .events
        .iter()
        .filter_map(|(seq, movement)| {
            let record = movement.authorization.as_ref()?;
            let currency = record.spend_currency();
            Some(pb::LifecycleEvent {
                id: seq.to_string(),
                seq: *seq,
                at_ms: movement.at.0,
                cause: snake(&movement.cause),
                authorization_id: record.id.to_string(),
                state: snake(&record.state),
                member_id: movement.member.to_string(),
                held: movement.held.iter().map(|m| answers::money(*m)).collect(),
                authorized: Some(answers::money(tandem_core::Money::new(
                    record.authorized_minor,
                    currency,
                ))),
                cleared: Some(answers::money(tandem_core::Money::new(
                    record.cleared_minor,
                    currency,
                ))),
            })
        })
        .collect();
    let next = if page.more {
        events.last().map(|e| e.id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::LifecycleEvents {
        account_id: account.to_string(),
        events,
        next,
        commit_index,
    })
}

pub async fn entries(
    app: &App,
    principal: &Principal,
    request: pb::EntriesRequest,
) -> Result<pb::Entries, OpError> {
    let (account, commit_index) =
        read_point(app, principal, &request.account_id, &request.consistency).await?;
    let after = if request.after.is_empty() {
        After::default()
    } else {
        request
            .after
            .split_once('-')
            .and_then(|(s, i)| {
                Some(After {
                    seq: s.parse::<u64>().ok()?,
                    index: Some(i.parse::<usize>().ok()?),
                })
            })
            .ok_or_else(|| {
                OpError::invalid("after", "is a cursor like \"12-0\" from an earlier page")
            })?
    };
    let page = app
        .entries(principal, &account, after, request.limit)
        .await?;
    let entries: Vec<pb::PostedEntry> = page
        .entries
        .iter()
        .map(|posted| {
            let movement = &posted.movement;
            let entry = &movement.entries[posted.index];
            pb::PostedEntry {
                id: format!("{}-{}", posted.seq, posted.index),
                seq: posted.seq,
                at_ms: movement.at.0,
                cause: snake(&movement.cause),
                kind: snake(&entry.kind),
                currency: entry.currency.alpha().to_owned(),
                amount_minor: entry.amount_minor,
                member_id: movement.member.to_string(),
                authorization_id: movement
                    .authorization
                    .as_ref()
                    .map(|a| a.id.to_string())
                    .unwrap_or_default(),
                shares: entry
                    .shares
                    .iter()
                    .map(|(member, amount)| pb::Share {
                        member_id: member.to_string(),
                        amount_minor: *amount,
                    })
                    .collect(),
            }
        })
        .collect();
    let next = if page.more {
        entries.last().map(|e| e.id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::Entries {
        account_id: account.to_string(),
        entries,
        next,
        commit_index,
    })
}

/// A live balance stream in `tandem.v1`'s shape (gRPC `WatchBalance`, HTTP SSE): the
/// operation's updates rendered as `BalanceSnapshot` messages.
pub async fn watch_balance(
    app: &App,
    principal: &Principal,
    account_id: &str,
    seen: Option<u64>,
) -> Result<impl futures_util::Stream<Item = pb::BalanceSnapshot> + Send + 'static, OpError> {
    use futures_util::StreamExt;
    let account = fields::account_id(account_id)?;
    let updates = app.watch_balance(principal, account, seen).await?;
    Ok(updates.map(|update| answers::snapshot(&update.snapshot, update.cause)))
}
