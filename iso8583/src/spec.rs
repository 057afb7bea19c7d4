//! The ISO 8583:1987 field table: every data element's content kind and length rule.
//!
//! A decoder can only step over a field whose length rule it knows, so the table covers all
//! 128 elements (the same layout as the common open-source "default" specs), not only the ones
//! Tandem reads. Field 1 is the secondary bitmap and is handled by the message codec.

/// What a field may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ASCII digits only (`n`).
    Numeric,
    /// Printable ASCII, space to tilde (`a`, `an`, `ans`).
    Text,
    /// Raw bytes (`b`): on the wire as-is with binary bitmaps, as hex characters with hex ones.
    Binary,
}

/// How a field's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Exactly this many characters (bytes for binary fields).
    Fixed(usize),
    /// Two ASCII length digits, then at most this many.
    LlVar(usize),
    /// Three ASCII length digits, then at most this many.
    LllVar(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub kind: Kind,
    pub length: Length,
    pub name: &'static str,
}

use Kind::{Binary as B, Numeric as N, Text as T};
use Length::{Fixed as F, LlVar as LL, LllVar as LLL};

const fn f(kind: Kind, length: Length, name: &'static str) -> FieldSpec {
    FieldSpec { kind, length, name }
}

/// The spec of data element `field` (1..=128); `None` outside that range.
pub fn field(field: u8) -> Option<&'static FieldSpec> {
    FIELDS.get(usize::from(field).checked_sub(1)?)
}

