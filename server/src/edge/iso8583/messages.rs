//! From one decoded ISO 8583 request to its answer, per `shared/iso8583-profile.md`: read the
//! fields, find the card through the keyed PAN hash, build the core command with its
//! idempotency key and lifecycle, execute it within the deadline, and render DE 38/39/54.
//!
//! The PAN lives only in the request message and the hash; it is never logged, and answers
//! carry it only masked, if at all.

use sha2::{Digest, Sha256};
use std::time::Duration;

use tandem_core::{
    AccountId, Actor, AuthorizationId, BalanceView, CardId, Channel, Command, CommandBody,
    Currency, IdempotencyKey, Mcc, Merchant, Money, Outcome, Spend, SpendKind, YearMonth,
};
use tandem_iso8583::{BitmapEncoding, Message, Mti};

use crate::app::App;
use crate::keys::{KeyRole, Principal};
use crate::ops::OpError;
use crate::ops::card_traffic::{self, CardName, lifecycle_id};
use crate::ops::deadline::{Late, Timed};

/// How DE 2 comes back in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanInAnswers {
    Omit,
    /// First six and last four digits, the rest `*`.
    Masked,
}

/// The gateway's settings (`tandem serve --help`, the `iso8583_*` options).
#[derive(Debug, Clone)]
pub struct Settings {
    pub bitmap: BitmapEncoding,
    /// An authorization not durable within this gets 91, and is marked timed out.
    pub deadline: Duration,
    /// Advices and reversals wait this long for durability before 91 (they are not stood in
    /// for; the network resends them).
    pub advice_deadline: Duration,
    pub pan_in_answers: PanInAnswers,
    pub frame_max: usize,
    /// A link with no bytes at all for this long is closed.
    pub idle_timeout: Duration,
    /// A frame begun must be complete within this.
    pub read_timeout: Duration,
    /// Requests of one link being decided at once; beyond it the link is read no further
    /// until one is answered (TCP backpressure).
    pub in_flight_per_link: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bitmap: BitmapEncoding::Binary,
            deadline: Duration::from_millis(1_500),
            advice_deadline: Duration::from_secs(10),
            pan_in_answers: PanInAnswers::Omit,
            frame_max: 8 * 1024,
            idle_timeout: Duration::from_secs(300),
            read_timeout: Duration::from_secs(10),
            in_flight_per_link: 512,
        }
    }
}

/// The MTI as a metric label: the profile's request types, anything else `other`, so
/// hostile input cannot grow the label set.
pub fn mti_label(mti: Mti) -> &'static str {
    match mti.original().as_str() {
        "0100" => "0100",
        "0120" => "0120",
        "0200" => "0200",
        "0220" => "0220",
        "0400" => "0400",
        "0420" => "0420",
        "0800" => "0800",
        _ => "other",
    }
}

/// DE 39 values the gateway itself answers with (the core's decisions bring their own).
mod code {
    pub const APPROVED: &str = "00";
    pub const FORMAT_ERROR: &str = "30";
    pub const ISSUER_UNAVAILABLE: &str = "91";
}

/// A request refused before it reached an account: its DE 39 and why (for the log).
#[derive(Debug)]
struct Refusal {
    code: &'static str,
    why: String,
}

fn format_error(why: impl Into<String>) -> Refusal {
    Refusal {
        code: code::FORMAT_ERROR,
        why: why.into(),
    }
}

/// What an answer carries beyond the echo.
#[derive(Debug, Default)]
struct Answer {
    code: &'static str,
    approval_code: Option<String>,
    /// DE 4 on a partial approval: the amount approved.
    approved_minor: Option<i64>,
    /// DE 54 blocks.
    amounts: Vec<String>,
    /// Tandem's authorization id for the lifecycle (DE 48 tag `AI`), so a network or an
    /// issuer's tooling can find the transaction in Tandem's API.
    lifecycle: Option<AuthorizationId>,
}

impl Answer {
    fn code(code: &'static str) -> Self {
        Self {
            code,
            ..Self::default()
        }
    }
}

/// The gateway's shared state: the app and its settings. The deadline rule (91 past the
/// deadline, then a durable `MarkTimedOut`) is the operations' (`ops::deadline`).
pub struct Gateway {
    pub app: std::sync::Arc<App>,
    pub settings: Settings,
    principal: Principal,
}

