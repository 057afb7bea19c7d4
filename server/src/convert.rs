//! Between the wire (`tandem.v1` messages, shared by gRPC and HTTP/JSON) and the core's types.
//! Every parser names the field it read, so a bad request gets a precise message.

use serde::Serialize;
use tandem_core::controls::Channels;
use tandem_core::limits::AMOUNT_MINOR_MAX;
use tandem_core::{
    AccountKind, AmountLimit, BalanceSnapshot, BalanceView, CardStatus, Channel, Controls, Country,
    Currency, LimitScope, Mcc, Money, Role, SpendKind, Window, WindowLimit, YearMonth,
};
use tandem_proto::v1 as pb;

use crate::ops::OpError;

/// The snake_case name serde gives a core enum value (`insufficient_funds`).
pub fn snake<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".to_owned(),
    }
}

/// Parses an identifier field (`AccountId::new`, `CardId::new`, ...).
pub fn id<T, E: std::fmt::Display>(
    field: &str,
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, OpError> {
    if text.is_empty() {
        return Err(OpError::invalid(field, "is required"));
    }
    parse(text).map_err(|e| OpError::invalid(field, e))
}

pub fn currency(field: &str, code: &str) -> Result<Currency, OpError> {
    if code.is_empty() {
        return Err(OpError::invalid(field, "is required"));
    }
    Currency::from_alpha(code).map_err(|e| OpError::invalid(field, e))
}

/// A positive amount in minor units, within what ISO 8583 DE 4 can carry.
pub fn amount(amount_minor: i64, code: &str) -> Result<Money, OpError> {
    let currency = currency("currency", code)?;
    if amount_minor <= 0 {
        return Err(OpError::invalid(
            "amount_minor",
            format!("must be a positive integer number of minor units, got {amount_minor}"),
        ));
    }
    if amount_minor > AMOUNT_MINOR_MAX {
        return Err(OpError::invalid(
            "amount_minor",
            format!("must be at most {AMOUNT_MINOR_MAX}"),
        ));
    }
    Ok(Money::new(amount_minor, currency))
}

fn limit(field: &str, value: &pb::Amount) -> Result<AmountLimit, OpError> {
    let money = amount(value.amount_minor, &value.currency)
        .map_err(|e| OpError::invalid(field, e.message()))?;
    Ok(AmountLimit {
        currency: money.currency,
        amount_minor: money.amount_minor,
    })
}

pub fn mcc(field: &str, text: &str) -> Result<Mcc, OpError> {
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OpError::invalid(
            field,
            format!("a merchant category code is four digits, got {text:?}"),
        ));
    }
    let code: u16 = text.parse().map_err(|e| OpError::invalid(field, e))?;
    Mcc::new(code).map_err(|e| OpError::invalid(field, e))
}

pub fn country(field: &str, text: &str) -> Result<Option<Country>, OpError> {
    if text.is_empty() {
        return Ok(None);
    }
    Country::new(text)
        .map(Some)
        .map_err(|e| OpError::invalid(field, e))
}

/// Parses a lower-case name through the core type's serde names.
fn named<T: serde::de::DeserializeOwned>(
    field: &str,
    text: &str,
    allowed: &str,
) -> Result<T, OpError> {
    if text.is_empty() {
        return Err(OpError::invalid(
            field,
            format!("is required (one of {allowed})"),
        ));
    }
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| OpError::invalid(field, format!("must be one of {allowed}, got {text:?}")))
}

pub fn account_kind(text: &str) -> Result<AccountKind, OpError> {
    named("kind", text, "joint, group, kid")
}

pub fn role(text: &str) -> Result<Role, OpError> {
    named("role", text, "owner, member, guardian, child")
}

pub fn card_status(text: &str) -> Result<CardStatus, OpError> {
    named("status", text, "active, frozen, blocked")
}

pub fn channel(text: &str) -> Result<Channel, OpError> {
    named(
        "channel",
        text,
        "ecommerce, chip, contactless, magstripe, atm, wallet",
    )
}

