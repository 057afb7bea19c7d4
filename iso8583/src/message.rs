//! One ISO 8583 message: its MTI and the data elements present, and the codec between that
//! and bytes (without the length header; see [`crate::framing`]).

use std::collections::BTreeMap;
use std::fmt;

use crate::spec::{self, Kind, Length};

/// How bitmaps (and binary fields) travel: 8 raw bytes, or 16 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BitmapEncoding {
    #[default]
    Binary,
    Hex,
}

/// A message type indicator: four ASCII digits (version, class, function, origin).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti([u8; 4]);

impl Mti {
    /// `text` must be exactly four ASCII digits.
    pub fn new(text: &str) -> Option<Self> {
        let bytes: [u8; 4] = text.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_digit).then_some(Self(bytes))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("an MTI is ASCII digits")
    }

    /// The message class digit: 1 authorization, 2 financial, 4 reversal, 8 network management.
    pub fn class(&self) -> u8 {
        self.0[1] - b'0'
    }

    /// The function digit: 0 request, 1 request response, 2 advice, 3 advice response.
    pub fn function(&self) -> u8 {
        self.0[2] - b'0'
    }

    /// The last digit is 1: a repeat of an earlier message.
    pub fn is_repeat(&self) -> bool {
        self.0[3] == b'1'
    }

    /// A request or an advice (function 0 or 2), which Tandem answers.
    pub fn is_request(&self) -> bool {
        matches!(self.function(), 0 | 2)
    }

    /// The same message type as first sent: `0101` → `0100`.
    pub fn original(&self) -> Self {
        let mut bytes = self.0;
        if bytes[3] == b'1' {
            bytes[3] = b'0';
        }
        Self(bytes)
    }

    /// The answer's MTI: function + 1, origin 0 (`0100`/`0101` → `0110`, `0420` → `0430`).
    pub fn response(&self) -> Self {
        let mut bytes = self.0;
        bytes[2] = b'0' + (self.function() | 1);
        bytes[3] = b'0';
        Self(bytes)
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message: MTI and data elements 2..=128 (field 1, the secondary bitmap, is implied by
/// whether any of 65..=128 is present).
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub mti: Mti,
    fields: BTreeMap<u8, Vec<u8>>,
}

impl fmt::Debug for Message {
    /// Field 2 (the PAN) and the track data are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        map.entry(&"mti", &self.mti);
        for (n, value) in &self.fields {
            if matches!(n, 2 | 34 | 35 | 36 | 45 | 52 | 55) {
                map.entry(n, &format_args!("<{} bytes>", value.len()));
            } else {
                map.entry(n, &String::from_utf8_lossy(value));
            }
        }
        map.finish()
    }
}

/// What an encoder refuses: a value that does not fit its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("field {field}: no such data element (2..=128)")]
    NoSuchField { field: u8 },
    #[error("field {field}: {length} bytes, but the field is exactly {expected}")]
    WrongLength {
        field: u8,
        length: usize,
        expected: usize,
    },
    #[error("field {field}: {length} bytes, but at most {max} fit")]
    TooLong {
        field: u8,
        length: usize,
        max: usize,
    },
    #[error("field {field}: byte {position} is not {kind}")]
    BadContent {
        field: u8,
        position: usize,
        kind: &'static str,
    },
}

/// What a decoder refuses, naming where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {length} bytes; the MTI alone is 4")]
    NoMti { length: usize },
    #[error("MTI is not four ASCII digits")]
    BadMti,
    #[error("{which} bitmap: message ends after {available} of its {needed} bytes")]
    ShortBitmap {
        which: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{which} bitmap: not 16 hex characters")]
    BadHexBitmap { which: &'static str },
    #[error("bitmap has bit 1 set but the secondary bitmap is missing")]
    NoFields,
    #[error("field {field}: message ends in its length prefix")]
    ShortLength { field: u8 },
    #[error("field {field}: length prefix is not digits")]
    BadLength { field: u8 },
    #[error("field {field}: length {length} is over its maximum {max}")]
    TooLong {
        field: u8,
        length: usize,
        max: usize,
    },
    #[error("field {field}: message ends after {available} of its {needed} bytes")]
    Truncated {
        field: u8,
        needed: usize,
        available: usize,
    },
    #[error("field {field}: byte {position} is not {kind}")]
    BadContent {
        field: u8,
        position: usize,
        kind: &'static str,
    },
    #[error("{count} bytes after the last field")]
    TrailingBytes { count: usize },
}

/// A message that failed to decode: the error, the MTI when it was readable, and the fields
/// read before the error (enough to address a format-error answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub error: DecodeError,
    pub mti: Option<Mti>,
    pub partial: Option<Message>,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mti {
            Some(mti) => write!(f, "{mti}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for Malformed {}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Numeric => "an ASCII digit",
        Kind::Text => "printable ASCII",
        Kind::Binary => "a hex digit",
    }
}

/// The first byte of `value` that `kind` does not allow.
fn bad_byte(kind: Kind, value: &[u8]) -> Option<usize> {
    match kind {
        Kind::Numeric => value.iter().position(|b| !b.is_ascii_digit()),
        Kind::Text => value.iter().position(|b| !(b' '..=b'~').contains(b)),
        Kind::Binary => None,
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xF)]);
    }
}

