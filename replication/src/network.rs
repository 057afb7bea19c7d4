//! The peer protocol's client: how this node's Raft reaches its peers.
//!
//! One long-lived channel per peer, kept by the factory across the clients openraft makes
//! (it makes one per replication stream, again at every leader change), and made again only
//! when the peer's address in the membership changes. Every RPC has a deadline, openraft's
//! own for that RPC (`RPCOption::hard_ttl`), snapshots included; a peer that does not answer
//! within it is a timeout, and one that cannot be reached is unreachable, which openraft
//! backs off from.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot};
use tandem_proto::raft::raft_client::RaftClient;
use tandem_proto::raft::snapshot_chunk::Part;
use tandem_proto::raft::{Message, SnapshotChunk};
use tandem_storage::types::{NodeId, TandemRaft, Vote};
use tokio_stream::StreamExt;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::{MESSAGE_BYTES_MAX, PEER_TOKEN_HEADER, SNAPSHOT_CHUNK_BYTES, wire};

/// How long a follower waits for the leader's read index (a round of heartbeats there).
const READ_INDEX_DEADLINE: Duration = Duration::from_secs(2);

/// How long connecting to a peer may take before the RPC counts it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The factory openraft makes peer clients with: this node's id, the peer token, and one
/// channel per peer.
#[derive(Clone)]
pub struct GrpcNetwork {
    this: NodeId,
    pub(crate) token: AsciiMetadataValue,
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
    /// The streams forwarded requests take to a leader (`forward.rs`).
    pub(crate) lanes: crate::lanes::Lanes,
    /// An injected one-way delay per peer ([`GrpcNetwork::with_link_delays`]).
    delays: Arc<BTreeMap<NodeId, Duration>>,
    /// Where channels run their connections: the caller's runtime, not the engine's thread,
    /// whose one thread is for the commit path.
    pub(crate) runtime: tokio::runtime::Handle,
}

impl GrpcNetwork {
    /// The network of node `this`, presenting `token` ([`crate::peer_token`]) to its peers.
    /// Call it on the runtime the connections should run on.
    pub fn new(this: NodeId, token: &str) -> Result<Self, String> {
        Ok(Self {
            this,
            token: token
                .parse()
                .map_err(|_| "a peer token is ASCII text".to_owned())?,
            channels: Arc::new(Mutex::new(HashMap::new())),
            lanes: Default::default(),
            delays: Default::default(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// The same network with every message to and from a peer held for that peer's delay,
    /// each way, as if the link between them were that long: regions on one machine
    /// (`--link-delay`). A round trip to a peer then takes twice its delay more.
    pub fn with_link_delays(mut self, delays: BTreeMap<NodeId, Duration>) -> Self {
        self.delays = Arc::new(delays);
        self
    }

    /// The injected one-way delay of the link to `target` (zero unless set).
    pub(crate) fn link_delay(&self, target: NodeId) -> Duration {
        self.delays.get(&target).copied().unwrap_or_default()
    }

    /// A client of `target` at `address`, on the channel kept for it.
    fn peer(&self, target: NodeId, address: &str) -> Peer {
        Peer {
            this: self.this,
            target,
            token: self.token.clone(),
            client: self.channel(target, address).map(RaftClient::new),
            delay: self.link_delay(target),
        }
    }

    /// The channel to `target` at `address`: the one kept, unless its address changed.
    pub(crate) fn channel(&self, target: NodeId, address: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, channel)) = channels.get(&target)
            && known == address
        {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("node {target}'s address {address:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = {
            let _on = self.runtime.enter();
            endpoint.connect_lazy()
        };
        channels.insert(target, (address.to_owned(), channel.clone()));
        Ok(channel)
    }
}

impl GrpcNetwork {
    /// Where peer `target` at `address` stands, asked before a prompt election.
    pub(crate) async fn standing(
        &self,
        target: NodeId,
        address: &str,
    ) -> Result<crate::prompt::Standing, String> {
        let peer = self.peer(target, address);
        peer.unary(
            &(),
            crate::prompt::STANDING_DEADLINE,
            |mut client, request| async move { client.standing(request).await },
        )
        .await
        .map_err(|failed| format!("{failed:?}"))
    }
}

impl tandem_storage::network::LeaderReadIndex for GrpcNetwork {
    fn read_index<'a>(
        &'a self,
        leader: NodeId,
        address: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send + 'a>> {
        Box::pin(async move {
            let peer = self.peer(leader, address);
            peer.unary(&(), READ_INDEX_DEADLINE, |mut client, request| async move {
                client.read_index(request).await
            })
            .await
            .map_err(|failed| format!("{failed:?}"))
        })
    }
}

/// How long a starting node waits for each peer to say whether it is already a member.
const MEMBERS_DEADLINE: Duration = Duration::from_secs(2);

impl GrpcNetwork {
    /// The voters of the membership `peer` at `address` holds: `Ok(None)` before the cluster
    /// is formed, `Err` when the peer cannot say (down, still opening its log, or not ours).
    pub async fn members_at(
        &self,
        peer: NodeId,
        address: &str,
    ) -> Result<Option<Vec<NodeId>>, String> {
        self.peer(peer, address)
            .unary(&(), MEMBERS_DEADLINE, |mut client, request| async move {
                client.members(request).await
            })
            .await
            .map_err(|failed| format!("{failed:?}"))
    }
}

impl RaftNetworkFactory<TandemRaft> for GrpcNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let client = self.channel(target, &node.addr).map(|channel| {
            RaftClient::new(channel)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX)
        });
        Peer {
            this: self.this,
            target,
            token: self.token.clone(),
            client,
            delay: self.link_delay(target),
        }
    }
}

