//! Card traffic: authorizations, increments, reversals, clearings, advices, force posts,
//! refunds and balance inquiries, whichever gateway they arrive by (gRPC unary, the processor
//! stream, HTTP, ISO 8583). A gateway decodes its wire into core types and calls two steps:
//!
//! 1. [`App::find_card`]: the caller may send card traffic (checked before anything is looked
//!    up), then the card's account, by card id or by the PAN's keyed hash. An unknown card is
//!    answered [`unknown_card`] (DE 39 14), an outcome, not an error: the network expects an
//!    answer.
//! 2. [`App::card_traffic`]: the same scope check, the rules every gateway shares (the
//!    lifecycle is the account's, cashback within the amount, a refund is a purchase given
//!    back), the route, then the account system, under a deadline when the gateway has one
//!    (`ops::deadline`).
//!
//! Increments, reversals and clearings over the API name a lifecycle Tandem minted, whose
//! id carries its account ([`lifecycle_account`]); they skip step 1.

use sha2::{Digest, Sha256};

use tandem_core::limits::AMOUNT_MINOR_MAX;
use tandem_core::{
    AccountId, Actor, Authorization, AuthorizationId, CardId, Channel, CommandBody, Country,
    Currency, DeclineReason, IdempotencyKey, Mcc, Merchant, Money, Outcome, Spend, SpendKind,
};

use super::OpError;
use crate::app::App;
use crate::keys::{KeyRole, Principal};

/// How a request names its card.
#[derive(Debug, Clone, Copy)]
pub enum CardName<'a> {
    /// Tandem's card id (the API).
    Id(&'a CardId),
    /// The keyed hash of the PAN ([`App::pan_hash`]; ISO 8583).
    PanHash(&'a str),
}

/// The answer to card traffic for a card this node does not know: declined, 14.
pub fn unknown_card() -> Outcome {
    Outcome::Declined {
        reason: DeclineReason::UnknownCard,
        balance: None,
    }
}

/// A PAN as the profile allows it: 12 to 19 digits.
pub fn pan(text: &str) -> Result<&str, OpError> {
    if !(12..=19).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OpError::invalid("pan", "must be 12 to 19 digits"));
    }
    Ok(text)
}

/// The lifecycle id for a network's (or app's) idempotency key on `account`.
pub fn lifecycle_id(account: &AccountId, key: &IdempotencyKey) -> AuthorizationId {
    let digest = hex::encode(Sha256::digest(key.as_str().as_bytes()));
    AuthorizationId::new(&format!("{account}:{}", &digest[..16]))
        .expect("account ids are short enough to embed")
}

/// The account an authorization id was minted for.
pub fn lifecycle_account(authorization: &AuthorizationId) -> Result<AccountId, OpError> {
    AccountId::new(lifecycle_owner(authorization)?).map_err(|_| not_ours(authorization))
}

/// The account part of an authorization id, as text (no allocation: card traffic checks it
/// on every request).
fn lifecycle_owner(authorization: &AuthorizationId) -> Result<&str, OpError> {
    authorization
        .as_str()
        .rsplit_once(':')
        .map(|(account, _)| account)
        .ok_or_else(|| not_ours(authorization))
}

fn not_ours(authorization: &AuthorizationId) -> OpError {
    OpError::not_found(format!(
        "authorization {authorization} was not issued by this server"
    ))
}

