//! The on-disk encoding of events and account snapshots.
//!
//! Every encoded value starts with one byte: the format version. Version 1 is `postcard` (a
//! stable, compact serde format) of the core's types as they stand in version 1. A later
//! version adds a decoder beside this one and keeps decoding 1, so a log written today
//! replays after an upgrade; `tests/golden.rs` replays a committed version-1 log through
//! [`decode_events`] to hold us to that.

use serde::{Serialize, de::DeserializeOwned};
use tandem_core::{Account, Event};

/// The format this build writes.
pub const FORMAT_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error(
        "format version {0} is newer than this build understands (it reads up to {FORMAT_VERSION})"
    )]
    UnknownVersion(u8),
    #[error("record does not decode as format version {version}: {source}")]
    Malformed {
        version: u8,
        source: postcard::Error,
    },
    #[error("could not encode: {0}")]
    Encode(postcard::Error),
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_VERSION];
    out.extend(postcard::to_allocvec(value).map_err(CodecError::Encode)?);
    Ok(out)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        1 => postcard::from_bytes(body).map_err(|source| CodecError::Malformed { version, source }),
        other => Err(CodecError::UnknownVersion(other)),
    }
}

/// Encodes the events one decision (or several, of one account) recorded.
pub fn encode_events(events: &[Event]) -> Result<Vec<u8>, CodecError> {
    encode(events)
}

pub fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, CodecError> {
    decode(bytes)
}

/// Encodes a whole account, for periodic snapshots.
pub fn encode_account(account: &Account) -> Result<Vec<u8>, CodecError> {
    encode(account)
}

pub fn decode_account(bytes: &[u8]) -> Result<Account, CodecError> {
    decode(bytes)
}

/// Encodes any other stored value (index entries, metadata) the same versioned way.
pub fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode(value)
}

pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::testkit::{World, money, spend};
    use tandem_core::{AccountKind, Role};

    #[test]
    fn events_and_accounts_round_trip() {
        let mut world = World::open(AccountKind::Group);
        world.add_member("m2", Role::Member);
        world.issue_card("c1", "m2");
        world.deposit("owner", money(10_000, "EUR"));
        world.authorize("a1", spend("c1", money(2_500, "USD")));
        let bytes = encode_events(&world.log).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode_events(&bytes).unwrap(), world.log);
        let account = decode_account(&encode_account(&world.account).unwrap()).unwrap();
        assert_eq!(account, world.account);
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors_not_panics() {
        assert!(matches!(decode_events(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode_events(&[9, 1, 2]),
            Err(CodecError::UnknownVersion(9))
        ));
        assert!(matches!(
            decode_events(&[1, 0xff, 0xff, 0xff]),
            Err(CodecError::Malformed { .. })
        ));
    }
}