/// `message` as a request that carries the peer token `token`, with `deadline`.
pub(crate) fn peer_request<T>(
    token: &AsciiMetadataValue,
    message: T,
    deadline: Duration,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
        .metadata_mut()
        .insert(PEER_TOKEN_HEADER, token.clone());
    request
}

/// One peer, as openraft's replication to it (or a vote) calls it.
pub struct Peer {
    this: NodeId,
    target: NodeId,
    token: AsciiMetadataValue,
    /// `Err` when the peer's address does not parse: every call says so.
    client: Result<RaftClient<Channel>, String>,
    /// The link's injected one-way delay.
    delay: Duration,
}

/// Holds a message for a link's injected delay (none unless one was set).
pub(crate) async fn cross(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// An RPC that went wrong, before openraft's error types are chosen for it.
#[derive(Debug)]
enum Failed {
    /// No answer within the deadline.
    Late(Duration),
    /// The peer could not be reached, or refused us (not the same cluster).
    Unreachable(String),
    /// The exchange failed on the way (a message that would not encode or decode).
    Network(String),
}

#[derive(Debug)]
struct Why(String);

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Why {}

impl Failed {
    fn of(status: tonic::Status) -> Self {
        match status.code() {
            tonic::Code::DeadlineExceeded => Failed::Network(status.message().to_owned()),
            tonic::Code::InvalidArgument | tonic::Code::Internal => {
                Failed::Network(format!("{}: {}", status.code(), status.message()))
            }
            _ => Failed::Unreachable(format!("{}: {}", status.code(), status.message())),
        }
    }

    fn rpc<E: std::error::Error>(
        self,
        action: RPCTypes,
        this: NodeId,
        target: NodeId,
    ) -> RPCError<NodeId, BasicNode, E> {
        match self {
            Failed::Late(timeout) => RPCError::Timeout(Timeout {
                action,
                id: this,
                target,
                timeout,
            }),
            Failed::Unreachable(why) => RPCError::Unreachable(Unreachable::new(&Why(why))),
            Failed::Network(why) => RPCError::Network(NetworkError::new(&Why(why))),
        }
    }

    fn streaming(self, this: NodeId, target: NodeId) -> StreamingError<TandemRaft, Fatal<NodeId>> {
        match self {
            Failed::Late(timeout) => StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: this,
                target,
                timeout,
            }),
            Failed::Unreachable(why) => StreamingError::Unreachable(Unreachable::new(&Why(why))),
            Failed::Network(why) => StreamingError::Network(NetworkError::new(&Why(why))),
        }
    }
}