static FIELDS: [FieldSpec; 128] = [
    f(B, F(8), "secondary bitmap"),
    // Text, not numeric: an answer may carry it masked (`411111******1111`); the gateway
    // checks that a request's PAN is digits.
    f(T, LL(19), "primary account number"),
    f(N, F(6), "processing code"),
    f(N, F(12), "amount, transaction"),
    f(N, F(12), "amount, settlement"),
    f(N, F(12), "amount, cardholder billing"),
    f(N, F(10), "transmission date and time"),
    f(N, F(8), "amount, cardholder billing fee"),
    f(N, F(8), "conversion rate, settlement"),
    f(N, F(8), "conversion rate, cardholder billing"),
    f(N, F(6), "system trace audit number"),
    f(N, F(6), "time, local transaction"),
    f(N, F(4), "date, local transaction"),
    f(N, F(4), "date, expiration"),
    f(N, F(4), "date, settlement"),
    f(N, F(4), "date, conversion"),
    f(N, F(4), "date, capture"),
    f(N, F(4), "merchant category code"),
    f(N, F(3), "acquiring institution country code"),
    f(N, F(3), "PAN extended country code"),
    f(N, F(3), "forwarding institution country code"),
    f(N, F(3), "point of service entry mode"),
    f(N, F(3), "card sequence number"),
    f(N, F(3), "function code"),
    f(N, F(2), "point of service condition code"),
    f(N, F(2), "point of service PIN capture code"),
    f(N, F(1), "authorizing identification response length"),
    f(T, F(9), "amount, transaction fee"),
    f(T, F(9), "amount, settlement fee"),
    f(T, F(9), "amount, transaction processing fee"),
    f(T, F(9), "amount, settlement processing fee"),
    f(N, LL(11), "acquiring institution identification code"),
    f(N, LL(11), "forwarding institution identification code"),
    f(T, LL(28), "primary account number, extended"),
    f(T, LL(37), "track 2 data"),
    f(T, LLL(104), "track 3 data"),
    f(T, F(12), "retrieval reference number"),
    f(T, F(6), "authorization identification response"),
    f(T, F(2), "response code"),
    f(T, F(3), "service restriction code"),
    f(T, F(8), "card acceptor terminal identification"),
    f(T, F(15), "card acceptor identification code"),
    f(T, F(40), "card acceptor name/location"),
    f(T, LL(25), "additional response data"),
    f(T, LL(76), "track 1 data"),
    f(T, LLL(999), "additional data (ISO)"),
    f(T, LLL(999), "additional data (national)"),
    f(T, LLL(999), "additional data (private)"),
    f(T, F(3), "currency code, transaction"),
    f(T, F(3), "currency code, settlement"),
    f(T, F(3), "currency code, cardholder billing"),
    f(B, F(8), "personal identification number data"),
    f(N, F(16), "security related control information"),
    f(T, LLL(240), "additional amounts"),
    f(B, LLL(255), "ICC data"),
    f(T, LLL(999), "reserved (ISO)"),
    f(T, LLL(999), "reserved (national)"),
    f(T, LLL(999), "reserved (national)"),
    f(T, LLL(999), "reserved (national)"),
    f(T, LLL(999), "reserved (national)"),
    f(T, LLL(999), "reserved (private)"),
    f(T, LLL(999), "reserved (private)"),
    f(T, LLL(999), "reserved (private)"),
    f(B, F(8), "message authentication code"),
    f(B, F(8), "extended bitmap"),
    f(N, F(1), "settlement code"),
    f(N, F(2), "extended payment code"),
    f(N, F(3), "receiving institution country code"),
    f(N, F(3), "settlement institution country code"),
    f(N, F(3), "network management information code"),
    f(N, F(4), "message number"),
    f(N, F(4), "message number, last"),
    f(N, F(6), "date, action"),
    f(N, F(10), "credits, number"),
    f(N, F(10), "credits, reversal number"),
    f(N, F(10), "debits, number"),
    f(N, F(10), "debits, reversal number"),
    f(N, F(10), "transfer number"),
    f(N, F(10), "transfer, reversal number"),
    f(N, F(10), "inquiries number"),
    f(N, F(10), "authorizations, number"),
    f(N, F(12), "credits, processing fee amount"),
    f(N, F(12), "credits, transaction fee amount"),
    f(N, F(12), "debits, processing fee amount"),
    f(N, F(12), "debits, transaction fee amount"),
    f(N, F(16), "credits, amount"),
    f(N, F(16), "credits, reversal amount"),
    f(N, F(16), "debits, amount"),
    f(N, F(16), "debits, reversal amount"),
    f(N, F(42), "original data elements"),
    f(T, F(1), "file update code"),
    f(T, F(2), "file security code"),
    f(T, F(5), "response indicator"),
    f(T, F(7), "service indicator"),
    f(T, F(42), "replacement amounts"),
    f(B, F(8), "message security code"),
    f(T, F(17), "amount, net settlement"),
    f(T, F(25), "payee"),
    f(N, LL(11), "settlement institution identification code"),
    f(N, LL(11), "receiving institution identification code"),
    f(T, LL(17), "file name"),
    f(T, LL(28), "account identification 1"),
    f(T, LL(28), "account identification 2"),
    f(T, LLL(100), "transaction description"),
    f(T, LLL(999), "reserved for ISO use"),
    f(T, LLL(999), "reserved for ISO use"),
    f(T, LLL(999), "reserved for ISO use"),
    f(T, LLL(999), "reserved for ISO use"),
    f(T, LLL(999), "reserved for ISO use"),
    f(T, LLL(999), "reserved for ISO use"),
    f(T, LLL(999), "reserved for ISO use"),
    f(T, LLL(999), "reserved for national use"),
    f(T, LLL(999), "reserved for national use"),
    f(T, LLL(999), "reserved for national use"),
    f(T, LLL(999), "reserved for national use"),
    f(T, LLL(999), "reserved for national use"),
    f(T, LLL(999), "reserved for national use"),
    f(T, LLL(999), "reserved for national use"),
    f(T, LLL(999), "reserved for national use"),
    f(T, LLL(999), "reserved for private use"),
    f(T, LLL(999), "reserved for private use"),
    f(T, LLL(999), "reserved for private use"),
    f(T, LLL(999), "reserved for private use"),
    f(T, LLL(999), "reserved for private use"),
    f(T, LLL(999), "reserved for private use"),
    f(T, LLL(999), "reserved for private use"),
    f(T, LLL(999), "reserved for private use"),
    f(B, F(8), "message authentication code"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_fields_have_the_profile_formats() {
        // shared/iso8583-profile.md, "Fields".
        let expect = [
            (2, Length::LlVar(19)),
            (3, Length::Fixed(6)),
            (4, Length::Fixed(12)),
            (6, Length::Fixed(12)),
            (7, Length::Fixed(10)),
            (11, Length::Fixed(6)),
            (12, Length::Fixed(6)),
            (13, Length::Fixed(4)),
            (14, Length::Fixed(4)),
            (18, Length::Fixed(4)),
            (19, Length::Fixed(3)),
            (22, Length::Fixed(3)),
            (25, Length::Fixed(2)),
            (32, Length::LlVar(11)),
            (37, Length::Fixed(12)),
            (38, Length::Fixed(6)),
            (39, Length::Fixed(2)),
            (41, Length::Fixed(8)),
            (42, Length::Fixed(15)),
            (43, Length::Fixed(40)),
            (48, Length::LllVar(999)),
            (49, Length::Fixed(3)),
            (51, Length::Fixed(3)),
            (54, Length::LllVar(240)),
            (70, Length::Fixed(3)),
            (90, Length::Fixed(42)),
            (95, Length::Fixed(42)),
        ];
        for (n, length) in expect {
            assert_eq!(field(n).unwrap().length, length, "field {n}");
        }
        assert!(field(0).is_none() && field(129).is_none());
        assert_eq!(field(128).unwrap().kind, Kind::Binary);
    }
}
