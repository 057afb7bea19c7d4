//! # tandem-replication
//!
//! The peer protocol of a Tandem cluster: openraft's RPCs between the nodes as the gRPC
//! service `tandem.raft.v1.Raft` (`proto/proto/tandem/raft/v1/raft.proto`), on each node's
//! gRPC listener. A crate of its own so that the storage crate keeps no network stack (its
//! engine takes any `RaftNetworkFactory`) and the server only mounts the service.
//!
//! - `wire.rs`: a message body is openraft's own request or response in postcard.
//! - `service.rs`: the server side: checks the caller is a cluster member, then hands each
//!   RPC to the local Raft node; a snapshot arrives as a stream of chunks.
//! - `forward.rs`: a request that reached a member which does not lead, carried to the
//!   leader as bytes the server encodes and answers (`tandem.raft.v1.Forward`).
//! - `lanes.rs`: the streams a member forwards on, one per leader, as its network keeps them.
//! - `prompt.rs`: prompt elections: when the leader falls silent past its lease, the member
//!   with the greatest log calls the election at once, having asked its peers.
//! - `network.rs`: the client side ([`GrpcNetwork`]): one long-lived channel per peer, a
//!   deadline on every RPC, snapshots streamed in chunks.
//!
//! Peers prove membership with the cluster's peer token ([`peer_token`]), derived from the
//! PAN hashing key every node of a cluster shares (a cluster secret provisioned out of band):
//! no second secret to provision, and the token reveals nothing of the key. API keys, admin
//! included, are never accepted here.

mod forward;
mod lanes;
mod network;
pub mod prompt;
mod service;
mod wire;

pub use forward::{ForwardHandler, ForwardService};
pub use lanes::ForwardFailed;
pub use network::GrpcNetwork;
pub use service::RaftService;
pub use tandem_proto::raft::raft_server::RaftServer;

/// The metadata header a peer's RPC carries its token in.
pub const PEER_TOKEN_HEADER: &str = "x-tandem-cluster";

/// A peer protocol message, at most: an append carries at most a few log entries (the
/// engine's `max_payload_entries`), each one group commit of at most 4,096 records.
pub const MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Bytes of snapshot data per streamed chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// The cluster's peer token: what every node of a cluster derives alike from the PAN hashing
/// key they share.
pub fn peer_token(pan_key: &tandem_storage::PanKey) -> String {
    pan_key.derive("tandem.raft.v1 peer token")
}
