//! The on-disk encoding of events and account snapshots.
//!
//! Every encoded value starts with one byte: the format version, then `postcard` (a stable,
//! compact serde format) of the core's types.
//! - Version 1: the core's types as they stood then.
//! - Version 2 adds `Event::Referenced` (the last variant, so every version-1 event list
//!   decodes as it did) and writes an account as the pair (account, its lifecycle references
//!   sorted); a version-1 account decodes with no references. Other values are unchanged.
//!
//! A later version adds a decoder beside these and keeps decoding the older ones, so a log
//! written today replays after an upgrade; `tests/golden.rs` replays a committed version-1 log
//! through [`decode_events`] to hold us to that.

use serde::{Serialize, de::DeserializeOwned};
use tandem_core::{Account, AuthorizationId, Event};

/// The format this build writes.
pub const FORMAT_VERSION: u8 = 2;

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

/// The format version and the body after it, for a version this build reads.
fn versioned(bytes: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        1 | 2 => Ok((version, body)),
        other => Err(CodecError::UnknownVersion(other)),
    }
}

fn postcard_body<T: DeserializeOwned>(version: u8, body: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(body).map_err(|source| CodecError::Malformed { version, source })
}

/// Values whose encoding is the same in every version this build reads.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (version, body) = versioned(bytes)?;
    postcard_body(version, body)
}

/// Encodes the events one decision (or several, of one account) recorded.
pub fn encode_events(events: &[Event]) -> Result<Vec<u8>, CodecError> {
    encode(events)
}

pub fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, CodecError> {
    decode(bytes)
}

/// Encodes a whole account, for periodic snapshots: the account, then its lifecycle
/// references (sorted, so equal accounts encode alike).
pub fn encode_account(account: &Account) -> Result<Vec<u8>, CodecError> {
    let mut references: Vec<(&AuthorizationId, &AuthorizationId)> =
        account.references.iter().collect();
    references.sort_unstable();
    encode(&(account, references))
}

pub fn decode_account(bytes: &[u8]) -> Result<Account, CodecError> {
    let (version, body) = versioned(bytes)?;
    if version == 1 {
        return postcard_body(version, body);
    }
    let (mut account, references): (Account, Vec<(AuthorizationId, AuthorizationId)>) =
        postcard_body(version, body)?;
    account.references = references.into_iter().collect();
    Ok(account)
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
    use tandem_core::testkit::{World, auth, key, money, spend};
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
    fn lifecycle_references_round_trip_and_format_1_accounts_still_decode() {
        let mut world = World::open(AccountKind::Joint);
        world.issue_card("c1", "owner");
        world.deposit("owner", money(10_000, "EUR"));
        world.run_command(tandem_core::Command {
            key: key("m1"),
            actor: tandem_core::Actor::Network,
            body: tandem_core::CommandBody::Authorize {
                authorization: auth("rrn"),
                spend: spend("c1", money(1_000, "EUR")),
                single_message: false,
            },
            references: vec![auth("de90")],
        });
        assert_eq!(world.account.references.len(), 1);
        // Events with a reference, and the account with it.
        assert_eq!(
            decode_events(&encode_events(&world.log).unwrap()).unwrap(),
            world.log
        );
        let account = decode_account(&encode_account(&world.account).unwrap()).unwrap();
        assert_eq!(account, world.account);
        // A format-1 snapshot (the account alone) decodes, with no references.
        let mut format_1 = vec![1];
        format_1.extend(postcard::to_allocvec(&world.account).unwrap());
        let old = decode_account(&format_1).unwrap();
        assert!(old.references.is_empty());
        assert_eq!(old.authorizations, world.account.authorizations);
        // A format-1 event list decodes as it always did.
        let before: Vec<Event> = world
            .log
            .iter()
            .filter(|e| !matches!(e, Event::Referenced { .. }))
            .cloned()
            .collect();
        let mut format_1 = vec![1];
        format_1.extend(postcard::to_allocvec(&before).unwrap());
        assert_eq!(decode_events(&format_1).unwrap(), before);
    }

    #[test]
    fn an_accounts_small_maps_encode_as_the_btree_maps_of_format_1_did() {
        let mut world = World::open(AccountKind::Group);
        world.add_member("m2", Role::Member);
        world.issue_card("c1", "m2");
        world.issue_card("c2", "owner");
        world.deposit("owner", money(10_000, "EUR"));
        world.deposit("m2", money(5_000, "USD"));
        let account = &world.account;
        fn as_btree<K: Ord + Clone, V: Clone>(
            map: &tandem_core::SmallMap<K, V>,
        ) -> std::collections::BTreeMap<K, V> {
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        let same = |small: Vec<u8>, btree: Vec<u8>| assert_eq!(small, btree);
        same(
            postcard::to_allocvec(&account.members).unwrap(),
            postcard::to_allocvec(&as_btree(&account.members)).unwrap(),
        );
        same(
            postcard::to_allocvec(&account.cards).unwrap(),
            postcard::to_allocvec(&as_btree(&account.cards)).unwrap(),
        );
        same(
            postcard::to_allocvec(&account.balances).unwrap(),
            postcard::to_allocvec(&as_btree(&account.balances)).unwrap(),
        );
        let positions: std::collections::BTreeMap<_, std::collections::BTreeMap<_, _>> = account
            .positions
            .iter()
            .map(|(member, per)| (member.clone(), as_btree(per)))
            .collect();
        same(
            postcard::to_allocvec(&account.positions).unwrap(),
            postcard::to_allocvec(&positions).unwrap(),
        );
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