impl Gateway {
    pub fn new(app: std::sync::Arc<App>, settings: Settings) -> Self {
        Self {
            app,
            settings,
            principal: Principal {
                key_id: "iso8583-link".to_owned(),
                role: KeyRole::Network,
                account: None,
                member: None,
            },
        }
    }

    /// The answer to an authorization, financial, advice or reversal request (class 1, 2, 4).
    pub async fn answer(
        self: &std::sync::Arc<Self>,
        request: &Message,
        signed_on: bool,
    ) -> Message {
        let answer = if !signed_on {
            Answer::code(code::ISSUER_UNAVAILABLE)
        } else {
            match self.decide(request).await {
                Ok(answer) => answer,
                Err(refusal) => {
                    tracing::debug!(mti = %request.mti, stan = request.text(11).unwrap_or(""), code = refusal.code, why = %refusal.why, "ISO 8583 request refused");
                    Answer::code(refusal.code)
                }
            }
        };
        metrics::counter!("tandem_iso8583_answers_total", "mti" => mti_label(request.mti), "code" => answer.code).increment(1);
        self.render(request, answer)
    }

    /// A format-error answer to a message that could not be decoded but whose MTI could.
    pub fn format_error_answer(&self, mti: Mti, partial: Option<&Message>) -> Message {
        metrics::counter!("tandem_iso8583_answers_total", "mti" => mti_label(mti), "code" => code::FORMAT_ERROR).increment(1);
        let request = partial.cloned().unwrap_or_else(|| Message::new(mti));
        self.render(&request, Answer::code(code::FORMAT_ERROR))
    }

    /// 0800 → 0810: echo (301), sign-on (001), sign-off (002). Returns the answer and the
    /// link's new signed-on state.
    pub fn network_management(&self, request: &Message, signed_on: bool) -> (Message, bool) {
        let (code, signed_on) = match request.text(70) {
            Some("001") => (code::APPROVED, true),
            Some("002") => (code::APPROVED, false),
            Some("301") => (code::APPROVED, signed_on),
            _ => (code::FORMAT_ERROR, signed_on),
        };
        let mut answer = Message::new(request.mti.response());
        for field in [7u8, 11, 70] {
            if let Some(value) = request.get(field) {
                let _ = answer.set(field, value);
            }
        }
        let _ = answer.set(39, code);
        metrics::counter!("tandem_iso8583_answers_total", "mti" => mti_label(request.mti), "code" => code).increment(1);
        (answer, signed_on)
    }

    /// The answer: the echoed fields, then DE 38/39/54.
    fn render(&self, request: &Message, answer: Answer) -> Message {
        let mut response = Message::new(request.mti.response());
        for field in [3u8, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49] {
            if let Some(value) = request.get(field) {
                // Echoed fields were valid on the way in, so they are valid on the way out.
                let _ = response.set(field, value);
            }
        }
        if self.settings.pan_in_answers == PanInAnswers::Masked
            && let Some(pan) = request.text(2)
            && pan.len() >= 12
        {
            let masked: String = pan
                .char_indices()
                .map(|(i, c)| if i < 6 || i >= pan.len() - 4 { c } else { '*' })
                .collect();
            let _ = response.set(2, masked);
        }
        if let Some(approved) = answer.approved_minor {
            let _ = response.set_number(4, approved.unsigned_abs());
        }
        if let Some(approval) = answer.approval_code {
            let _ = response.set(38, approval);
        }
        let _ = response.set(39, answer.code);
        if !answer.amounts.is_empty() {
            let _ = response.set(54, answer.amounts.concat());
        }
        if let Some(lifecycle) = answer.lifecycle {
            let id = lifecycle.as_str();
            let _ = response.set(48, format!("AI{:02}{id}", id.len()));
        }
        response
    }