/// Decodes hex characters into bytes; `None` at the first non-hex character.
fn from_hex(text: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(text.len() / 2);
    for (i, pair) in text.chunks_exact(2).enumerate() {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            (None, _) => return Err(2 * i),
            (_, None) => return Err(2 * i + 1),
        }
    }
    Ok(out)
}

/// The on-the-wire width of a binary value of `bytes` bytes.
fn wire_width(encoding: BitmapEncoding, kind: Kind, bytes: usize) -> usize {
    if kind == Kind::Binary && encoding == BitmapEncoding::Hex {
        bytes * 2
    } else {
        bytes
    }
}

impl Message {
    pub fn new(mti: Mti) -> Self {
        Self {
            mti,
            fields: BTreeMap::new(),
        }
    }

    /// Data element `field`, when present.
    pub fn get(&self, field: u8) -> Option<&[u8]> {
        self.fields.get(&field).map(Vec::as_slice)
    }

    /// Data element `field` as text (every non-binary field is ASCII once decoded).
    pub fn text(&self, field: u8) -> Option<&str> {
        self.get(field).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The data elements present, in order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.fields.iter().map(|(n, v)| (*n, v.as_slice()))
    }

    /// Sets data element `field` after checking it against the field table.
    pub fn set(&mut self, field: u8, value: impl Into<Vec<u8>>) -> Result<&mut Self, EncodeError> {
        let value = value.into();
        let spec = match field {
            2..=128 => spec::field(field).expect("2..=128 are in the table"),
            _ => return Err(EncodeError::NoSuchField { field }),
        };
        match spec.length {
            Length::Fixed(expected) if value.len() != expected => {
                return Err(EncodeError::WrongLength {
                    field,
                    length: value.len(),
                    expected,
                });
            }
            Length::LlVar(max) | Length::LllVar(max) if value.len() > max => {
                return Err(EncodeError::TooLong {
                    field,
                    length: value.len(),
                    max,
                });
            }
            _ => {}
        }
        if let Some(position) = bad_byte(spec.kind, &value) {
            return Err(EncodeError::BadContent {
                field,
                position,
                kind: kind_name(spec.kind),
            });
        }
        self.fields.insert(field, value);
        Ok(self)
    }

    /// Sets a fixed-width numeric field from a number, zero-padded on the left.
    pub fn set_number(&mut self, field: u8, value: u64) -> Result<&mut Self, EncodeError> {
        let width = match spec::field(field).map(|s| s.length) {
            Some(Length::Fixed(width)) => width,
            _ => return Err(EncodeError::NoSuchField { field }),
        };
        self.set(field, format!("{value:0width$}"))
    }

    /// The message as bytes (without the length header).
    pub fn encode(&self, encoding: BitmapEncoding) -> Vec<u8> {
        let secondary = self.fields.keys().any(|n| *n > 64);
        let mut bitmap = [0u8; 16];
        if secondary {
            bitmap[0] |= 0x80;
        }
        for n in self.fields.keys() {
            let bit = usize::from(*n) - 1;
            bitmap[bit / 8] |= 0x80 >> (bit % 8);
        }
        let bitmap = &bitmap[..if secondary { 16 } else { 8 }];
        let body: usize = self.fields.values().map(|v| v.len() * 2 + 3).sum();
        let mut out = Vec::with_capacity(4 + 32 + body);
        out.extend_from_slice(&self.mti.0);
        match encoding {
            BitmapEncoding::Binary => out.extend_from_slice(bitmap),
            BitmapEncoding::Hex => push_hex(&mut out, bitmap),
        }
        for (n, value) in &self.fields {
            let spec = spec::field(*n).expect("set() admits only table fields");
            let width = wire_width(encoding, spec.kind, value.len());
            match spec.length {
                Length::Fixed(_) => {}
                Length::LlVar(_) => out.extend_from_slice(format!("{width:02}").as_bytes()),
                Length::LllVar(_) => out.extend_from_slice(format!("{width:03}").as_bytes()),
            }
            if spec.kind == Kind::Binary && encoding == BitmapEncoding::Hex {
                push_hex(&mut out, value);
            } else {
                out.extend_from_slice(value);
            }
        }
        out
    }

