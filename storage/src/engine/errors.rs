//! Why a record was not committed ([`CommitError`], every one retryable) and why an engine
//! did not open ([`OpenError`]).

use super::*;

/// Why a record was not committed. Every one is retryable: nothing was answered as done.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CommitError {
    /// The queue to the log is full: try again shortly.
    #[error("the log is busy")]
    Busy,
    /// The log failed a write; this and every later batch fail until the engine restarts.
    #[error("the log failed: {0}")]
    LogFailed(String),
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// This node does not lead the log (it is, or became, a follower): the write may still
    /// commit through the leader it reached before, so retry at the leader with the same
    /// idempotency key. Not a failure of the log: later writes are tried again.
    #[error("this node does not lead the log (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
}

/// What openraft's refusal of a write means for its callers.
pub(crate) fn refused(error: openraft::error::ClientWriteError<NodeId, BasicNode>) -> CommitError {
    match error {
        openraft::error::ClientWriteError::ForwardToLeader(forward) => CommitError::NotLeader {
            leader: forward.leader_id,
        },
        other => CommitError::LogFailed(other.to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replication seam: a write this node cannot lead is a retryable refusal naming the
    /// leader, not a failure of the log.
    #[test]
    fn a_write_refused_for_not_leading_is_retryable_and_names_the_leader() {
        let forward = openraft::error::ForwardToLeader::<NodeId, BasicNode>::new(
            2,
            BasicNode::new("127.0.0.1:7002"),
        );
        assert_eq!(
            refused(openraft::error::ClientWriteError::ForwardToLeader(forward)),
            CommitError::NotLeader { leader: Some(2) }
        );
        let unknown = openraft::error::ForwardToLeader::<NodeId, BasicNode>::empty();
        assert_eq!(
            refused(openraft::error::ClientWriteError::ForwardToLeader(unknown)),
            CommitError::NotLeader { leader: None }
        );
    }
}