    async fn decide(self: &std::sync::Arc<Self>, request: &Message) -> Result<Answer, Refusal> {
        let fields = Fields::read(request)?;
        let pan_hash = self.app.pan_hash(fields.pan)?;
        let Some((account, card)) = self
            .app
            .find_card(&self.principal, CardName::PanHash(&pan_hash))
            .await?
        else {
            return Ok(decision_answer(&card_traffic::unknown_card()));
        };
        let mti = request.mti.original();
        let key = message_key(mti, &fields, &pan_hash);
        let (lifecycle, references) = lifecycle_keys(mti, &account, &fields, &pan_hash);
        let (body, kind) = command(mti, &fields, card, lifecycle.clone(), request)?;
        let (deadline, late) = match kind {
            Kind::Decision => (self.settings.deadline, Late::Undo),
            Kind::Advice => (self.settings.advice_deadline, Late::Apply),
        };
        let command = Command {
            key,
            actor: Actor::Network,
            body,
            references,
        };
        let timed = self
            .app
            .card_traffic_within(&self.principal, &account, command, deadline, late)
            .await?;
        let outcome = match timed {
            Timed::Answered(outcome) => outcome,
            Timed::Missed { just_now } => {
                if just_now {
                    metrics::counter!("tandem_iso8583_deadline_missed_total").increment(1);
                }
                return Ok(Answer::code(code::ISSUER_UNAVAILABLE));
            }
        };
        let mut answer = match kind {
            // Advices are the network's word: acknowledged once applied, whatever it did.
            Kind::Advice => Answer::code(code::APPROVED),
            Kind::Decision => decision_answer(&outcome),
        };
        // An approval names the lifecycle the core found. Otherwise the id the message named,
        // unless it named it by DE 90: which lifecycle that key found, the answer does not say.
        let by_de90 = points_at_original(mti, &fields) && fields.original.is_some();
        answer.lifecycle = match outcome {
            Outcome::Approved { authorization, .. } => Some(authorization),
            _ if by_de90 => None,
            _ => Some(lifecycle),
        };
        Ok(answer)
    }
}

/// An operation's error as the gateway answers it: its DE 39 (the one mapping,
/// `OpError::de39`), and its message for the log.
impl From<OpError> for Refusal {
    fn from(error: OpError) -> Self {
        Refusal {
            code: super::de39_of(&error),
            why: error.message(),
        }
    }
}

/// Whether a message asks for a decision (under the deadline) or tells of one (an advice or
/// reversal, applied whatever it says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Decision,
    Advice,
}

/// The fields Tandem reads, checked for shape.
struct Fields<'a> {
    pan: &'a str,
    /// DE 3, first two digits.
    processing: &'a str,
    amount_minor: i64,
    currency: Currency,
    stan: &'a str,
    rrn: &'a str,
    /// DE 32 without leading zeros.
    acquirer: &'a str,
    /// DE 7, when sent.
    transmission: Option<&'a str>,
    /// DE 33 (forwarding institution) without leading zeros; empty when absent.
    forwarding: &'a str,
    /// DE 90, when it names an original (present and not zero-filled).
    original: Option<Original<'a>>,
    partial_allowed: bool,
    incremental: bool,
    wallet: bool,
}

fn required<'a>(message: &'a Message, field: u8, name: &str) -> Result<&'a str, Refusal> {
    message
        .text(field)
        .ok_or_else(|| format_error(format!("DE {field} ({name}) is required")))
}

