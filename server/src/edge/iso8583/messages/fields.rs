//! Reading a message's fields: the ones every card message carries (DE 2, 3, 4, 11, 37, 49 and
//! the optional 7, 32, 33, 90), DE 48's tags, DE 90's original data, each by checked position.

use super::*;

/// The fields Tandem reads, checked for shape.
pub(super) struct Fields<'a> {
    pub(super) pan: &'a str,
    /// DE 3, first two digits.
    pub(super) processing: &'a str,
    pub(super) amount_minor: i64,
    pub(super) currency: Currency,
    pub(super) stan: &'a str,
    pub(super) rrn: &'a str,
    /// DE 32 without leading zeros.
    pub(super) acquirer: &'a str,
    /// DE 7, when sent.
    pub(super) transmission: Option<&'a str>,
    /// DE 33 (forwarding institution) without leading zeros; empty when absent.
    pub(super) forwarding: &'a str,
    /// DE 90, when it names an original (present and not zero-filled).
    pub(super) original: Option<Original<'a>>,
    pub(super) partial_allowed: bool,
    pub(super) incremental: bool,
    pub(super) wallet: bool,
}

pub(super) fn required<'a>(
    message: &'a Message,
    field: u8,
    name: &str,
) -> Result<&'a str, Refusal> {
    message
        .text(field)
        .ok_or_else(|| format_error(format!("DE {field} ({name}) is required")))
}

/// Positions `range` of DE `field`'s text, or a format error: a field shorter than the profile
/// says is refused, never sliced past its end.
pub(super) fn part(text: &str, range: std::ops::Range<usize>, field: u8) -> Result<&str, Refusal> {
    text.get(range.clone()).ok_or_else(|| {
        format_error(format!(
            "DE {field} is too short for positions {}-{}",
            range.start + 1,
            range.end
        ))
    })
}

pub(super) fn digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

impl<'a> Fields<'a> {
    pub(super) fn read(message: &'a Message) -> Result<Self, Refusal> {
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
    pub(super) fn read_tags(&mut self, mut tags: &str) -> Result<(), Refusal> {
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
    pub(super) fn lifecycle_acquirer(&self) -> &'a str {
        self.original
            .as_ref()
            .map_or(self.acquirer, |original| original.acquirer)
    }

    /// This message in DE 90's form, as a later message names it: its own MTI, STAN, DE 7,
    /// acquirer and forwarding institution. `None` without DE 7.
    pub(super) fn as_original(&self, mti: Mti) -> Option<Original<'a>> {
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
pub(super) struct Original<'a> {
    /// Normalised to the original of a repeat (`0101` is `0100`'s).
    pub(super) mti: Mti,
    pub(super) stan: &'a str,
    pub(super) transmission: &'a str,
    /// Without leading zeros, as DE 32 is read.
    pub(super) acquirer: &'a str,
    /// Without leading zeros; empty when none.
    pub(super) forwarding: &'a str,
}

impl<'a> Original<'a> {
    /// Reads DE 90, whose length (42) and digits the codec has checked.
    pub(super) fn read(text: &'a str) -> Option<Self> {
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
    pub(super) fn lifecycle(&self, account: &AccountId, pan_hash: &str) -> AuthorizationId {
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
