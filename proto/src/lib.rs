//! # tandem-proto
//!
//! The gRPC contract, package `tandem.v1` (`proto/tandem/v1/tandem.proto`). The messages
//! also derive serde, and the HTTP/JSON API reads and writes these same messages, so the two
//! protocols share one vocabulary. The peer protocol between a cluster's nodes is
//! `tandem.raft.v1` (`proto/tandem/raft/v1/raft.proto`), apart from the client contract. Depends on nothing of ours, so the server and the load
//! tester can both use it.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod v1 {
    tonic::include_proto!("tandem.v1");

    /// The encoded descriptors, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tandem_descriptor");
}

/// The peer protocol: openraft's RPCs between cluster nodes.
pub mod raft {
    tonic::include_proto!("tandem.raft.v1");
}
