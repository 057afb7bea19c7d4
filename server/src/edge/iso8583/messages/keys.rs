//! A message's keys: its idempotency key (a repeat or retransmission finds its answer) and the
//! lifecycle it concerns, by DE 90 or by DE 37 and the PAN's hash, with the other keys as
//! references.

use super::*;

pub(super) fn short_hash(parts: &[&str]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0x1f]);
    }
    hex::encode(&digest.finalize()[..8])
}

/// A message's idempotency key: its type (repeats share their original's) and the profile's
/// key fields, DE 32 + DE 11 + DE 37 + the PAN's hash. DE 7 is left out on purpose.
pub(super) fn message_key(mti: Mti, fields: &Fields<'_>, pan_hash: &str) -> IdempotencyKey {
    let hash = short_hash(&[fields.acquirer, fields.stan, fields.rrn, pan_hash]);
    IdempotencyKey::new(&format!("iso{}:{hash}", &mti.as_str()[..3]))
        .expect("letters, digits and a colon make a valid key")
}

/// The lifecycle a message's DE 37 names: acquirer + RRN + PAN hash (the acquirer is DE
/// 90's when DE 90 names an original). An original is opened under this id.
pub(super) fn retrieval_lifecycle(
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
pub(super) fn points_at_original(mti: Mti, fields: &Fields<'_>) -> bool {
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
pub(super) fn lifecycle_keys(
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