/// A positive amount in minor units, within what ISO 8583 DE 4 can carry.
pub fn amount(amount_minor: i64, currency: Currency) -> Result<Money, OpError> {
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

/// The channel of a posting that neither names one nor has a lifecycle that did.
pub const POSTING_CHANNEL_DEFAULT: Channel = Channel::Chip;

/// A posting's spend as its request gave it (a clearing, advice, force post or refund): what
/// is `None` comes from the lifecycle the posting names ([`App::posting_spend`]).
#[derive(Debug, Clone, Default)]
pub struct PostingFields {
    pub card: Option<CardId>,
    pub amount_minor: i64,
    pub currency: Option<Currency>,
    pub mcc: Option<Mcc>,
    pub channel: Option<Channel>,
    pub merchant_name: Option<String>,
    pub merchant_country: Option<Country>,
}

/// Card traffic is sent by networks (and admins); app keys act for members and send none.
pub fn may_send(principal: &Principal) -> Result<(), OpError> {
    match principal.role {
        KeyRole::Network | KeyRole::Admin => Ok(()),
        KeyRole::App => Err(OpError::forbidden(
            "authorization traffic needs a network key",
        )),
    }
}

/// The rules every gateway's card traffic obeys before it reaches the account: it is card
/// traffic, its lifecycle belongs to `account`, cashback lies within the amount, a refund
/// gives back a purchase (whatever processing code brought it), and cash at an ATM's merchant
/// category ([`Mcc::ATM`]) is an ATM withdrawal whatever channel the terminal reported (a
/// wallet payment stays one), so ATM controls and cash limits hold over every protocol.
pub(super) fn checked(account: &AccountId, mut body: CommandBody) -> Result<CommandBody, OpError> {
    if !body.is_card_traffic() || matches!(body, CommandBody::MarkTimedOut { .. }) {
        return Err(OpError::internal(format!(
            "{} is not card traffic a network sends",
            body.kind_name()
        )));
    }
    if let Some(lifecycle) = body.authorization()
        && lifecycle_owner(lifecycle)? != account.as_str()
    {
        return Err(OpError::invalid(
            "authorization_id",
            "belongs to another account than card_id",
        ));
    }
    match &mut body {
        CommandBody::Refund { spend, .. } => spend.kind = SpendKind::Purchase,
        CommandBody::Authorize { spend, .. }
        | CommandBody::Advise { spend, .. }
        | CommandBody::Clear { spend, .. }
        | CommandBody::ForcePost { spend, .. }
            if !(0..=spend.amount.amount_minor).contains(&spend.cashback_minor) =>
        {
            return Err(OpError::invalid(
                "cashback_minor",
                "must be between 0 and amount_minor",
            ));
        }
        _ => {}
    }
    if let CommandBody::Authorize { spend, .. }
    | CommandBody::Advise { spend, .. }
    | CommandBody::Clear { spend, .. }
    | CommandBody::ForcePost { spend, .. } = &mut body
        && spend.kind == SpendKind::Cash
        && spend.merchant.mcc == Mcc::ATM
        && spend.channel != Channel::Wallet
    {
        spend.channel = Channel::Atm;
    }
    Ok(body)
}

impl App {
    /// The keyed hash of a PAN, as the PAN directory stores it. The PAN itself goes no
    /// further than this call.
    pub fn pan_hash(&self, text: &str) -> Result<String, OpError> {
        Ok(self.system()?.hash_pan(pan(text)?))
    }

    /// The account and card that `card` names, for a caller that may send card traffic;
    /// `None` for a card this node does not know (answer [`unknown_card`]).
    pub async fn find_card(
        &self,
        principal: &Principal,
        card: CardName<'_>,
    ) -> Result<Option<(AccountId, CardId)>, OpError> {
        may_send(principal)?;
        let system = self.system()?;
        let look_up = || async {
            let found = match card {
                CardName::Id(card) => system
                    .card_account(card)
                    .await
                    .map(|account| account.map(|account| (account, card.clone()))),
                CardName::PanHash(hash) => system.pan_card(hash).await,
            };
            found.map_err(|e| OpError::internal(format!("card directory: {e}")))
        };
        // For a network an unknown card (14) is final: a follower asks the leader first.
        match look_up().await? {
            None if self.caught_up().await? => look_up().await,
            found => Ok(found),
        }
    }

    /// A lifecycle as committed, for a posting that fills what it leaves out (card,
    /// merchant, channel, currency) from its authorization.
    pub async fn lifecycle(
        &self,
        account: &AccountId,
        authorization: &AuthorizationId,
    ) -> Result<Option<Box<Authorization>>, OpError> {
        let mut state = self.committed(account).await?;
        if !state.authorizations.contains_key(authorization) && self.caught_up().await? {
            state = self.committed(account).await?;
        }
        Ok(state.authorizations.remove(authorization))
    }

    /// A posting's spend: what `fields` leaves out (card, merchant, channel, currency) comes
    /// from the committed lifecycle `fill_from`, if there is one; a channel neither gives is
    /// [`POSTING_CHANNEL_DEFAULT`]. The lifecycle is read only when a field it fills is
    /// missing.
    pub async fn posting_spend(
        &self,
        account: &AccountId,
        fill_from: Option<&AuthorizationId>,
        fields: PostingFields,
    ) -> Result<Spend, OpError> {
        let mut fields = fields;
        if let Some(authorization) = fill_from
            && (fields.card.is_none()
                || fields.mcc.is_none()
                || fields.channel.is_none()
                || fields.currency.is_none())
            && let Some(lifecycle) = self.lifecycle(account, authorization).await?
        {
            fields.card = fields.card.or_else(|| lifecycle.card.clone());
            if let Some(merchant) = &lifecycle.merchant {
                fields.mcc = fields.mcc.or(Some(merchant.mcc));
                fields.merchant_name = fields
                    .merchant_name
                    .or_else(|| merchant.name.as_ref().map(ToString::to_string));
                fields.merchant_country = fields.merchant_country.or(merchant.country);
            }
            fields.channel = fields.channel.or(lifecycle.channel);
            fields.currency = fields.currency.or(Some(lifecycle.spend_currency()));
        }
        let card = fields
            .card
            .ok_or_else(|| OpError::invalid("card_id", "is required"))?;
        let currency = fields
            .currency
            .ok_or_else(|| OpError::invalid("currency", "is required"))?;
        let amount = amount(fields.amount_minor, currency)?;
        let mcc = fields.mcc.ok_or_else(|| {
            OpError::invalid(
                "mcc",
                "is required (a merchant category code is four digits)",
            )
        })?;
        Ok(Spend {
            card,
            amount,
            cashback_minor: 0,
            kind: SpendKind::Purchase,
            merchant: Merchant {
                mcc,
                country: fields.merchant_country,
                name: fields.merchant_name.map(Into::into),
            },
            channel: fields.channel.unwrap_or(POSTING_CHANNEL_DEFAULT),
            presented_expiry: None,
            partial_allowed: false,
        })
    }

    /// Decides card traffic on `account` and answers once it is durable.
    pub async fn card_traffic(
        &self,
        principal: &Principal,
        account: &AccountId,
        key: IdempotencyKey,
        body: CommandBody,
    ) -> Result<Outcome, OpError> {
        may_send(principal)?;
        let body = checked(account, body)?;
        self.execute(principal, account, key, Actor::Network, body)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::testkit::{money, spend};

    fn account() -> AccountId {
        AccountId::new("acct").unwrap()
    }

    fn key(text: &str) -> IdempotencyKey {
        IdempotencyKey::new(text).unwrap()
    }

    #[test]
    fn a_lifecycle_id_carries_its_account() {
        let id = lifecycle_id(&account(), &key("k1"));
        assert_eq!(lifecycle_account(&id).unwrap(), account());
        assert_ne!(id, lifecycle_id(&account(), &key("k2")));
    }

    #[test]
    fn cashback_must_lie_within_the_amount() {
        let mut over = spend("c1", money(1_000, "EUR"));
        over.kind = SpendKind::PurchaseWithCashback;
        over.cashback_minor = 1_001;
        let body = |spend| CommandBody::Authorize {
            authorization: lifecycle_id(&account(), &key("k")),
            spend,
            single_message: false,
        };
        let error = checked(&account(), body(over.clone())).unwrap_err();
        assert_eq!(error.code(), "invalid_argument");
        over.cashback_minor = 1_000;
        assert!(checked(&account(), body(over)).is_ok());
    }

    #[test]
    fn a_refund_gives_back_a_purchase() {
        let mut refunded = spend("c1", money(500, "EUR"));
        refunded.kind = SpendKind::Refund;
        let body = checked(
            &account(),
            CommandBody::Refund {
                refund: lifecycle_id(&account(), &key("r")),
                spend: refunded,
                original: None,
            },
        )
        .unwrap();
        let CommandBody::Refund { spend, .. } = body else {
            unreachable!()
        };
        assert_eq!(spend.kind, SpendKind::Purchase);
    }

    #[test]
    fn a_lifecycle_of_another_account_is_refused() {
        let other = AccountId::new("other").unwrap();
        let body = CommandBody::Reverse {
            authorization: lifecycle_id(&other, &key("k")),
            replacement: None,
        };
        assert_eq!(
            checked(&account(), body).unwrap_err().code(),
            "invalid_argument"
        );
    }

    #[test]
    fn management_is_not_card_traffic() {
        let error = checked(&account(), CommandBody::CloseAccount).unwrap_err();
        assert_eq!(error.code(), "internal");
    }

    #[test]
    fn a_pan_is_twelve_to_nineteen_digits() {
        assert!(pan("4000001234567899").is_ok());
        for bad in [
            "",
            "40000012345",
            "40000012345678901234",
            "4000 0012 3456 7899",
        ] {
            assert_eq!(pan(bad).unwrap_err().code(), "invalid_argument", "{bad:?}");
        }
    }

    #[test]
    fn only_network_and_admin_keys_send_card_traffic() {
        let principal = |role| Principal {
            key_id: "k".into(),
            role,
            account: None,
            member: None,
            credential: crate::keys::Credential::Link,
        };
        assert!(may_send(&principal(KeyRole::Network)).is_ok());
        assert!(may_send(&principal(KeyRole::Admin)).is_ok());
        assert_eq!(
            may_send(&principal(KeyRole::App)).unwrap_err().code(),
            "permission_denied"
        );
    }
}
