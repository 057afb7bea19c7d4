//! The openraft type configuration and what one log entry carries.
//!
//! One log entry is a [`LogBatch`]: the events of many accounts that share one group commit.
//! Each [`AccountRecord`] is one account's consecutive events (already encoded), plus what
//! the indexes need, so the state machine applies it without decoding events.

use serde::{Deserialize, Serialize};
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
    /// The account's entry in the expiry index, when these events moved it (its earliest
    /// open-hold expiry changed). The index keeps one entry per account, so most records move
    /// none.
    pub expiry: Option<ExpiryMove>,
    /// PAN directory entries to write: (keyed PAN hash, card). A card issued with a PAN
    /// carries its link in the same record as its `CardIssued` / `CardReplaced` event, so
    /// the two are committed together; a link for a card that already exists comes in a
    /// record of its own (no events).
    pub pans: Vec<(Vec<u8>, CardId)>,
    /// A log-format-1 record's expiry move: where it went, but not where from (format 1 did
    /// not say). Never written; set only when a format-1 entry is read (see `log_store.rs`),
    /// and the state machine then finds the entry it moves itself.
    #[serde(skip)]
    pub format1_next_expiry: Option<Option<i64>>,
}

/// An account's expiry index entry moved by one record: its key's time before (`None`: the
/// account had no entry) and after (`None`: no hold is open any more). The account's actor
/// knows both, so the state machine moves the entry without looking it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryMove {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// One change to the cluster's settings (`settings.rs`): the value under `name` becomes
/// `value`, or is removed when `None`. The bytes are the owner's (the server's API keys, the
/// actors' FX rates); storage only keeps them, alike on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub value: Option<Vec<u8>>,
}

/// The application data of one Raft log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    pub records: Vec<AccountRecord>,
    /// Settings changed by this entry (log format 3 on), applied after its records.
    pub settings: Vec<Setting>,
    /// The leader's clock when it proposed this entry, milliseconds since the epoch (log
    /// format 3 on; 0 before). Every node keeps the latest it applied as its time floor, so a
    /// leader whose clock runs behind never decides at a time before a committed decision.
    pub at_ms: i64,
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
        SnapshotData = crate::snapshot::SnapshotData,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TandemRaft>;
pub type StorageError = openraft::StorageError<NodeId>;

impl AccountRecord {
    /// The record for `events` an account decided, starting at its sequence number
    /// `seq_first`, with the card directory entries they imply; `expiry` is the move of the
    /// account's expiry index entry when its earliest hold expiry changed; `snapshot` is the
    /// account after them when one is due.
    pub fn from_events(
        account: &AccountId,
        seq_first: u64,
        events: &[tandem_core::Event],
        expiry: Option<ExpiryMove>,
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
            expiry,
            pans: Vec::new(),
            format1_next_expiry: None,
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
            expiry: None,
            pans,
            format1_next_expiry: None,
        }
    }
}

/// Log format 1's record, read from logs written before records carried where an expiry
/// move came from (see `log_store.rs`): [`AccountRecord`] with `next_expiry` for `expiry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccountRecordFormat1 {
    pub account: AccountId,
    pub seq_first: u64,
    pub event_count: u32,
    pub events: Vec<u8>,
    pub snapshot: Option<Vec<u8>>,
    pub cards: Vec<CardId>,
    pub next_expiry: Option<Option<i64>>,
    pub pans: Vec<(Vec<u8>, CardId)>,
}

/// Log format 1's entry data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogBatchFormat1 {
    pub records: Vec<AccountRecordFormat1>,
}

openraft::declare_raft_types!(
    /// [`TandemRaft`] as log format 1 wrote its entries.
    pub(crate) TandemRaftFormat1:
        D = LogBatchFormat1,
        R = BatchApplied,
        SnapshotData = crate::snapshot::SnapshotData,
);

impl From<AccountRecordFormat1> for AccountRecord {
    fn from(old: AccountRecordFormat1) -> Self {
        Self {
            account: old.account,
            seq_first: old.seq_first,
            event_count: old.event_count,
            events: old.events,
            snapshot: old.snapshot,
            cards: old.cards,
            expiry: None,
            pans: old.pans,
            format1_next_expiry: old.next_expiry,
        }
    }
}

impl From<&AccountRecord> for AccountRecordFormat1 {
    fn from(record: &AccountRecord) -> Self {
        Self {
            account: record.account.clone(),
            seq_first: record.seq_first,
            event_count: record.event_count,
            events: record.events.clone(),
            snapshot: record.snapshot.clone(),
            cards: record.cards.clone(),
            next_expiry: record
                .expiry
                .map(|moved| moved.to)
                .or(record.format1_next_expiry),
            pans: record.pans.clone(),
        }
    }
}

/// `entry` with its data converted by `data`: what one log format's entry is in another
/// (their log ids, blanks and memberships are alike).
fn converted<A, B>(entry: openraft::Entry<A>, data: impl FnOnce(A::D) -> B::D) -> openraft::Entry<B>
where
    A: openraft::RaftTypeConfig<NodeId = NodeId, Node = openraft::BasicNode>,
    B: openraft::RaftTypeConfig<NodeId = NodeId, Node = openraft::BasicNode>,
{
    use openraft::EntryPayload;
    let payload = match entry.payload {
        EntryPayload::Blank => EntryPayload::Blank,
        EntryPayload::Normal(batch) => EntryPayload::Normal(data(batch)),
        EntryPayload::Membership(membership) => EntryPayload::Membership(membership),
    };
    openraft::Entry {
        log_id: entry.log_id,
        payload,
    }
}

/// An entry as log format 1 wrote it (for tests that replay an older log).
pub(crate) fn entry_to_format1(entry: &Entry) -> openraft::Entry<TandemRaftFormat1> {
    converted(entry.clone(), |batch: LogBatch| LogBatchFormat1 {
        records: batch
            .records
            .iter()
            .map(AccountRecordFormat1::from)
            .collect(),
    })
}

/// A log-format-1 entry as this build's [`Entry`].
pub(crate) fn entry_from_format1(old: openraft::Entry<TandemRaftFormat1>) -> Entry {
    converted(old, |batch: LogBatchFormat1| LogBatch {
        records: batch.records.into_iter().map(AccountRecord::from).collect(),
        settings: Vec::new(),
        at_ms: 0,
    })
}

/// Log format 2's entry data: records only, no settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogBatchFormat2 {
    pub records: Vec<AccountRecord>,
}

openraft::declare_raft_types!(
    /// [`TandemRaft`] as log format 2 wrote its entries.
    pub(crate) TandemRaftFormat2:
        D = LogBatchFormat2,
        R = BatchApplied,
        SnapshotData = crate::snapshot::SnapshotData,
);

/// An entry as log format 2 wrote it (its settings are dropped: format 2 had none), for
/// tests that replay an older log.
#[cfg(test)]
pub(crate) fn entry_to_format2(entry: &Entry) -> openraft::Entry<TandemRaftFormat2> {
    converted(entry.clone(), |batch: LogBatch| LogBatchFormat2 {
        records: batch.records,
    })
}

/// A log-format-2 entry as this build's [`Entry`].
pub(crate) fn entry_from_format2(old: openraft::Entry<TandemRaftFormat2>) -> Entry {
    converted(old, |batch: LogBatchFormat2| LogBatch {
        records: batch.records,
        settings: Vec::new(),
        at_ms: 0,
    })
}