pub fn spend_kind(text: &str) -> Result<SpendKind, OpError> {
    if text.is_empty() {
        return Ok(SpendKind::Purchase);
    }
    match text {
        "purchase" => Ok(SpendKind::Purchase),
        "cash" => Ok(SpendKind::Cash),
        "purchase_with_cashback" => Ok(SpendKind::PurchaseWithCashback),
        other => Err(OpError::invalid(
            "kind",
            format!("must be one of purchase, cash, purchase_with_cashback, got {other:?}"),
        )),
    }
}

/// `YYMM`, or four years from `now` when empty.
pub fn expiry(text: &str, now_ms: i64) -> Result<YearMonth, OpError> {
    if text.is_empty() {
        let (year, month, _) = tandem_core::Timestamp(now_ms).civil_date();
        let year = u16::try_from(year + 4).unwrap_or(9999);
        return YearMonth::new(year, month as u8).map_err(|e| OpError::invalid("expiry", e));
    }
    YearMonth::parse_yymm(text).map_err(|e| OpError::invalid("expiry", e))
}

pub fn controls(value: &pb::Controls) -> Result<Controls, OpError> {
    let mut controls = Controls::default();
    let mut window = |scope, window, amount: Option<AmountLimit>, count: Option<u32>| {
        controls.window_limits.push(WindowLimit {
            scope,
            window,
            amount,
            count,
        });
    };
    let limits = value.limits.clone().unwrap_or_default();
    let mut daily_amount = None;
    let mut monthly_amount = None;
    for (name, amount, target) in [
        ("limits.daily", &limits.daily, Some(Window::Day)),
        ("limits.weekly", &limits.weekly, Some(Window::Week)),
        ("limits.monthly", &limits.monthly, Some(Window::Month)),
        ("limits.lifetime", &limits.lifetime, Some(Window::Lifetime)),
    ] {
        if let (Some(amount), Some(target)) = (amount, target) {
            let parsed = limit(name, amount)?;
            match target {
                Window::Day => daily_amount = Some(parsed),
                Window::Month => monthly_amount = Some(parsed),
                other => window(LimitScope::All, other, Some(parsed), None),
            }
        }
    }
    if daily_amount.is_some() || value.count_daily.is_some() {
        window(
            LimitScope::All,
            Window::Day,
            daily_amount,
            value.count_daily,
        );
    }
    if monthly_amount.is_some() || value.count_monthly.is_some() {
        window(
            LimitScope::All,
            Window::Month,
            monthly_amount,
            value.count_monthly,
        );
    }
    if let Some(atm) = &value.atm_daily {
        window(
            LimitScope::Cash,
            Window::Day,
            Some(limit("atm_daily", atm)?),
            None,
        );
    }
    if let Some(per_transaction) = &limits.per_transaction {
        controls.per_transaction = Some(limit("limits.per_transaction", per_transaction)?);
    }
    for code in &value.blocked_mcc {
        controls.blocked_mccs.insert(mcc("blocked_mcc", code)?);
    }
    if !value.allowed_mcc.is_empty() {
        let mut allowed = std::collections::BTreeSet::new();
        for code in &value.allowed_mcc {
            allowed.insert(mcc("allowed_mcc", code)?);
        }
        controls.allowed_mccs = Some(allowed);
    }
    for code in &value.blocked_countries {
        if let Some(country) = country("blocked_countries", code)? {
            controls.blocked_countries.insert(country);
        }
    }
    if let Some(channels) = &value.channels {
        let mut permitted = Channels::default();
        for (channel, setting) in [
            (Channel::Ecommerce, channels.ecommerce),
            (Channel::Chip, channels.chip),
            (Channel::Contactless, channels.contactless),
            (Channel::Magstripe, channels.magstripe),
            (Channel::Atm, channels.atm),
            (Channel::Wallet, channels.wallet),
        ] {
            if let Some(on) = setting {
                permitted = permitted.with(channel, on);
            }
        }
        controls.channels = permitted;
    }
    Ok(controls)
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
    }
}
