//! From a message to the core command, per the profile's message table: authorizations and
//! financial requests, advices and completions, reversals, refunds and balance inquiries, with
//! the spend each carries (DE 14, 18, 22, 43, 54, 95).

use super::*;

/// DE 22's first two digits → channel; DE 48 `WT` makes it a wallet payment. (Cash at an ATM's
/// category is an ATM withdrawal whatever DE 22 says: the operation's rule for every gateway,
/// `ops::card_traffic`.)
pub(super) fn channel(message: &Message, fields: &Fields<'_>) -> Result<Channel, Refusal> {
    if fields.wallet {
        return Ok(Channel::Wallet);
    }
    let Some(entry) = message.text(22) else {
        // Advices and completions describe what the network already let through.
        if message.mti.function() == 2 || message.mti.class() == 4 {
            return Ok(Channel::Chip);
        }
        return Err(format_error("DE 22 (entry mode) is required"));
    };
    match part(entry, 0..2, 22)? {
        "01" | "10" | "81" => Ok(Channel::Ecommerce),
        "05" => Ok(Channel::Chip),
        "07" | "91" => Ok(Channel::Contactless),
        "02" | "90" => Ok(Channel::Magstripe),
        other => Err(format_error(format!(
            "DE 22 entry mode {other} is not in the profile"
        ))),
    }
}

/// DE 43: name in positions 1-23, country as two letters in the last two positions.
pub(super) fn merchant(message: &Message, mcc: Mcc) -> Merchant {
    let (name, country) = match message.text(43) {
        Some(text) => {
            let name = text.get(..23).unwrap_or(text).trim();
            let country = text.get(38..40);
            (
                (!name.is_empty()).then(|| name.into()),
                country.and_then(|c| tandem_core::Country::new(c).ok()),
            )
        }
        None => (None, None),
    };
    Merchant { mcc, country, name }
}

/// The cashback amount (DE 54, amount type 40) of a purchase with cashback.
pub(super) fn cashback(message: &Message) -> Result<i64, Refusal> {
    let Some(blocks) = message.text(54) else {
        return Err(format_error(
            "DE 54 with amount type 40 is required for cashback",
        ));
    };
    for block in blocks.as_bytes().chunks(20) {
        let block = std::str::from_utf8(block).expect("DE 54 is ASCII");
        if block.len() == 20 && block.get(2..4) == Some("40") {
            return part(block, 8..20, 54)?
                .parse()
                .map_err(|_| format_error("DE 54 cashback amount must be 12 digits"));
        }
    }
    Err(format_error("DE 54 has no cashback block (amount type 40)"))
}

pub(super) fn spend(
    message: &Message,
    fields: &Fields<'_>,
    card: CardId,
    kind: SpendKind,
) -> Result<Spend, Refusal> {
    let mcc_text = message.text(18).unwrap_or("0000");
    let mcc = mcc_text
        .parse()
        .ok()
        .and_then(|code| Mcc::new(code).ok())
        .ok_or_else(|| {
            format_error(format!(
                "DE 18 {mcc_text:?} is not a merchant category code"
            ))
        })?;
    // That cashback lies within DE 4 is the operation's rule, for every gateway.
    let cashback_minor = if kind == SpendKind::PurchaseWithCashback {
        cashback(message)?
    } else {
        0
    };
    let presented_expiry = match message.text(14) {
        Some(text) => {
            Some(YearMonth::parse_yymm(text).map_err(|e| format_error(format!("DE 14: {e}")))?)
        }
        None => None,
    };
    Ok(Spend {
        card,
        amount: Money::new(fields.amount_minor, fields.currency),
        cashback_minor,
        kind,
        channel: channel(message, fields)?,
        merchant: merchant(message, mcc),
        presented_expiry,
        partial_allowed: fields.partial_allowed,
    })
}

/// DE 95's first 12 digits: what the transaction stands at after a partial reversal.
pub(super) fn replacement(message: &Message, currency: Currency) -> Result<Option<Money>, Refusal> {
    match message.text(95) {
        Some(text) => {
            let amount: i64 = part(text, 0..12, 95)?
                .parse()
                .map_err(|_| format_error("DE 95 must start with 12 digits"))?;
            Ok((amount > 0).then(|| Money::new(amount, currency)))
        }
        None => Ok(None),
    }
}

/// The core command for a message, per the profile's message table.
pub(super) fn command(
    mti: Mti,
    fields: &Fields<'_>,
    card: CardId,
    lifecycle: AuthorizationId,
    message: &Message,
) -> Result<(CommandBody, Kind), Refusal> {
    let kind = match fields.processing {
        "00" => SpendKind::Purchase,
        "01" => SpendKind::Cash,
        "09" => SpendKind::PurchaseWithCashback,
        "20" => SpendKind::Refund,
        "30" | "31" => {
            return match (mti.class(), mti.function()) {
                (1 | 2, 0) => Ok((CommandBody::BalanceInquiry { card }, Kind::Decision)),
                _ => Err(format_error("a balance inquiry is a 0100 or 0200")),
            };
        }
        other => {
            return Err(format_error(format!(
                "DE 3 processing code {other} is not in the profile"
            )));
        }
    };
    // The operation books a refund as a purchase given back, whatever DE 3 said.
    let refund = |spend: Spend| CommandBody::Refund {
        refund: lifecycle.clone(),
        spend,
        original: None,
    };
    Ok(match (mti.class(), mti.function()) {
        (1, 0) if fields.incremental => (
            CommandBody::Increment {
                authorization: lifecycle.clone(),
                amount: Money::new(fields.amount_minor, fields.currency),
            },
            Kind::Decision,
        ),
        (1 | 2, 0) if kind == SpendKind::Refund => {
            (refund(spend(message, fields, card, kind)?), Kind::Decision)
        }
        (1 | 2, 0) => (
            CommandBody::Authorize {
                authorization: lifecycle.clone(),
                spend: spend(message, fields, card, kind)?,
                single_message: mti.class() == 2,
            },
            Kind::Decision,
        ),
        (1, 2) => {
            let network = message.text(39).unwrap_or(code::APPROVED);
            (
                CommandBody::Advise {
                    authorization: lifecycle.clone(),
                    spend: spend(message, fields, card, kind)?,
                    network_approved: code::approves(network),
                },
                Kind::Advice,
            )
        }
        (2, 2) if kind == SpendKind::Refund => {
            (refund(spend(message, fields, card, kind)?), Kind::Advice)
        }
        (2, 2) => (
            CommandBody::Clear {
                authorization: lifecycle.clone(),
                spend: spend(message, fields, card, kind)?,
                final_clearing: true,
            },
            Kind::Advice,
        ),
        (4, function @ (0 | 2)) => (
            CommandBody::Reverse {
                authorization: lifecycle.clone(),
                replacement: replacement(message, fields.currency)?,
            },
            if function == 0 {
                Kind::Decision
            } else {
                Kind::Advice
            },
        ),
        _ => return Err(format_error(format!("MTI {mti} is not in the profile"))),
    })
}