/// Positions `range` of DE `field`'s text, or a format error: a field shorter than the profile
/// says is refused, never sliced past its end.
fn part(text: &str, range: std::ops::Range<usize>, field: u8) -> Result<&str, Refusal> {
    text.get(range.clone()).ok_or_else(|| {
        format_error(format!(
            "DE {field} is too short for positions {}-{}",
            range.start + 1,
            range.end
        ))
    })
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

impl<'a> Fields<'a> {
    fn read(message: &'a Message) -> Result<Self, Refusal> {
        let pan = card_traffic::pan(required(message, 2, "PAN")?)
            .map_err(|_| format_error("DE 2 must be 12 to 19 digits"))?;
        let processing = match message.text(3) {
            Some(text) => part(text, 0..2, 3)?,
            // A reversal or advice may leave DE 3 out: it is a purchase's.
            None if matches!(message.mti.class(), 4) || message.mti.function() == 2 => "00",
            None => return Err(format_error("DE 3 (processing code) is required")),
        };
        let amount = required(message, 4, "amount")?;
        let amount_minor: i64 = amount
            .parse()
            .map_err(|_| format_error("DE 4 must be 12 digits"))?;
        let currency_code = required(message, 49, "currency")?;
        let currency = currency_code
            .parse::<u16>()
            .ok()
            .filter(|_| digits(currency_code))
            .and_then(|n| Currency::from_numeric(n).ok())
            .ok_or_else(|| {
                format_error(format!(
                    "DE 49 {currency_code:?} is not an ISO 4217 numeric code"
                ))
            })?;
        let stan = required(message, 11, "STAN")?;
        let rrn = required(message, 37, "RRN")?;
        let acquirer = message.text(32).unwrap_or("").trim_start_matches('0');
        let original = message
            .text(90)
            .filter(|text| text.bytes().any(|b| b != b'0'))
            .and_then(Original::read);
        let mut fields = Fields {
            pan,
            processing,
            amount_minor,
            currency,
            stan,
            rrn,
            acquirer,
            transmission: message.text(7),
            forwarding: message.text(33).unwrap_or("").trim_start_matches('0'),
            original,
            partial_allowed: false,
            incremental: false,
            wallet: false,
        };
        if let Some(tags) = message.text(48) {
            fields.read_tags(tags)?;
        }
        Ok(fields)
    }

    /// DE 48: `TT` + 2 length digits + value, repeated.
    fn read_tags(&mut self, mut tags: &str) -> Result<(), Refusal> {
        while !tags.is_empty() {
            let (tag, rest) = tags
                .split_at_checked(2)
                .ok_or_else(|| format_error("DE 48 ends inside a tag"))?;
            let (length, rest) = rest
                .split_at_checked(2)
                .filter(|(l, _)| digits(l))
                .ok_or_else(|| format_error(format!("DE 48 tag {tag}: no 2-digit length")))?;
            let length: usize = length.parse().expect("two digits");
            let (value, rest) = rest
                .split_at_checked(length)
                .ok_or_else(|| format_error(format!("DE 48 tag {tag}: value is cut short")))?;
            match tag {
                "PA" => self.partial_allowed = value == "1",
                "IA" => self.incremental = value == "1",
                "WT" => self.wallet = value == "1",
                // Tags of other dialects are not ours to refuse.
                _ => {}
            }
            tags = rest;
        }
        Ok(())
    }

    /// The acquirer of the lifecycle: DE 90's for messages that point at an original.
    fn lifecycle_acquirer(&self) -> &'a str {
        self.original
            .as_ref()
            .map_or(self.acquirer, |original| original.acquirer)
    }

    /// This message in DE 90's form, as a later message names it: its own MTI, STAN, DE 7,
    /// acquirer and forwarding institution. `None` without DE 7.
    fn as_original(&self, mti: Mti) -> Option<Original<'a>> {
        Some(Original {
            mti: mti.original(),
            stan: self.stan,
            transmission: self.transmission?,
            acquirer: self.acquirer,
            forwarding: self.forwarding,
        })
    }
}

/// DE 90, original data elements: the original's MTI (4), STAN (6), DE 7 (10), acquirer
/// (11) and forwarding institution (11), each as the original carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Original<'a> {
    /// Normalised to the original of a repeat (`0101` is `0100`'s).
    mti: Mti,
    stan: &'a str,
    transmission: &'a str,
    /// Without leading zeros, as DE 32 is read.
    acquirer: &'a str,
    /// Without leading zeros; empty when none.
    forwarding: &'a str,
}

impl<'a> Original<'a> {
    /// Reads DE 90, whose length (42) and digits the codec has checked.
    fn read(text: &'a str) -> Option<Self> {
        Some(Original {
            mti: Mti::new(text.get(..4)?)?.original(),
            stan: text.get(4..10)?,
            transmission: text.get(10..20)?,
            acquirer: text.get(20..31)?.trim_start_matches('0'),
            forwarding: text.get(31..42)?.trim_start_matches('0'),
        })
    }

    /// The lifecycle key this names: the same for an original and for every later message
    /// whose DE 90 names it.
    fn lifecycle(&self, account: &AccountId, pan_hash: &str) -> AuthorizationId {
        let hash = short_hash(&[
            self.mti.as_str(),
            self.stan,
            self.transmission,
            self.acquirer,
            self.forwarding,
            pan_hash,
        ]);
        let key = IdempotencyKey::new(&format!("iso90:{hash}")).expect("a valid key");
        lifecycle_id(account, &key)
    }
}

fn short_hash(parts: &[&str]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0x1f]);
    }
    hex::encode(&digest.finalize()[..8])
}

