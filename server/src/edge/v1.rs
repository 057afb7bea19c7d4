//! The `tandem.v1` contract, which gRPC (`edge/grpc.rs`) and HTTP/JSON (`edge/http.rs`)
//! both speak: each function reads one request message into core types (the shape first,
//! then the core type; every field error names its field), calls the operation in
//! `crate::ops`, and renders the core outcome as the response message. Nothing here decides
//! anything or reads state itself; a posting that leaves fields out gets them from its
//! lifecycle through the operation `App::lifecycle`.

use tandem_core::{
    AccountId, AuthorizationId, CardId, CommandBody, IdempotencyKey, MemberId, Merchant, Outcome,
    Spend,
};
use tandem_proto::v1 as pb;

use crate::app::App;
use crate::convert::{self, id, snake};
use crate::keys::Principal;
use crate::ops::OpError;
use crate::ops::accounts::ACCOUNT_ID_BYTES_MAX;
use crate::ops::admin::SavedRates;
use crate::ops::card_traffic::{self, CardName, lifecycle_account, lifecycle_id};
use crate::ops::reads::After;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn key(text: &str) -> Result<IdempotencyKey, OpError> {
    id("idempotency_key", text, IdempotencyKey::new)
}

pub(crate) fn account_id(text: &str) -> Result<AccountId, OpError> {
    let account = id("account_id", text, AccountId::new)?;
    if text.len() > ACCOUNT_ID_BYTES_MAX {
        return Err(OpError::invalid(
            "account_id",
            format!("is at most {ACCOUNT_ID_BYTES_MAX} bytes"),
        ));
    }
    Ok(account)
}

pub(crate) fn member_id(text: &str) -> Result<MemberId, OpError> {
    id("member_id", text, MemberId::new)
}

fn card_id(field: &str, text: &str) -> Result<CardId, OpError> {
    id(field, text, CardId::new)
}

fn authorization_id(text: &str) -> Result<AuthorizationId, OpError> {
    id("authorization_id", text, AuthorizationId::new)
}

fn merchant(mcc: &str, country: &str, name: &str) -> Result<Merchant, OpError> {
    if name.len() > 64 {
        return Err(OpError::invalid("merchant_name", "is at most 64 bytes"));
    }
    Ok(Merchant {
        mcc: convert::mcc("mcc", mcc)?,
        country: convert::country("merchant_country", country)?,
        name: (!name.is_empty()).then(|| name.into()),
    })
}

/// The wire fields of a card spend, before parsing.
struct SpendFields<'a> {
    amount_minor: i64,
    currency: &'a str,
    mcc: &'a str,
    channel: &'a str,
    merchant_name: &'a str,
    merchant_country: &'a str,
}

fn spend(card: CardId, fields: SpendFields<'_>) -> Result<Spend, OpError> {
    Ok(Spend {
        card,
        amount: convert::amount(fields.amount_minor, fields.currency)?,
        cashback_minor: 0,
        kind: tandem_core::SpendKind::Purchase,
        merchant: merchant(fields.mcc, fields.merchant_country, fields.merchant_name)?,
        channel: convert::channel(fields.channel)?,
        presented_expiry: None,
        partial_allowed: false,
    })
}

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
        balance: balance.as_ref().map(convert::balance),
    }
}

