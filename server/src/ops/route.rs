//! Where an account's commands run. Every operation asks before it executes; today the answer
//! is always [`Route::Here`]. The replication issue answers with the leader of the account's
//! log (and [`OpError::NotLeader`](super::OpError::NotLeader) where this node cannot forward),
//! the sharding after it with the account's shard; the operations do not change.

use tandem_core::AccountId;

/// Where `account`'s commands are decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// On this node's account system.
    Here,
}

/// Where `account`'s commands run: here, on a single node.
pub fn route(_account: &AccountId) -> Route {
    Route::Here
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_runs_every_account_here() {
        for id in ["a", "joint-1", "lt-18c-42"] {
            assert_eq!(route(&AccountId::new(id).unwrap()), Route::Here);
        }
    }
}