/// A message's idempotency key: its type (repeats share their original's) and the profile's
/// key fields, DE 32 + DE 11 + DE 37 + the PAN's hash. DE 7 is left out on purpose.
fn message_key(mti: Mti, fields: &Fields<'_>, pan_hash: &str) -> IdempotencyKey {
    let hash = short_hash(&[fields.acquirer, fields.stan, fields.rrn, pan_hash]);
    IdempotencyKey::new(&format!("iso{}:{hash}", &mti.as_str()[..3]))
        .expect("letters, digits and a colon make a valid key")
}

/// The lifecycle a message's DE 37 names: acquirer + RRN + PAN hash (the acquirer is DE
/// 90's when DE 90 names an original). An original is opened under this id.
fn retrieval_lifecycle(
    account: &AccountId,
    fields: &Fields<'_>,
    pan_hash: &str,
) -> AuthorizationId {
    let hash = short_hash(&[fields.lifecycle_acquirer(), fields.rrn, pan_hash]);
    let key = IdempotencyKey::new(&format!("isolc:{hash}")).expect("a valid key");
    lifecycle_id(account, &key)
}

/// Whether a message of this type points at an original (the profile's "Keys and matching"):
/// reversals, advices and incremental authorizations.
fn points_at_original(mti: Mti, fields: &Fields<'_>) -> bool {
    match (mti.class(), mti.function()) {
        (4, _) | (1 | 2, 2) => true,
        (1, 0) => fields.incremental,
        _ => false,
    }
}

/// The lifecycle id a message names, and its other keys in the order the core tries them
/// (`Command::references`):
/// - a message that points at its original and carries DE 90 names it by DE 90's key first,
///   then by DE 37 + PAN hash (which also finds lifecycles opened before DE 90 keys were
///   recorded); a lifecycle it opens (an unmatched advice, a reversal's tombstone) is under
///   the DE 90 key, so the original finds it when it arrives;
/// - one that points at its original without DE 90 (absent or zero-filled) names it by DE 37
///   + PAN hash alone;
/// - an original is opened under its DE 37 key, with its own key in DE 90's form as its other
///   key, which the core records so a later DE 90 finds it.
fn lifecycle_keys(
    mti: Mti,
    account: &AccountId,
    fields: &Fields<'_>,
    pan_hash: &str,
) -> (AuthorizationId, Vec<AuthorizationId>) {
    let retrieval = retrieval_lifecycle(account, fields, pan_hash);
    if points_at_original(mti, fields) {
        match &fields.original {
            Some(original) => (original.lifecycle(account, pan_hash), vec![retrieval]),
            None => (retrieval, Vec::new()),
        }
    } else {
        let own = fields.as_original(mti);
        let references = own.iter().map(|o| o.lifecycle(account, pan_hash)).collect();
        (retrieval, references)
    }
}