/// The answer to card traffic; `authorization` is the lifecycle (none for an unknown card).
fn authorize_response(
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

fn created(id: impl ToString, outcome: &Outcome) -> pb::Created {
    pb::Created {
        id: id.to_string(),
        result: Some(result(outcome)),
    }
}

/// A PAN field: absent when empty (the operation checks its digits).
fn optional_pan(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

// ---------------------------------------------------------------------- accounts and members

pub async fn open_account(
    app: &App,
    principal: &Principal,
    request: pb::OpenAccountRequest,
) -> Result<pb::Created, OpError> {
    let account = account_id(&request.account_id)?;
    let kind = convert::account_kind(&request.kind)?;
    let outcome = app.open_account(principal, &account, kind).await?;
    Ok(created(account, &outcome))
}

pub async fn add_member(
    app: &App,
    principal: &Principal,
    request: pb::MemberRequest,
) -> Result<pb::Created, OpError> {
    let account = account_id(&request.account_id)?;
    let member = member_id(&request.member_id)?;
    let role = convert::role(&request.role)?;
    let outcome = app.add_member(principal, &account, &member, role).await?;
    Ok(created(member, &outcome))
}

pub async fn update_member(
    app: &App,
    principal: &Principal,
    request: pb::MemberRequest,
) -> Result<pb::CommandResult, OpError> {
    let account = account_id(&request.account_id)?;
    let member = member_id(&request.member_id)?;
    let role = convert::role(&request.role)?;
    let outcome = app.update_member(principal, &account, member, role).await?;
    Ok(result(&outcome))
}

pub async fn remove_member(
    app: &App,
    principal: &Principal,
    request: pb::RemoveMemberRequest,
) -> Result<pb::CommandResult, OpError> {
    let account = account_id(&request.account_id)?;
    let member = member_id(&request.member_id)?;
    let outcome = app.remove_member(principal, &account, member).await?;
    Ok(result(&outcome))
}

pub async fn set_split_rule(
    app: &App,
    principal: &Principal,
    request: pb::SplitRuleRequest,
) -> Result<pb::CommandResult, OpError> {
    use tandem_core::SplitRule;
    let account = account_id(&request.account_id)?;
    let rule = match request.rule.as_str() {
        "payer_pays" => SplitRule::PayerPays,
        "equal" => SplitRule::Equal,
        "weighted" => SplitRule::Weighted {
            weights: request
                .weights
                .iter()
                .map(|w| Ok((member_id(&w.member_id)?, w.weight)))
                .collect::<Result<_, OpError>>()?,
        },
        other => {
            return Err(OpError::invalid(
                "rule",
                format!("must be one of payer_pays, equal, weighted, got {other:?}"),
            ));
        }
    };
    let outcome = app.set_split_rule(principal, &account, rule).await?;
    Ok(result(&outcome))
}

pub async fn set_funding_policy(
    app: &App,
    principal: &Principal,
    request: pb::FundingPolicyRequest,
) -> Result<pb::CommandResult, OpError> {
    use tandem_core::FundingPolicy;
    let account = account_id(&request.account_id)?;
    let policy = match request.policy.as_str() {
        "largest_available_first" => FundingPolicy::LargestAvailableFirst,
        "priority" => FundingPolicy::Priority {
            currencies: request
                .currencies
                .iter()
                .map(|c| convert::currency("currencies", c))
                .collect::<Result<_, _>>()?,
        },
        other => {
            return Err(OpError::invalid(
                "policy",
                format!("must be largest_available_first or priority, got {other:?}"),
            ));
        }
    };
    let outcome = app.set_funding_policy(principal, &account, policy).await?;
    Ok(result(&outcome))
}

pub async fn deposit(
    app: &App,
    principal: &Principal,
    request: pb::MoneyRequest,
) -> Result<pb::CommandResult, OpError> {
    let account = account_id(&request.account_id)?;
    let key = key(&request.idempotency_key)?;
    let member = member_id(&request.member_id)?;
    let amount = convert::amount(request.amount_minor, &request.currency)?;
    let outcome = app
        .deposit(principal, &account, key, member, amount)
        .await?;
    Ok(result(&outcome))
}

pub async fn withdraw(
    app: &App,
    principal: &Principal,
    request: pb::MoneyRequest,
) -> Result<pb::WithdrawalResponse, OpError> {
    let account = account_id(&request.account_id)?;
    let key = key(&request.idempotency_key)?;
    let member = member_id(&request.member_id)?;
    let amount = convert::amount(request.amount_minor, &request.currency)?;
    let (withdrawal, outcome) = app
        .withdraw(principal, &account, key, member, amount)
        .await?;
    Ok(pb::WithdrawalResponse {
        withdrawal_id: withdrawal.to_string(),
        result: Some(result(&outcome)),
    })
}

// ---------------------------------------------------------------------- cards and controls

pub async fn issue_card(
    app: &App,
    principal: &Principal,
    request: pb::IssueCardRequest,
) -> Result<pb::Created, OpError> {
    let account = account_id(&request.account_id)?;
    let card = card_id("card_id", &request.card_id)?;
    let member = member_id(&request.member_id)?;
    let expiry = convert::expiry(&request.expiry, now_ms())?;
    let pan = optional_pan(&request.pan);
    let outcome = app
        .issue_card(principal, &account, &card, member, pan, expiry)
        .await?;
    Ok(created(card, &outcome))
}

pub async fn replace_card(
    app: &App,
    principal: &Principal,
    request: pb::ReplaceCardRequest,
) -> Result<pb::Created, OpError> {
    let card = card_id("card_id", &request.card_id)?;
    let new_card = card_id("new_card_id", &request.new_card_id)?;
    let expiry = convert::expiry(&request.expiry, now_ms())?;
    let pan = optional_pan(&request.pan);
    let outcome = app
        .replace_card(principal, card, &new_card, pan, expiry)
        .await?;
    Ok(created(new_card, &outcome))
}

pub async fn set_card_status(
    app: &App,
    principal: &Principal,
    request: pb::CardStatusRequest,
) -> Result<pb::CommandResult, OpError> {
    let card = card_id("card_id", &request.card_id)?;
    let status = convert::card_status(&request.status)?;
    let outcome = app.set_card_status(principal, card, status).await?;
    Ok(result(&outcome))
}

pub async fn set_member_controls(
    app: &App,
    principal: &Principal,
    request: pb::MemberControlsRequest,
) -> Result<pb::CommandResult, OpError> {
    let account = account_id(&request.account_id)?;
    let member = member_id(&request.member_id)?;
    let controls = convert::controls(&request.controls.unwrap_or_default())?;
    let outcome = app
        .set_member_controls(principal, &account, member, controls)
        .await?;
    Ok(result(&outcome))
}

pub async fn set_card_controls(
    app: &App,
    principal: &Principal,
    request: pb::CardControlsRequest,
) -> Result<pb::CommandResult, OpError> {
    let card = card_id("card_id", &request.card_id)?;
    let controls = convert::controls(&request.controls.unwrap_or_default())?;
    let outcome = app.set_card_controls(principal, card, controls).await?;
    Ok(result(&outcome))
}

// ---------------------------------------------------------------------- rates

/// Reads a rate table from its request.
pub fn rates_table(request: &pb::SetRatesRequest) -> Result<tandem_core::RateTable, OpError> {
    SavedRates {
        base: request.base.clone(),
        rates: request
            .rates
            .iter()
            .map(|(code, rate)| (code.clone(), rate.clone()))
            .collect(),
    }
    .table()
}

pub async fn set_rates(
    app: &App,
    principal: &Principal,
    request: pb::SetRatesRequest,
) -> Result<pb::CommandResult, OpError> {
    app.admin_only(principal, "setting FX rates")?;
    app.set_rates(principal, rates_table(&request)?)?;
    Ok(result(&Outcome::Accepted { balance: None }))
}

// ---------------------------------------------------------------------- card traffic
//
// Each reads its request into core types and calls `ops::card_traffic`, as the ISO 8583
// gateway does with its messages.

pub async fn authorize(
    app: &App,
    principal: &Principal,
    request: pb::AuthorizeRequest,
) -> Result<pb::AuthorizeResponse, OpError> {
    card_traffic::may_send(principal)?;
    let key = key(&request.idempotency_key)?;
    let card = card_id("card_id", &request.card_id)?;
    let mut spend = spend(
        card.clone(),
        SpendFields {
            amount_minor: request.amount_minor,
            currency: &request.currency,
            mcc: &request.mcc,
            channel: &request.channel,
            merchant_name: &request.merchant_name,
            merchant_country: &request.merchant_country,
        },
    )?;
    spend.kind = convert::spend_kind(&request.kind)?;
    spend.partial_allowed = request.partial_allowed;
    spend.cashback_minor = request.cashback_minor;
    let Some((account, _)) = app.find_card(principal, CardName::Id(&card)).await? else {
        return Ok(authorize_response(None, &card_traffic::unknown_card()));
    };
    let authorization = lifecycle_id(&account, &key);
    let body = CommandBody::Authorize {
        authorization: authorization.clone(),
        spend,
        single_message: request.single_message,
    };
    let outcome = app.card_traffic(principal, &account, key, body).await?;
    Ok(authorize_response(Some(&authorization), &outcome))
}

/// Traffic on a lifecycle Tandem named: its id carries the account.
async fn lifecycle_traffic(
    app: &App,
    principal: &Principal,
    key: IdempotencyKey,
    body: CommandBody,
) -> Result<pb::AuthorizeResponse, OpError> {
    let authorization = body
        .authorization()
        .cloned()
        .expect("lifecycle traffic names its lifecycle");
    let account = lifecycle_account(&authorization)?;
    let outcome = app.card_traffic(principal, &account, key, body).await?;
    Ok(authorize_response(Some(&authorization), &outcome))
}

pub async fn increment(
    app: &App,
    principal: &Principal,
    request: pb::IncrementRequest,
) -> Result<pb::AuthorizeResponse, OpError> {
    card_traffic::may_send(principal)?;
    let key = key(&request.idempotency_key)?;
    let authorization = authorization_id(&request.authorization_id)?;
    let amount = convert::amount(request.amount_minor, &request.currency)?;
    let body = CommandBody::Increment {
        authorization,
        amount,
    };
    lifecycle_traffic(app, principal, key, body).await
}

pub async fn reverse(
    app: &App,
    principal: &Principal,
    request: pb::ReverseRequest,
) -> Result<pb::AuthorizeResponse, OpError> {
    card_traffic::may_send(principal)?;
    let key = key(&request.idempotency_key)?;
    let authorization = authorization_id(&request.authorization_id)?;
    lifecycle_account(&authorization)?;
    let replacement = match request.amount_minor {
        None | Some(0) => None,
        Some(amount) => Some(convert::amount(amount, &request.currency)?),
    };
    let body = CommandBody::Reverse {
        authorization,
        replacement,
    };
    lifecycle_traffic(app, principal, key, body).await
}

/// A posting's spend, filling what the request leaves out from the lifecycle it names.
async fn posting_spend(
    app: &App,
    account: &AccountId,
    authorization: Option<&AuthorizationId>,
    request: &pb::PostingRequest,
) -> Result<Spend, OpError> {
    let mut card = request.card_id.clone();
    let mut mcc = request.mcc.clone();
    let mut channel = request.channel.clone();
    let mut currency = request.currency.clone();
    let mut name = request.merchant_name.clone();
    let mut country = request.merchant_country.clone();
    if let Some(authorization) = authorization
        && (card.is_empty() || mcc.is_empty() || channel.is_empty() || currency.is_empty())
        && let Some(lifecycle) = app.lifecycle(account, authorization).await?
    {
        if card.is_empty()
            && let Some(c) = &lifecycle.card
        {
            card = c.to_string();
        }
        if let Some(m) = &lifecycle.merchant {
            if mcc.is_empty() {
                mcc = format!("{:04}", m.mcc.code());
            }
            if name.is_empty()
                && let Some(n) = &m.name
            {
                name = n.to_string();
            }
            if country.is_empty()
                && let Some(c) = &m.country
            {
                country = c.as_str().to_owned();
            }
        }
        if channel.is_empty()
            && let Some(c) = lifecycle.channel
        {
            channel = snake(&c);
        }
        if currency.is_empty() {
            currency = lifecycle.spend_currency().alpha().to_owned();
        }
    }
    if channel.is_empty() {
        channel = "chip".to_owned();
    }
    let card = card_id("card_id", &card)?;
    spend(
        card,
        SpendFields {
            amount_minor: request.amount_minor,
            currency: &currency,
            mcc: &mcc,
            channel: &channel,
            merchant_name: &name,
            merchant_country: &country,
        },
    )
}

pub async fn clear(
    app: &App,
    principal: &Principal,
    request: pb::PostingRequest,
) -> Result<pb::AuthorizeResponse, OpError> {
    card_traffic::may_send(principal)?;
    let key = key(&request.idempotency_key)?;
    let authorization = authorization_id(&request.authorization_id)?;
    let account = lifecycle_account(&authorization)?;
    let spend = posting_spend(app, &account, Some(&authorization), &request).await?;
    let body = CommandBody::Clear {
        authorization,
        spend,
        final_clearing: request.r#final,
    };
    lifecycle_traffic(app, principal, key, body).await
}

/// Advices, force posts and refunds route by card; their lifecycle is the one named, or
/// one derived from the key. `fill_from` is the lifecycle whose card and merchant fill
/// what the request leaves out (the posting's own by default). `None` for an unknown card.
async fn card_posting(
    app: &App,
    principal: &Principal,
    request: &pb::PostingRequest,
    fill_from: Option<&AuthorizationId>,
) -> Result<Option<(AccountId, IdempotencyKey, AuthorizationId, Spend)>, OpError> {
    card_traffic::may_send(principal)?;
    let key = key(&request.idempotency_key)?;
    let card = card_id("card_id", &request.card_id)?;
    let Some((account, _)) = app.find_card(principal, CardName::Id(&card)).await? else {
        return Ok(None);
    };
    let authorization = if request.authorization_id.is_empty() {
        lifecycle_id(&account, &key)
    } else {
        authorization_id(&request.authorization_id)?
    };
    let spend = posting_spend(
        app,
        &account,
        Some(fill_from.unwrap_or(&authorization)),
        request,
    )
    .await?;
    Ok(Some((account, key, authorization, spend)))
}

/// Answers a posting by card: `body` builds its command from the lifecycle and spend.
async fn answer_posting(
    app: &App,
    principal: &Principal,
    request: &pb::PostingRequest,
    fill_from: Option<&AuthorizationId>,
    body: impl FnOnce(AuthorizationId, Spend) -> CommandBody,
) -> Result<pb::AuthorizeResponse, OpError> {
    let Some((account, key, authorization, spend)) =
        card_posting(app, principal, request, fill_from).await?
    else {
        return Err(OpError::not_found(format!("no card {}", request.card_id)));
    };
    let outcome = app
        .card_traffic(principal, &account, key, body(authorization.clone(), spend))
        .await?;
    Ok(authorize_response(Some(&authorization), &outcome))
}

pub async fn advise(
    app: &App,
    principal: &Principal,
    request: pb::PostingRequest,
) -> Result<pb::AuthorizeResponse, OpError> {
    let network_approved = request.network_approved;
    answer_posting(app, principal, &request, None, |authorization, spend| {
        CommandBody::Advise {
            authorization,
            spend,
            network_approved,
        }
    })
    .await
}

pub async fn force_post(
    app: &App,
    principal: &Principal,
    request: pb::PostingRequest,
) -> Result<pb::AuthorizeResponse, OpError> {
    answer_posting(app, principal, &request, None, |authorization, spend| {
        CommandBody::ForcePost {
            authorization,
            spend,
        }
    })
    .await
}

pub async fn refund(
    app: &App,
    principal: &Principal,
    request: pb::PostingRequest,
) -> Result<pb::AuthorizeResponse, OpError> {
    let mut request = request;
    let original = (!request.original_authorization_id.is_empty())
        .then(|| authorization_id(&request.original_authorization_id))
        .transpose()?;
    // The refund is its own lifecycle; it borrows the original's card and merchant.
    request.authorization_id.clear();
    let fill_from = original.clone();
    answer_posting(
        app,
        principal,
        &request,
        fill_from.as_ref(),
        |refund, spend| CommandBody::Refund {
            refund,
            spend,
            original,
        },
    )
    .await
}

pub async fn balance_inquiry(
    app: &App,
    principal: &Principal,
    request: pb::BalanceInquiryRequest,
) -> Result<pb::BalanceInquiryResponse, OpError> {
    card_traffic::may_send(principal)?;
    let key = key(&request.idempotency_key)?;
    let card = card_id("card_id", &request.card_id)?;
    let outcome = match app.find_card(principal, CardName::Id(&card)).await? {
        Some((account, card)) => {
            app.card_traffic(
                principal,
                &account,
                key,
                CommandBody::BalanceInquiry { card },
            )
            .await?
        }
        None => card_traffic::unknown_card(),
    };
    let balances = match &outcome {
        Outcome::Balances { balances } => balances.iter().map(convert::balance).collect(),
        _ => Vec::new(),
    };
    Ok(pb::BalanceInquiryResponse {
        response_code: outcome.response_code().as_str().to_owned(),
        balances,
    })
}

// ---------------------------------------------------------------------- reads

/// The account a read names, for a caller that may read it.
pub fn reader_account(app: &App, principal: &Principal, text: &str) -> Result<AccountId, OpError> {
    let account = account_id(text)?;
    app.may_read(principal, &account)?;
    Ok(account)
}

pub async fn balance(
    app: &App,
    principal: &Principal,
    request: pb::AccountRef,
) -> Result<pb::BalanceSnapshot, OpError> {
    let account = account_id(&request.account_id)?;
    let snapshot = app.balance(principal, &account).await?;
    Ok(convert::snapshot(&snapshot, String::new()))
}

pub async fn holds(
    app: &App,
    principal: &Principal,
    request: pb::AccountRef,
) -> Result<pb::Holds, OpError> {
    let account = account_id(&request.account_id)?;
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
            requested: Some(convert::money(a.requested)),
            held: a.legs.iter().map(|l| convert::money(l.amount())).collect(),
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
    })
}