    /// Decodes one message (without the length header). On failure the error says where, with
    /// the MTI and the fields read so far when there were any.
    pub fn decode(bytes: &[u8], encoding: BitmapEncoding) -> Result<Self, Box<Malformed>> {
        let fail = |error, message: Option<Message>| {
            Box::new(Malformed {
                error,
                mti: message.as_ref().map(|m| m.mti),
                partial: message,
            })
        };
        let Some(mti_bytes) = bytes.get(..4) else {
            return Err(fail(
                DecodeError::NoMti {
                    length: bytes.len(),
                },
                None,
            ));
        };
        let mti = std::str::from_utf8(mti_bytes).ok().and_then(Mti::new);
        let Some(mti) = mti else {
            return Err(fail(DecodeError::BadMti, None));
        };
        let mut message = Message::new(mti);
        let mut at = 4;
        let primary = match read_bitmap(bytes, &mut at, encoding, "primary") {
            Ok(bitmap) => bitmap,
            Err(error) => return Err(fail(error, Some(message))),
        };
        let mut bits = u128::from(u64::from_be_bytes(primary)) << 64;
        if primary[0] & 0x80 != 0 {
            match read_bitmap(bytes, &mut at, encoding, "secondary") {
                Ok(secondary) => bits |= u128::from(u64::from_be_bytes(secondary)),
                Err(error) => return Err(fail(error, Some(message))),
            }
        }
        for n in 2..=128u8 {
            if bits & (1u128 << (128 - u32::from(n))) == 0 {
                continue;
            }
            match read_field(bytes, &mut at, encoding, n) {
                Ok(value) => {
                    message.fields.insert(n, value);
                }
                Err(error) => return Err(fail(error, Some(message))),
            }
        }
        if at != bytes.len() {
            let count = bytes.len() - at;
            return Err(fail(DecodeError::TrailingBytes { count }, Some(message)));
        }
        Ok(message)
    }
}

fn read_bitmap(
    bytes: &[u8],
    at: &mut usize,
    encoding: BitmapEncoding,
    which: &'static str,
) -> Result<[u8; 8], DecodeError> {
    let needed = match encoding {
        BitmapEncoding::Binary => 8,
        BitmapEncoding::Hex => 16,
    };
    let raw = bytes
        .get(*at..*at + needed)
        .ok_or(DecodeError::ShortBitmap {
            which,
            needed,
            available: bytes.len().saturating_sub(*at),
        })?;
    *at += needed;
    match encoding {
        BitmapEncoding::Binary => Ok(raw.try_into().expect("8 bytes")),
        BitmapEncoding::Hex => from_hex(raw)
            .map(|v| v.try_into().expect("16 hex characters are 8 bytes"))
            .map_err(|_| DecodeError::BadHexBitmap { which }),
    }
}