/// DE 22's first two digits → channel; DE 48 `WT` makes it a wallet payment. (Cash at an ATM's
/// category is an ATM withdrawal whatever DE 22 says: the operation's rule for every gateway,
/// `ops::card_traffic`.)
fn channel(message: &Message, fields: &Fields<'_>) -> Result<Channel, Refusal> {
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
fn merchant(message: &Message, mcc: Mcc) -> Merchant {
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
fn cashback(message: &Message) -> Result<i64, Refusal> {
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

fn spend(
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
fn replacement(message: &Message, currency: Currency) -> Result<Option<Money>, Refusal> {
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
fn command(
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
                    network_approved: matches!(network, "00" | "10"),
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

/// One DE 54 block: account type 00, amount type, currency, sign, 12 digits.
fn amount_block(amount_type: &str, currency: Currency, minor: i64) -> String {
    let sign = if minor < 0 { 'D' } else { 'C' };
    format!(
        "00{amount_type}{:03}{sign}{:012}",
        currency.numeric(),
        minor.unsigned_abs()
    )
}

fn balance_blocks(balance: &BalanceView) -> [String; 2] {
    [
        amount_block("01", balance.currency, balance.ledger_minor),
        amount_block("02", balance.currency, balance.available_minor),
    ]
}

fn decision_answer(outcome: &Outcome) -> Answer {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `mti` with `fields` set; `None` if the codec refuses a value.
    fn message(mti: &str, fields: &[(u8, &str)]) -> Message {
        let mut message = Message::new(Mti::new(mti).expect("an MTI"));
        for (field, value) in fields {
            message
                .set(*field, value.as_bytes().to_vec())
                .expect("a value the codec takes");
        }
        message
    }

    #[test]
    fn a_field_shorter_than_its_positions_is_a_format_error_not_a_panic() {
        assert_eq!(part("003000", 0..2, 3).expect("long enough"), "00");
        for (text, range, field) in [("0", 0..2, 22), ("", 0..2, 3), ("12345", 0..12, 95)] {
            let refusal = part(text, range, field).expect_err("too short");
            assert_eq!(refusal.code, code::FORMAT_ERROR);
            assert!(
                refusal.why.contains(&format!("DE {field}")),
                "{}",
                refusal.why
            );
        }
    }

    #[test]
    fn de90_is_read_by_position_and_a_short_one_is_none() {
        // MTI, STAN, DE 7, acquirer (11, zero-padded), forwarding institution (11).
        let text = ["0100", "000123", "1206120000", "00000123456", "00000000000"].concat();
        let original = Original::read(&text).expect("42 digits");
        assert_eq!(original.mti.as_str(), "0100");
        assert_eq!(original.stan, "000123");
        assert_eq!(original.transmission, "1206120000");
        assert_eq!(original.acquirer, "123456");
        assert_eq!(original.forwarding, "");
        assert_eq!(Original::read(&text[..30]), None, "cut short");
    }

    #[test]
    fn de43_gives_name_and_country_and_tolerates_what_is_missing() {
        let full = message("0100", &[(43, "CAFE DE FLORE          PARIS          FR")]);
        let merchant = merchant(&full, Mcc::new(5812).expect("mcc"));
        assert_eq!(merchant.name.as_deref(), Some("CAFE DE FLORE"));
        assert_eq!(
            merchant.country.map(|c| c.as_str().to_owned()),
            Some("FR".into())
        );
        let none = merchant_of(&message("0100", &[]));
        assert_eq!((none.name, none.country), (None, None));
    }

    fn merchant_of(message: &Message) -> Merchant {
        merchant(message, Mcc::new(5812).expect("mcc"))
    }

    #[test]
    fn de54_cashback_and_de95_replacement_are_read_or_refused() {
        let with_cashback = message("0200", &[(54, "0040978C000000000500")]);
        assert_eq!(cashback(&with_cashback).expect("a type 40 block"), 500);
        let without = message("0200", &[(54, "0001978C000000010000")]);
        assert_eq!(
            cashback(&without).expect_err("no type 40").code,
            code::FORMAT_ERROR
        );
        let partial = message(
            "0400",
            &[(95, "000000000700000000000000000000000000000000")],
        );
        assert_eq!(
            replacement(&partial, Currency::from_alpha("EUR").expect("EUR")).expect("read"),
            Some(Money::new(700, Currency::from_alpha("EUR").expect("EUR")))
        );
    }

    #[test]
    fn de22_gives_the_channel_and_a_wallet_tag_overrides_it() {
        let fields_of = |message: &Message| {
            let mut fields = Fields::read(message).expect("fields");
            let channel = channel(message, &fields).expect("a channel");
            fields.wallet = true;
            (channel, self::channel(message, &fields).expect("a channel"))
        };
        let base = [
            (2, "4000001234567899"),
            (3, "000000"),
            (4, "000000001000"),
            (11, "000001"),
            (37, "RRN000000001"),
            (49, "978"),
        ];
        let mut chip = base.to_vec();
        chip.push((22, "051"));
        assert_eq!(
            fields_of(&message("0100", &chip)),
            (Channel::Chip, Channel::Wallet)
        );
        let mut ecommerce = base.to_vec();
        ecommerce.push((22, "810"));
        assert_eq!(
            fields_of(&message("0100", &ecommerce)).0,
            Channel::Ecommerce
        );
        let mut unknown = base.to_vec();
        unknown.push((22, "990"));
        let message = message("0100", &unknown);
        let fields = Fields::read(&message).expect("fields");
        assert_eq!(
            channel(&message, &fields)
                .expect_err("not in the profile")
                .code,
            code::FORMAT_ERROR
        );
    }
}