pub async fn positions(
    app: &App,
    principal: &Principal,
    request: pb::AccountRef,
) -> Result<pb::Positions, OpError> {
    let account = account_id(&request.account_id)?;
    let state = app.committed_state(principal, &account).await?;
    let positions = state
        .positions
        .iter()
        .map(|(member, by_currency)| pb::Position {
            member_id: member.to_string(),
            net: by_currency
                .iter()
                .map(|(currency, amount)| {
                    convert::money(tandem_core::Money::new(*amount, *currency))
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
            amount: Some(convert::money(t.amount)),
        })
        .collect();
    Ok(pb::Positions {
        account_id: account.to_string(),
        positions,
        settle_up,
    })
}

pub async fn lifecycle_events(
    app: &App,
    principal: &Principal,
    request: pb::EntriesRequest,
) -> Result<pb::LifecycleEvents, OpError> {
    let account = account_id(&request.account_id)?;
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
                held: movement.held.iter().map(|m| convert::money(*m)).collect(),
                authorized: Some(convert::money(tandem_core::Money::new(
                    record.authorized_minor,
                    currency,
                ))),
                cleared: Some(convert::money(tandem_core::Money::new(
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
    })
}

pub async fn entries(
    app: &App,
    principal: &Principal,
    request: pb::EntriesRequest,
) -> Result<pb::Entries, OpError> {
    let account = account_id(&request.account_id)?;
    app.may_read(principal, &account)?;
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
    })
}