impl Peer {
    /// `message` as a request with the peer token and the deadline.
    fn request<T>(&self, message: T, deadline: Duration) -> tonic::Request<T> {
        peer_request(&self.token, message, deadline)
    }

    fn client(&self) -> Result<RaftClient<Channel>, Failed> {
        self.client.clone().map_err(Failed::Unreachable)
    }

    /// One unary exchange: `rpc` encoded, sent by `send` within `deadline`, the answer
    /// decoded.
    async fn unary<Q, A, F>(
        &self,
        rpc: &Q,
        deadline: Duration,
        send: impl FnOnce(RaftClient<Channel>, tonic::Request<Message>) -> F,
    ) -> Result<A, Failed>
    where
        Q: serde::Serialize,
        A: serde::de::DeserializeOwned,
        F: std::future::Future<Output = Result<tonic::Response<Message>, tonic::Status>>,
    {
        let message = wire::encode(rpc).map_err(|e| Failed::Network(e.to_string()))?;
        let request = self.request(message, deadline);
        cross(self.delay).await;
        let answer = tokio::time::timeout(deadline, send(self.client()?, request))
            .await
            .map_err(|_| Failed::Late(deadline))?
            .map_err(Failed::of)?;
        cross(self.delay).await;
        wire::decode(answer.get_ref()).map_err(|e| Failed::Network(e.to_string()))
    }
}

impl RaftNetwork<TandemRaft> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TandemRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let entries = !rpc.entries.is_empty();
        let started = std::time::Instant::now();
        let answer = self
            .unary(&rpc, option.hard_ttl(), |mut client, request| async move {
                client.append_entries(request).await
            })
            .await
            .map_err(|failed| failed.rpc(RPCTypes::AppendEntries, self.this, self.target))?;
        // The leader's view of one replication round to this follower: encoding, the wire
        // both ways, and the follower's append (`tandem_raft_append_seconds` there).
        if entries {
            metrics::histogram!("tandem_raft_replicate_seconds", "peer" => self.target.to_string())
                .record(started.elapsed().as_secs_f64());
        }
        Ok(answer)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.unary(&rpc, option.hard_ttl(), |mut client, request| async move {
            client.vote(request).await
        })
        .await
        .map_err(|failed| failed.rpc(RPCTypes::Vote, self.this, self.target))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TandemRaft>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TandemRaft, Fatal<NodeId>>> {
        let (this, target) = (self.this, self.target);
        let head = postcard::to_allocvec(&(vote, &snapshot.meta))
            .map_err(|e| Failed::Network(e.to_string()).streaming(this, target))?;
        // Read on a blocking thread a few chunks ahead of the send, never whole (see
        // `tandem_storage::snapshot`). A read that fails ends the stream early, which the
        // receiver refuses as not whole; the failure is told here too.
        let read_failed = Arc::new(Mutex::new(None::<std::io::Error>));
        let failure = read_failed.clone();
        let data = tokio_stream::wrappers::ReceiverStream::new(
            snapshot.snapshot.into_chunks(SNAPSHOT_CHUNK_BYTES),
        )
        .map_while(move |chunk| match chunk {
            Ok(bytes) => Some(SnapshotChunk {
                part: Some(Part::Data(bytes)),
            }),
            Err(error) => {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                None
            }
        });
        let chunks = tokio_stream::iter(std::iter::once(SnapshotChunk {
            part: Some(Part::Head(head)),
        }))
        .chain(data);
        let deadline = option.hard_ttl();
        let request = self.request(chunks, deadline);
        let mut client = self.client().map_err(|f| f.streaming(this, target))?;
        let delay = self.delay;
        let sent = async {
            cross(delay).await;
            let answer = tokio::time::timeout(deadline, client.install_snapshot(request))
                .await
                .map_err(|_| Failed::Late(deadline))?
                .map_err(Failed::of);
            cross(delay).await;
            answer
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = sent => {
                if let Some(error) = read_failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let why = format!("reading the snapshot to send: {error}");
                    return Err(Failed::Network(why).streaming(this, target));
                }
                let answer = answer.map_err(|f| f.streaming(this, target))?;
                wire::decode(answer.get_ref())
                    .map_err(|e| Failed::Network(e.to_string()).streaming(this, target))
            }
        }
    }
}
