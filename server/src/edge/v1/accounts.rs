//! Accounts, members, cards, controls and rates: each handler reads its request
//! (`fields.rs`), calls the operation, and renders the answer (`answers.rs`).

use super::*;

pub async fn open_account(
    app: &App,
    principal: &Principal,
    request: pb::OpenAccountRequest,
) -> Result<pb::Created, OpError> {
    let account = account_id(&request.account_id)?;
    let kind = fields::account_kind(&request.kind)?;
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
    let role = fields::role(&request.role)?;
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
    let role = fields::role(&request.role)?;
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
    let account = account_id(&request.account_id)?;
    let rule = fields::split_rule(&request)?;
    let outcome = app.set_split_rule(principal, &account, rule).await?;
    Ok(result(&outcome))
}

pub async fn set_funding_policy(
    app: &App,
    principal: &Principal,
    request: pb::FundingPolicyRequest,
) -> Result<pb::CommandResult, OpError> {
    let account = account_id(&request.account_id)?;
    let policy = fields::funding_policy(&request)?;
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
    let amount = fields::amount(request.amount_minor, &request.currency)?;
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
    let amount = fields::amount(request.amount_minor, &request.currency)?;
    let (withdrawal, outcome) = app
        .withdraw(principal, &account, key, member, amount)
        .await?;
    Ok(pb::WithdrawalResponse {
        withdrawal_id: withdrawal.to_string(),
        result: Some(result(&outcome)),
    })
}

pub async fn issue_card(
    app: &App,
    principal: &Principal,
    request: pb::IssueCardRequest,
) -> Result<pb::Created, OpError> {
    let account = account_id(&request.account_id)?;
    let card = card_id("card_id", &request.card_id)?;
    let member = member_id(&request.member_id)?;
    let expiry = fields::expiry(&request.expiry, tandem_core::Timestamp::now().millis())?;
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
    let expiry = fields::expiry(&request.expiry, tandem_core::Timestamp::now().millis())?;
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
    let status = fields::card_status(&request.status)?;
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
    let controls = fields::controls(&request.controls.unwrap_or_default())?;
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
    let controls = fields::controls(&request.controls.unwrap_or_default())?;
    let outcome = app.set_card_controls(principal, card, controls).await?;
    Ok(result(&outcome))
}

pub async fn set_rates(
    app: &App,
    principal: &Principal,
    request: pb::SetRatesRequest,
) -> Result<pb::CommandResult, OpError> {
    app.admin_only(principal, "setting FX rates")?;
    app.set_rates(principal, rates_table(&request)?).await?;
    Ok(result(&Outcome::Accepted { balance: None }))
}
