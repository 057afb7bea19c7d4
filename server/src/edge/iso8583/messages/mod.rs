//! From one decoded ISO 8583 request to its answer, per `shared/iso8583-profile.md`: read the
//! fields, find the card through the keyed PAN hash, build the core command with its
//! idempotency key and lifecycle, execute it within the deadline, and render DE 38/39/54.
//!
//! The PAN lives only in the request message and the hash; it is never logged, and answers
//! carry it only masked, if at all.
//!
//! Here: the gateway's settings and its one path (`Gateway::answer`). Beside it, one file per
//! step of that path: `fields.rs` reads the fields, `keys.rs` derives the idempotency and
//! lifecycle keys, `commands.rs` maps each message family to its core command, `answers.rs`
//! renders the outcome.

use sha2::{Digest, Sha256};
use std::time::Duration;

use tandem_core::{
    AccountId, Actor, AuthorizationId, BalanceView, CardId, Channel, Command, CommandBody,
    Currency, IdempotencyKey, Mcc, Merchant, Money, Outcome, Spend, SpendKind, YearMonth,
};
use tandem_iso8583::{BitmapEncoding, Message, Mti};

use crate::app::App;
use crate::keys::Principal;
use crate::limits;
use crate::ops::OpError;
use crate::ops::card_traffic::{self, CardName, lifecycle_id};
use crate::ops::deadline::Timed;

mod answers;
mod commands;
mod fields;
mod keys;
#[cfg(test)]
mod tests;

use self::answers::*;
use self::commands::*;
use self::fields::*;
use self::keys::*;

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
            deadline: limits::ISO8583_DEADLINE_DEFAULT,
            advice_deadline: limits::REQUEST_TIMEOUT_DEFAULT,
            pan_in_answers: PanInAnswers::Omit,
            frame_max: limits::ISO8583_FRAME_MAX_DEFAULT,
            idle_timeout: limits::ISO8583_IDLE_TIMEOUT_DEFAULT,
            read_timeout: limits::ISO8583_READ_TIMEOUT_DEFAULT,
            in_flight_per_link: limits::ISO8583_IN_FLIGHT_PER_LINK,
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

/// DE 39 values the gateway itself answers with (the core's decisions bring their own), and
/// what a network's DE 39 means.
mod code {
    pub const APPROVED: &str = "00";
    pub const PARTIALLY_APPROVED: &str = "10";
    pub const FORMAT_ERROR: &str = "30";
    pub const ISSUER_UNAVAILABLE: &str = "91";

    /// Whether a network's DE 39 approved the transaction, in full or in part.
    pub fn approves(code: &str) -> bool {
        matches!(code, APPROVED | PARTIALLY_APPROVED)
    }
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
            principal: Principal::link(),
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
    /// link's new signed-on state. A cluster member that has known no leader past an
    /// election (`App::leaderless`) answers an echo or a sign-on 91: it can decide nothing,
    /// and the network routes around it until it answers 00 again.
    pub fn network_management(&self, request: &Message, signed_on: bool) -> (Message, bool) {
        let serving = !self.app.leaderless();
        let (code, signed_on) = match request.text(70) {
            Some("001") if serving => (code::APPROVED, true),
            Some("002") => (code::APPROVED, false),
            Some("301") if serving => (code::APPROVED, signed_on),
            Some("001" | "301") => (code::ISSUER_UNAVAILABLE, signed_on),
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
        let deadline = match kind {
            Kind::Decision => self.settings.deadline,
            Kind::Advice => self.settings.advice_deadline,
        };
        let command = Command {
            key,
            actor: Actor::Network,
            body,
            references,
        };
        let timed = self
            .app
            .card_traffic_within(&self.principal, &account, command, deadline)
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
