//! The openraft type configuration and what one log entry carries.
//!
//! One log entry is a [`LogBatch`]: the events of many accounts that share one group commit.
//! Each [`AccountRecord`] is one account's consecutive events (already encoded), plus what
//! the indexes need, so the state machine applies it without decoding events.

use serde::{Deserialize, Serialize};
use std::io::Cursor;
use tandem_core::{AccountId, CardId};

/// One account's events within a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub account: AccountId,
    /// The account's sequence number before these events (its count of applied events).
    pub seq_first: u64,
    /// How many events `events` holds.
    pub event_count: u32,
    /// `codec::encode_events` of the events.
    pub events: Vec<u8>,
    /// `codec::encode_account` of the account after these events, when the actor decided it
    /// is time for a snapshot; the state machine then drops the tail before it.
    pub snapshot: Option<Vec<u8>>,
    /// Cards issued by these events (card directory).
    pub cards: Vec<CardId>,
    /// The account's earliest open-hold expiry (ms) after these events, when it changed:
    /// `Some(None)` when no hold is open any more. The expiry index keeps one entry per
    /// account, so most records write none.
    pub next_expiry: Option<Option<i64>>,
    /// PAN directory entries to write: (keyed PAN hash, card). A card issued with a PAN
    /// carries its link in the same record as its `CardIssued` / `CardReplaced` event, so
    /// the two are committed together; a link for a card that already exists comes in a
    /// record of its own (no events).
    pub pans: Vec<(Vec<u8>, CardId)>,
}

/// The application data of one Raft log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    pub records: Vec<AccountRecord>,
}

/// What applying a batch answers (the index it was applied at).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchApplied {
    pub index: u64,
}

openraft::declare_raft_types!(
    /// Tandem's Raft: node ids are `u64`, entries carry [`LogBatch`]es.
    pub TandemRaft:
        D = LogBatch,
        R = BatchApplied,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TandemRaft>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Keeps the default snapshot type's import in use (openraft's macro names it unqualified).
#[allow(dead_code)]
type SnapshotBytes = Cursor<Vec<u8>>;

impl AccountRecord {
    /// The record for `events` an account decided, starting at its sequence number
    /// `seq_first`, with the card directory entries they imply; `next_expiry` is the
    /// account's earliest hold expiry when it changed; `snapshot` is the account after them
    /// when one is due.
    pub fn from_events(
        account: &AccountId,
        seq_first: u64,
        events: &[tandem_core::Event],
        next_expiry: Option<Option<i64>>,
        snapshot: Option<&tandem_core::Account>,
    ) -> Result<Self, crate::codec::CodecError> {
        use tandem_core::Event;
        let cards = events
            .iter()
            .filter_map(|event| match event {
                Event::CardIssued { card, .. } => Some(card.clone()),
                Event::CardReplaced { new_card, .. } => Some(new_card.clone()),
                _ => None,
            })
            .collect();
        Ok(Self {
            account: account.clone(),
            seq_first,
            event_count: u32::try_from(events.len()).unwrap_or(u32::MAX),
            events: if events.is_empty() {
                Vec::new()
            } else {
                crate::codec::encode_events(events)?
            },
            snapshot: snapshot.map(crate::codec::encode_account).transpose()?,
            cards,
            next_expiry,
            pans: Vec::new(),
        })
    }

    /// A record that only links keyed PAN hashes to cards of `account` (no events).
    pub fn pan_links(account: &AccountId, pans: Vec<(Vec<u8>, CardId)>) -> Self {
        Self {
            account: account.clone(),
            seq_first: 0,
            event_count: 0,
            events: Vec::new(),
            snapshot: None,
            cards: Vec::new(),
            next_expiry: None,
            pans,
        }
    }
}
