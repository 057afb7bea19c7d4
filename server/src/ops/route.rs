//! Where an account's commands run. Every write asks before it executes: a single node runs
//! everything here; a cluster member runs it here when it leads, and otherwise forwards it to
//! the leader (`ops::forward`). With no leader known (an election under way), the answer is
//! [`OpError::NotLeader`], which is retryable. The sharding after this asks the account's
//! shard's leader; the operations do not change.

use tandem_actors::Leader;

use super::OpError;

/// Where a write is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// On this node's account system.
    Here,
    /// At the leader, `id` at its peer address.
    AtLeader { id: u64, address: String },
}

/// Where a write runs, given who leads (`None` on a single node, which leads itself).
pub fn route(leader: Option<Leader>) -> Result<Route, OpError> {
    match leader {
        None | Some(Leader::This) => Ok(Route::Here),
        Some(Leader::Other { id, address }) => Ok(Route::AtLeader { id, address }),
        Some(Leader::Unknown) => Err(OpError::NotLeader { leader: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_and_a_leader_run_writes_here() {
        assert_eq!(route(None).unwrap(), Route::Here);
        assert_eq!(route(Some(Leader::This)).unwrap(), Route::Here);
    }

    #[test]
    fn a_follower_sends_writes_to_the_leader_and_waits_out_an_election() {
        let leader = Leader::Other {
            id: 2,
            address: "127.0.0.1:7102".into(),
        };
        assert_eq!(
            route(Some(leader)).unwrap(),
            Route::AtLeader {
                id: 2,
                address: "127.0.0.1:7102".into()
            }
        );
        let error = route(Some(Leader::Unknown)).unwrap_err();
        assert_eq!(error.code(), "not_leader");
        assert!(error.retryable());
    }
}
