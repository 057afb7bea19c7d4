//! The peer protocol's server: each RPC, once its caller is shown to be a cluster member,
//! handed to the local Raft node. Errors of the local node (stopped, storage failed) answer
//! `UNAVAILABLE`, which the calling leader treats as an unreachable peer and retries later.

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{BasicNode, Snapshot, SnapshotMeta};
use tandem_proto::raft::raft_server::Raft as RaftRpc;
use tandem_proto::raft::snapshot_chunk::Part;
use tandem_proto::raft::{Message, SnapshotChunk};
use tandem_storage::types::{NodeId, TandemRaft, Vote};
use tonic::{Request, Response, Status, Streaming};

use crate::{MESSAGE_BYTES_MAX, PEER_TOKEN_HEADER, RaftServer, wire};

/// Serves `tandem.raft.v1.Raft` for one node.
#[derive(Clone)]
pub struct RaftService {
    raft: std::sync::Arc<std::sync::OnceLock<openraft::Raft<TandemRaft>>>,
    token: std::sync::Arc<str>,
}

impl RaftService {
    /// Serves `raft`'s peer RPCs to callers that present `token` ([`crate::peer_token`]).
    pub fn new(raft: openraft::Raft<TandemRaft>, token: String) -> Self {
        let service = Self::pending(token);
        service.attach(raft);
        service
    }

    /// A service whose Raft node is not open yet (the listener is up before the log is
    /// read): it answers `UNAVAILABLE` until [`RaftService::attach`].
    pub fn pending(token: String) -> Self {
        Self {
            raft: Default::default(),
            token: token.into(),
        }
    }

    /// Serves `raft` from now on (once; later calls change nothing).
    pub fn attach(&self, raft: openraft::Raft<TandemRaft>) {
        let _ = self.raft.set(raft);
    }

    fn raft(&self) -> Result<&openraft::Raft<TandemRaft>, Status> {
        self.raft
            .get()
            .ok_or_else(|| Status::unavailable("this node is still opening its log"))
    }

    /// The tonic service, with the protocol's message bound.
    pub fn into_server(self) -> RaftServer<Self> {
        RaftServer::new(self)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX)
    }
}

/// Refuses a caller that does not present the cluster's peer token `token`. An API key,
/// however privileged, is not a peer token.
pub(crate) fn authorized<T>(request: &Request<T>, token: &str) -> Result<(), Status> {
    let presented = request
        .metadata()
        .get(PEER_TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            Status::unauthenticated(
                "the peer protocol is for cluster members only: no peer token was presented",
            )
        })?;
    if equal_in_constant_time(presented.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated(
            "this peer token is not the cluster's: is the node's PAN key the cluster's?",
        ))
    }
}

/// Whether two byte strings are equal, in time that depends on their lengths only.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn malformed(error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("not a tandem.raft.v1 message: {error}"))
}

fn local(error: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("this node cannot take it now: {error}"))
}

/// `work` (file writes) on a blocking thread; its failure is this node's.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(local)?
        .map_err(local)
}

fn answer<T: serde::Serialize>(value: &T) -> Result<Response<Message>, Status> {
    wire::encode(value)
        .map(Response::new)
        .map_err(|e| Status::internal(format!("encoding the answer: {e}")))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn vote(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        authorized(&request, &self.token)?;
        let rpc: VoteRequest<NodeId> = wire::decode(request.get_ref()).map_err(malformed)?;
        answer(&self.raft()?.vote(rpc).await.map_err(local)?)
    }

    async fn append_entries(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        authorized(&request, &self.token)?;
        let started = std::time::Instant::now();
        let rpc: AppendEntriesRequest<TandemRaft> =
            wire::decode(request.get_ref()).map_err(malformed)?;
        let entries = rpc.entries.len();
        let response = self.raft()?.append_entries(rpc).await.map_err(local)?;
        // A follower's share of each commit round: decoding, appending, its fdatasync.
        if entries > 0 {
            metrics::histogram!("tandem_raft_append_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        answer(&response)
    }

    async fn read_index(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        authorized(&request, &self.token)?;
        match self.raft()?.ensure_linearizable().await {
            Ok(read) => answer(&read.map_or(0u64, |log| log.index)),
            Err(error) => Err(Status::failed_precondition(format!(
                "no read index here: {error}"
            ))),
        }
    }

    async fn members(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        authorized(&request, &self.token)?;
        let metrics = self.raft()?.metrics();
        let metrics = metrics.borrow();
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        answer(&(!voters.is_empty()).then_some(voters))
    }

    async fn standing(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        authorized(&request, &self.token)?;
        let standing = crate::prompt::standing_of(self.raft()?)
            .await
            .ok_or_else(|| local("the Raft node stopped"))?;
        answer(&standing)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Message>, Status> {
        authorized(&request, &self.token)?;
        let mut chunks = request.into_inner();
        let (vote, meta): (Vote, SnapshotMeta<NodeId, BasicNode>) = match chunks.message().await? {
            Some(SnapshotChunk {
                part: Some(Part::Head(head)),
            }) => postcard::from_bytes(&head).map_err(malformed)?,
            _ => return Err(malformed("a snapshot starts with its head")),
        };
        // Spooled to a file as it arrives (the state machine's spool, under the data
        // directory), synced, and checked whole before openraft installs it.
        let raft = self.raft()?;
        let mut data = raft.begin_receiving_snapshot().await.map_err(local)?;
        while let Some(chunk) = chunks.message().await? {
            let bytes = match chunk.part {
                Some(Part::Data(bytes)) => bytes,
                _ => return Err(malformed("after its head, a snapshot is data only")),
            };
            data = blocking(move || data.append(&bytes).map(|()| data)).await?;
        }
        let data = blocking(move || data.finish().map(|_| data))
            .await
            .map_err(|e| {
                malformed(format!(
                    "the snapshot did not arrive whole: {}",
                    e.message()
                ))
            })?;
        let started = std::time::Instant::now();
        let snapshot = Snapshot {
            meta,
            snapshot: data,
        };
        let installed = raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(local)?;
        metrics::counter!("tandem_snapshot_installs_total").increment(1);
        metrics::histogram!("tandem_snapshot_install_seconds")
            .record(started.elapsed().as_secs_f64());
        answer(&installed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(equal_in_constant_time(b"abc", b"abc"));
        assert!(!equal_in_constant_time(b"abc", b"abd"));
        assert!(!equal_in_constant_time(b"abc", b"ab"));
        assert!(!equal_in_constant_time(b"", b"a"));
    }
}
