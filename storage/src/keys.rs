//! The state's key layout (the table in `state_machine/mod.rs`'s docs), the chunked values an
//! account's events are kept in, and reading one decoded value under a key.

use std::io;

use openraft::StoredMembership;
use tandem_core::{AccountId, CardId};

use crate::checkpoint::Layered;
use crate::codec;
use crate::types::NodeId;

pub(crate) const APPLIED: &[u8] = b"m:applied";
pub(crate) const MEMBERSHIP: &[u8] = b"m:membership";
/// The time floor (`LogBatch::at_ms`) of the entries a checkpoint covers.
pub(crate) const TIME_FLOOR: &[u8] = b"m:time";

pub(crate) type Membership = StoredMembership<NodeId, openraft::BasicNode>;

pub(crate) fn account_prefix(account: &AccountId) -> Vec<u8> {
    let mut key = b"a:".to_vec();
    key.extend_from_slice(account.as_str().as_bytes());
    key.push(0);
    key
}

pub(crate) fn snapshot_key(account: &AccountId) -> Vec<u8> {
    let mut key = account_prefix(account);
    key.push(b's');
    key
}

pub(crate) fn events_prefix(account: &AccountId) -> Vec<u8> {
    let mut key = account_prefix(account);
    key.push(b'e');
    key
}

pub(crate) fn events_key(account: &AccountId, seq_first: u64) -> Vec<u8> {
    let mut key = events_prefix(account);
    key.extend_from_slice(&seq_first.to_be_bytes());
    key
}

pub(crate) fn card_key(card: &CardId) -> Vec<u8> {
    [b"c:".as_slice(), card.as_str().as_bytes()].concat()
}

pub(crate) fn pan_key(hash: &[u8]) -> Vec<u8> {
    [b"p:".as_slice(), hash].concat()
}

/// The prefix of the settings' keys (`settings.rs`).
pub(crate) const SETTINGS: &[u8] = b"s:";

pub(crate) fn setting_key(name: &str) -> Vec<u8> {
    [SETTINGS, name.as_bytes()].concat()
}

/// The prefix of the expiry pointers older data directories hold (see the module docs).
pub(crate) const OLD_EXPIRY_POINTERS: &[u8] = b"w:";

/// Order-preserving bytes of a signed time.
pub(crate) fn time_bytes(millis: i64) -> [u8; 8] {
    ((millis as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time and account of an `x:` key.
pub(crate) fn expiry_entry(key: &[u8]) -> Option<(i64, AccountId)> {
    let time = u64::from_be_bytes(key.get(2..10)?.try_into().ok()?) ^ (1 << 63);
    let account = std::str::from_utf8(key.get(10..)?)
        .ok()
        .and_then(|s| AccountId::new(s).ok())?;
    Some((time as i64, account))
}

pub(crate) fn expiry_key(expires_at: i64, account: &AccountId) -> Vec<u8> {
    [
        b"x:".as_slice(),
        &time_bytes(expires_at),
        account.as_str().as_bytes(),
    ]
    .concat()
}

/// Whether both keys are events keys of one account (`a:` account `0` `e` seq): such values
/// are chunk sequences, and a later one continues an earlier one of the same layer (its
/// events follow on), so a checkpoint stores them as one value under the first key. Readers
/// count sequence numbers from a key through all of its chunks, so either form reads alike.
pub(crate) fn same_accounts_events(first: &[u8], next: &[u8]) -> bool {
    let n = first.len();
    n == next.len()
        && n > 2 + 2 + 8
        && first.starts_with(b"a:")
        && first[n - 10..n - 8] == [0, b'e']
        && first[..n - 8] == next[..n - 8]
}

/// An events value holds one or more encoded records, each with a 4-byte length.
pub(crate) fn push_chunk(value: &mut Vec<u8>, record: &[u8]) {
    value.extend_from_slice(&(record.len() as u32).to_be_bytes());
    value.extend_from_slice(record);
}

pub(crate) fn chunks(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let length = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let chunk = rest.get(4..4 + length)?;
        rest = &rest[4 + length..];
        Some(chunk)
    })
}

/// The value the state holds under `key`, decoded.
pub(crate) fn stored<T: serde::de::DeserializeOwned>(
    store: &Layered,
    key: &[u8],
) -> io::Result<Option<T>> {
    store
        .get(key)?
        .map(|bytes| codec::decode_value(&bytes).map_err(io::Error::other))
        .transpose()
}
