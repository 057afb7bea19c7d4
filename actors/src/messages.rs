//! The messages of the actors: what a caller sends an account ([`AccountMsg`]) and gets back
//! ([`Reply`], [`ExecuteError`]), and what a shard's mailbox carries ([`ShardMsg`]).

use tandem_core::{Account, AccountId, Command, Outcome};
use tandem_storage::{CommitError, Lease, LoadError};
use tokio::sync::oneshot;

use crate::shared::Shared;

/// What callers get when the engine could not give an answer. Every variant is retryable:
/// nothing was answered as done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    /// Over the per-account or global in-flight limit (ISO 8583 response 91 at the edge).
    #[error("busy: too much work in flight")]
    Busy,
    /// The log could not make the decision durable.
    #[error("the log failed: {0}")]
    LogFailed(String),
    /// The account's actor stopped before answering (passivated or restarting).
    #[error("the account restarted before answering")]
    Interrupted,
    /// The core could not decide (an invariant would break).
    #[error("could not decide: {0}")]
    CouldNotDecide(String),
    /// The stored account could not be loaded.
    #[error("could not load the account: {0}")]
    LoadFailed(String),
    /// This node does not lead the log: retry at the leader with the same idempotency key
    /// (the decision may have committed through it).
    #[error("this node does not lead the log")]
    NotLeader { leader: Option<u64> },
    /// The node is stopping: nothing was recorded; retry shortly or on another node.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl From<CommitError> for ExecuteError {
    fn from(error: CommitError) -> Self {
        match error {
            CommitError::Busy => ExecuteError::Busy,
            CommitError::NotLeader { leader } => ExecuteError::NotLeader { leader },
            CommitError::ShuttingDown => ExecuteError::ShuttingDown,
            CommitError::LogFailed(why) => ExecuteError::LogFailed(why),
        }
    }
}

pub type Reply = oneshot::Sender<Result<Outcome, ExecuteError>>;

// Nearly every message is an `Execute`; boxing it to shrink the rare ones would cost an
// allocation per command.
#[allow(clippy::large_enum_variant)]
pub enum AccountMsg {
    Execute {
        command: Command,
        reply: Reply,
        /// The keyed PAN hash of the card this command issues, if it has one: the PAN
        /// directory's link travels in the same log record as the card, so no card exists
        /// without it.
        pan: Option<Vec<u8>>,
        /// The time of the expiry index entry the sweeper found for this account, when the
        /// command is its `Sweep`: an entry the account does not hold is removed.
        swept_entry: Option<i64>,
    },
    /// The account's state as committed so far: a copy taken now, answered once every
    /// decision it holds is durable. Only for a resident account: a read never loads one
    /// (its shard drops the reply, and the caller reads the account at rest).
    Read {
        reply: oneshot::Sender<Result<Account, ExecuteError>>,
    },
}

impl AccountMsg {
    /// Answers the message with `error` without deciding anything (its account could not be
    /// loaded).
    pub(crate) fn refuse(self, shared: &Shared, error: ExecuteError) {
        match self {
            AccountMsg::Execute { reply, .. } => {
                shared.release_admission();
                let _ = reply.send(Err(error));
            }
            AccountMsg::Read { reply } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

pub(crate) enum ShardMsg {
    /// A message for one of the shard's accounts.
    Account(AccountId, AccountMsg),
    /// An account's state, loaded from the checkpoint off the runtime's workers.
    Loaded {
        account: AccountId,
        lease: Lease,
        loaded: Result<Account, LoadError>,
    },
    /// A commit of the account failed: drop its resident copy.
    LogFailed(AccountId),
    /// Passivate the idle accounts.
    Tick,
    /// This node stopped leading: every resident account leaves (only the leader runs
    /// actors; a copy that missed the next leader's records is not kept).
    Depose,
    /// Makes the shard fail, as a bug would: how the supervisor's restart is tested.
    #[cfg(test)]
    Panic,
}