fn read_field(
    bytes: &[u8],
    at: &mut usize,
    encoding: BitmapEncoding,
    field: u8,
) -> Result<Vec<u8>, DecodeError> {
    let spec = spec::field(field).expect("2..=128 are in the table");
    let hex = spec.kind == Kind::Binary && encoding == BitmapEncoding::Hex;
    let width = match spec.length {
        Length::Fixed(n) => wire_width(encoding, spec.kind, n),
        Length::LlVar(max) | Length::LllVar(max) => {
            let digits = if matches!(spec.length, Length::LlVar(_)) {
                2
            } else {
                3
            };
            let prefix = bytes
                .get(*at..*at + digits)
                .ok_or(DecodeError::ShortLength { field })?;
            if !prefix.iter().all(u8::is_ascii_digit) {
                return Err(DecodeError::BadLength { field });
            }
            *at += digits;
            let width = prefix
                .iter()
                .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
            let max = wire_width(encoding, spec.kind, max);
            if width > max || (hex && width % 2 != 0) {
                return Err(DecodeError::TooLong {
                    field,
                    length: width,
                    max,
                });
            }
            width
        }
    };
    let raw = bytes.get(*at..*at + width).ok_or(DecodeError::Truncated {
        field,
        needed: width,
        available: bytes.len().saturating_sub(*at),
    })?;
    *at += width;
    if hex {
        return from_hex(raw).map_err(|position| DecodeError::BadContent {
            field,
            position,
            kind: kind_name(Kind::Binary),
        });
    }
    if let Some(position) = bad_byte(spec.kind, raw) {
        return Err(DecodeError::BadContent {
            field,
            position,
            kind: kind_name(spec.kind),
        });
    }
    Ok(raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mti(text: &str) -> Mti {
        Mti::new(text).unwrap()
    }

    #[test]
    fn mti_digits_name_class_function_and_answer() {
        let m = mti("0101");
        assert_eq!((m.class(), m.function(), m.is_repeat()), (1, 0, true));
        assert_eq!(m.original(), mti("0100"));
        assert_eq!(m.response(), mti("0110"));
        assert_eq!(mti("0420").response(), mti("0430"));
        assert_eq!(mti("0221").response(), mti("0230"));
        assert!(mti("0800").is_request() && !mti("0810").is_request());
        assert!(Mti::new("01a0").is_none() && Mti::new("010").is_none());
    }

    #[test]
    fn a_known_message_encodes_to_known_bytes() {
        let mut m = Message::new(mti("0800"));
        m.set(7, "1122334455").unwrap();
        m.set(11, "000001").unwrap();
        m.set(70, "301").unwrap();
        let bytes = m.encode(BitmapEncoding::Hex);
        // Bits 1 (secondary), 7 and 11 in the primary; bit 70 is bit 6 of the secondary.
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            concat!(
                "0800",
                "8220000000000000",
                "0400000000000000",
                "1122334455",
                "000001",
                "301"
            )
        );
        assert_eq!(Message::decode(&bytes, BitmapEncoding::Hex).unwrap(), m);
        let binary = m.encode(BitmapEncoding::Binary);
        assert_eq!(&binary[4..12], &[0x82, 0x20, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Message::decode(&binary, BitmapEncoding::Binary).unwrap(), m);
    }

    #[test]
    fn set_checks_the_field_table() {
        let mut m = Message::new(mti("0100"));
        assert_eq!(
            m.set(4, "12").unwrap_err(),
            EncodeError::WrongLength {
                field: 4,
                length: 2,
                expected: 12
            }
        );
        assert!(matches!(
            m.set(2, "1".repeat(20)),
            Err(EncodeError::TooLong { .. })
        ));
        assert!(matches!(
            m.set(11, "00000A"),
            Err(EncodeError::BadContent { position: 5, .. })
        ));
        assert!(matches!(
            m.set(1, vec![0; 8]),
            Err(EncodeError::NoSuchField { field: 1 })
        ));
        m.set_number(11, 42).unwrap();
        assert_eq!(m.text(11), Some("000042"));
    }

    #[test]
    fn every_malformed_input_is_an_exact_error() {
        let enc = BitmapEncoding::Binary;
        let err = |bytes: &[u8]| Message::decode(bytes, enc).unwrap_err();
        assert_eq!(err(b"01").error, DecodeError::NoMti { length: 2 });
        assert_eq!(err(b"01X0\0\0\0\0\0\0\0\0").error, DecodeError::BadMti);
        assert!(matches!(
            err(b"0100\x80").error,
            DecodeError::ShortBitmap {
                which: "primary",
                ..
            }
        ));
        let mut secondary_missing = b"0100".to_vec();
        secondary_missing.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            err(&secondary_missing).error,
            DecodeError::ShortBitmap {
                which: "secondary",
                ..
            }
        ));
        // Field 2 present: length prefix "2X".
        let mut m = b"0100".to_vec();
        m.extend_from_slice(&[0x40, 0, 0, 0, 0, 0, 0, 0]);
        let mut bad_len = m.clone();
        bad_len.extend_from_slice(b"2X");
        assert_eq!(err(&bad_len).error, DecodeError::BadLength { field: 2 });
        let mut too_long = m.clone();
        too_long.extend_from_slice(b"25");
        assert_eq!(
            err(&too_long).error,
            DecodeError::TooLong {
                field: 2,
                length: 25,
                max: 19
            }
        );
        let mut truncated = m.clone();
        truncated.extend_from_slice(b"164111");
        let e = err(&truncated);
        assert_eq!(
            e.error,
            DecodeError::Truncated {
                field: 2,
                needed: 16,
                available: 4
            }
        );
        assert_eq!(e.mti, Some(mti("0100")));
        let mut letters = m.clone();
        letters.extend_from_slice(b"0411\x011");
        assert_eq!(
            err(&letters).error,
            DecodeError::BadContent {
                field: 2,
                position: 2,
                kind: "printable ASCII"
            }
        );
        let mut trailing = m;
        trailing.extend_from_slice(b"044111zz");
        assert_eq!(
            err(&trailing).error,
            DecodeError::TrailingBytes { count: 2 }
        );
    }

    #[test]
    fn fields_read_before_an_error_come_back_to_address_the_answer() {
        let mut m = Message::new(mti("0200"));
        m.set(11, "123456").unwrap();
        m.set(37, "ABCDEFGHIJKL").unwrap();
        let mut bytes = m.encode(BitmapEncoding::Binary);
        bytes.truncate(bytes.len() - 3);
        let e = Message::decode(&bytes, BitmapEncoding::Binary).unwrap_err();
        assert_eq!(e.partial.unwrap().text(11), Some("123456"));
    }

    #[test]
    fn debug_output_never_shows_the_pan() {
        let mut m = Message::new(mti("0100"));
        m.set(2, "4111111111111111").unwrap();
        assert!(!format!("{m:?}").contains("4111"));
    }
}
