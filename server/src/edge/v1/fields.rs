//! Reading `tandem.v1` request fields into core types: one parser per kind of field, each
//! naming the field it read, so a bad request gets a precise message. The contract's parsing
//! lives here and nowhere else.

use super::*;

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
    crate::ops::admin::currency(field, code)
}

/// A positive amount in minor units of the named currency (`ops::card_traffic::amount`).
pub fn amount(amount_minor: i64, code: &str) -> Result<Money, OpError> {
    crate::ops::card_traffic::amount(amount_minor, currency("currency", code)?)
}

pub fn limit(field: &str, value: &pb::Amount) -> Result<AmountLimit, OpError> {
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
pub fn named<T: serde::de::DeserializeOwned>(
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

pub fn key(text: &str) -> Result<IdempotencyKey, OpError> {
    id("idempotency_key", text, IdempotencyKey::new)
}

pub fn account_id(text: &str) -> Result<AccountId, OpError> {
    let account = id("account_id", text, AccountId::new)?;
    if text.len() > ACCOUNT_ID_BYTES_MAX {
        return Err(OpError::invalid(
            "account_id",
            format!("is at most {ACCOUNT_ID_BYTES_MAX} bytes"),
        ));
    }
    Ok(account)
}

pub fn member_id(text: &str) -> Result<MemberId, OpError> {
    id("member_id", text, MemberId::new)
}

pub fn card_id(field: &str, text: &str) -> Result<CardId, OpError> {
    id(field, text, CardId::new)
}

pub fn authorization_id(text: &str) -> Result<AuthorizationId, OpError> {
    id("authorization_id", text, AuthorizationId::new)
}

pub fn merchant(mcc: &str, country: &str, name: &str) -> Result<Merchant, OpError> {
    let name = merchant_name(name)?;
    Ok(Merchant {
        mcc: self::mcc("mcc", mcc)?,
        country: self::country("merchant_country", country)?,
        name: name.map(Into::into),
    })
}

/// The wire fields of a card spend, before parsing.
pub struct SpendFields<'a> {
    pub amount_minor: i64,
    pub currency: &'a str,
    pub mcc: &'a str,
    pub channel: &'a str,
    pub merchant_name: &'a str,
    pub merchant_country: &'a str,
}

pub fn spend(card: CardId, fields: SpendFields<'_>) -> Result<Spend, OpError> {
    Ok(Spend {
        card,
        amount: amount(fields.amount_minor, fields.currency)?,
        cashback_minor: 0,
        kind: tandem_core::SpendKind::Purchase,
        merchant: merchant(fields.mcc, fields.merchant_country, fields.merchant_name)?,
        channel: channel(fields.channel)?,
        presented_expiry: None,
        partial_allowed: false,
    })
}

/// A PAN field: absent when empty (the operation checks its digits).
pub fn optional_pan(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

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

/// A split rule: `payer_pays`, `equal`, or `weighted` with each member's weight.
pub fn split_rule(request: &pb::SplitRuleRequest) -> Result<tandem_core::SplitRule, OpError> {
    use tandem_core::SplitRule;
    Ok(match request.rule.as_str() {
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
    })
}

/// A funding policy: `largest_available_first`, or `priority` with its currencies in order.
pub fn funding_policy(
    request: &pb::FundingPolicyRequest,
) -> Result<tandem_core::FundingPolicy, OpError> {
    use tandem_core::FundingPolicy;
    Ok(match request.policy.as_str() {
        "largest_available_first" => FundingPolicy::LargestAvailableFirst,
        "priority" => FundingPolicy::Priority {
            currencies: request
                .currencies
                .iter()
                .map(|c| currency("currencies", c))
                .collect::<Result<_, _>>()?,
        },
        other => {
            return Err(OpError::invalid(
                "policy",
                format!("must be largest_available_first or priority, got {other:?}"),
            ));
        }
    })
}

/// A posting's fields as its request gives them; an empty one is `None`, for the operation to
/// fill from the lifecycle (`App::posting_spend`).
pub fn posting_fields(request: &pb::PostingRequest) -> Result<PostingFields, OpError> {
    let given = |text: &str| (!text.is_empty()).then_some(());
    Ok(PostingFields {
        card: given(&request.card_id)
            .map(|()| card_id("card_id", &request.card_id))
            .transpose()?,
        amount_minor: request.amount_minor,
        currency: given(&request.currency)
            .map(|()| currency("currency", &request.currency))
            .transpose()?,
        mcc: given(&request.mcc)
            .map(|()| mcc("mcc", &request.mcc))
            .transpose()?,
        channel: given(&request.channel)
            .map(|()| channel(&request.channel))
            .transpose()?,
        merchant_name: merchant_name(&request.merchant_name)?.map(ToOwned::to_owned),
        merchant_country: country("merchant_country", &request.merchant_country)?,
    })
}

/// A merchant name: at most 64 bytes; `None` when empty.
fn merchant_name(name: &str) -> Result<Option<&str>, OpError> {
    if name.len() > 64 {
        return Err(OpError::invalid("merchant_name", "is at most 64 bytes"));
    }
    Ok((!name.is_empty()).then_some(name))
}

/// A read's `consistency`: empty or `applied`, or `linearizable`.
pub fn consistency(text: &str) -> Result<crate::ops::reads::Consistency, OpError> {
    use crate::ops::reads::Consistency;
    match text {
        "" | "applied" => Ok(Consistency::Applied),
        "linearizable" => Ok(Consistency::Linearizable),
        other => Err(OpError::invalid(
            "consistency",
            format!("must be applied or linearizable, not {other:?}"),
        )),
    }
}
