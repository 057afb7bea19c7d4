//! Card traffic over `tandem.v1`: each handler reads its request into core types and calls
//! `ops::card_traffic`, as the ISO 8583 gateway does with its messages.

use super::*;

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
    spend.kind = fields::spend_kind(&request.kind)?;
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
    let amount = fields::amount(request.amount_minor, &request.currency)?;
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
        Some(amount) => Some(fields::amount(amount, &request.currency)?),
    };
    let body = CommandBody::Reverse {
        authorization,
        replacement,
    };
    lifecycle_traffic(app, principal, key, body).await
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
    let spend = app
        .posting_spend(&account, Some(&authorization), posting_fields(&request)?)
        .await?;
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
    let spend = app
        .posting_spend(
            &account,
            Some(fill_from.unwrap_or(&authorization)),
            posting_fields(request)?,
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
        // Declined 14, as every gateway answers card traffic for a card it does not know.
        return Ok(authorize_response(None, &card_traffic::unknown_card()));
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
        Outcome::Balances { balances } => balances.iter().map(answers::balance).collect(),
        _ => Vec::new(),
    };
    Ok(pb::BalanceInquiryResponse {
        response_code: outcome.response_code().as_str().to_owned(),
        balances,
    })
}
