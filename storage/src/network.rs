//! The single voter's Raft network: it has no peers, so [`NoNetwork`] answers every call
//! "unreachable". A cluster member's network is `tandem-replication`'s `GrpcNetwork`, handed
//! to `Engine::open_member`.

use openraft::error::{Fatal, RPCError, RaftError, ReplicationClosed, StreamingError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot};

use crate::types::{NodeId, TandemRaft, Vote};

/// How a follower learns the index a linearizable read must wait for: it asks the leader
/// (`tandem-replication`'s `GrpcNetwork` over the peer protocol). openraft 0.9 reads by
/// read index on the leader only (`Raft::ensure_linearizable`).
pub trait LeaderReadIndex: Send + Sync + 'static {
    /// The leader `leader` at `address` confirms it leads and answers its read index.
    fn read_index<'a>(
        &'a self,
        leader: NodeId,
        address: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send + 'a>>;
}

/// A single voter never talks to peers; openraft still wants a network. Every call answers
/// "unreachable", which openraft treats as a transient network error.
#[derive(Clone, Copy)]
pub struct NoNetwork;

#[derive(Debug)]
struct NoPeers;

impl std::fmt::Display for NoPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a single-voter node has no peers")
    }
}

impl std::error::Error for NoPeers {}

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(openraft::error::Unreachable::new(&NoPeers))
}

impl RaftNetworkFactory<TandemRaft> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> Self::Network {
        NoNetwork
    }
}

impl RaftNetwork<TandemRaft> for NoNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TandemRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot<TandemRaft>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TandemRaft, Fatal<NodeId>>> {
        Err(StreamingError::Unreachable(
            openraft::error::Unreachable::new(&NoPeers),
        ))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }
}
