//! Forwarding: a request that reached a member which does not lead, carried to the leader
//! (`tandem.raft.v1.Forward`). This crate carries bytes only: what they mean, and the check
//! of the caller's key at the leader, are the server's ([`ForwardHandler`]). The caller must
//! be a cluster member, as for every peer RPC.
//!
//! A member keeps one stream to its leader (a *lane*, `Forward/Stream`) and sends every
//! request it forwards on it: whatever is waiting goes as one batch, and the leader answers
//! each as it is ready, batched the same way. A call per request (`Forward/Call`) cost a
//! follower about as much CPU as the request itself, and the leader as much again: an HTTP/2
//! stream opened, its headers coded and its trailers sent, for a few hundred bytes. A leader
//! that does not know the stream (an older version, during a rolling upgrade) gets a call per
//! request, as before.
//!
//! A lane that breaks (the leader died, the connection dropped) answers every request still
//! on it `Unreachable`, as a call that broke does: the server retries it under the same
//! idempotency key once a leader is known. The next request opens a new lane.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tandem_proto::raft::Message;
use tandem_proto::raft::forward_client::ForwardClient;
use tandem_proto::raft::forward_server::{Forward, ForwardServer};
use tandem_storage::types::NodeId;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::lanes::{Asked, ForwardFailed, Lane, Lanes};
use crate::network::cross;
use crate::service::authorized;
use crate::{GrpcNetwork, MESSAGE_BYTES_MAX, PEER_TOKEN_HEADER};

/// Requests (or answers) in one message of a lane, at most.
const LANE_BATCH_MAX: usize = 1_024;

/// How long opening a lane may take (the leader's answering headers) before the requests
/// waiting on it are answered `Unreachable`.
const LANE_OPEN_DEADLINE: Duration = Duration::from_secs(2);

/// One message of a lane, either way: requests with the ids the member gave them, or answers
/// with the ids of the requests they answer.
type Batch = Vec<(u64, Vec<u8>)>;

/// What the leader does with a forwarded request: the server's operations.
pub trait ForwardHandler: Send + Sync + 'static {
    /// Answers `body` (a forwarded request): the encoded outcome or error.
    fn call(&self, body: Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + '_>>;
}

/// Serves `tandem.raft.v1.Forward` for one node.
#[derive(Clone)]
pub struct ForwardService {
    handler: Arc<OnceLock<Arc<dyn ForwardHandler>>>,
    token: Arc<str>,
}

impl ForwardService {
    /// A service for callers that present `token`; `UNAVAILABLE` until
    /// [`ForwardService::attach`].
    pub fn pending(token: String) -> Self {
        Self {
            handler: Default::default(),
            token: token.into(),
        }
    }

    /// Answers with `handler` from now on (once).
    pub fn attach(&self, handler: Arc<dyn ForwardHandler>) {
        let _ = self.handler.set(handler);
    }

    /// The tonic service, with the protocol's message bound.
    pub fn into_server(self) -> ForwardServer<Self> {
        ForwardServer::new(self)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX)
    }
}

impl ForwardService {
    fn handler(&self) -> Result<&Arc<dyn ForwardHandler>, Status> {
        self.handler
            .get()
            .ok_or_else(|| Status::unavailable("this node is still recovering"))
    }
}

/// The leader's side of a lane: answers, batched as they are ready.
type Answers = Pin<Box<dyn futures_util::Stream<Item = Result<Message, Status>> + Send>>;

#[tonic::async_trait]
impl Forward for ForwardService {
    async fn call(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        authorized(&request, &self.token)?;
        let body = self.handler()?.call(request.into_inner().body).await;
        Ok(Response::new(Message { body }))
    }

    type StreamStream = Answers;

    /// Runs every request of every batch at once, each on a task of its own (so one that waits
    /// for the log holds up none behind it, and one whose member went away still finishes),
    /// and sends the answers back in batches as they come.
    async fn stream(
        &self,
        request: Request<Streaming<Message>>,
    ) -> Result<Response<Answers>, Status> {
        authorized(&request, &self.token)?;
        let handler = self.handler()?.clone();
        let mut asked = request.into_inner();
        let (answers, answered) = mpsc::unbounded_channel::<(u64, Vec<u8>)>();
        tokio::spawn(async move {
            while let Ok(Some(message)) = asked.message().await {
                let batch: Batch = match postcard::from_bytes(&message.body) {
                    Ok(batch) => batch,
                    Err(error) => {
                        // Only a member can send here: one that does is broken. The lane
                        // ends; its requests are answered `Unreachable` there.
                        tracing::warn!(%error, "a forwarded batch does not decode; ending its lane");
                        break;
                    }
                };
                for (id, body) in batch {
                    let handler = handler.clone();
                    let answers = answers.clone();
                    tokio::spawn(async move {
                        let answer = handler.call(body).await;
                        let _ = answers.send((id, answer));
                    });
                }
            }
        });
        // Ends once the member's side has ended and every request it sent is answered.
        let out = futures_util::stream::unfold(answered, |mut answered| async move {
            let batch = gather(&mut answered).await?;
            let message = postcard::to_allocvec(&batch)
                .map(|body| Message { body })
                .map_err(|e| Status::internal(format!("encoding forwarded answers: {e}")));
            Some((message, answered))
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// The next item of `queue` and whatever else is waiting in it, up to a batch: `None` once
/// the queue is closed and empty.
async fn gather<T>(queue: &mut mpsc::UnboundedReceiver<T>) -> Option<Vec<T>> {
    let first = queue.recv().await?;
    let mut batch = vec![first];
    while batch.len() < LANE_BATCH_MAX {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}

impl GrpcNetwork {
    /// Sends a forwarded request `body` to `leader` at `address` (on the lane kept to it,
    /// opened if need be) and answers the leader's encoded answer, within `deadline`.
    pub async fn forward(
        &self,
        leader: NodeId,
        address: &str,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<Vec<u8>, ForwardFailed> {
        // An injected link delay holds the request, and then its answer, here: each on its
        // own, so delayed requests still share the lane's batches.
        let delay = self.link_delay(leader);
        cross(delay).await;
        let answer = self.forward_now(leader, address, body, deadline).await;
        cross(delay).await;
        answer
    }

    async fn forward_now(
        &self,
        leader: NodeId,
        address: &str,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<Vec<u8>, ForwardFailed> {
        let (answer, answered) = oneshot::channel();
        let mut asked = Asked {
            body,
            answer,
            deadline,
        };
        // Twice at most: a lane found closed (its task just ended) is opened again, once.
        for _ in 0..2 {
            match self.lane(leader, address)? {
                Lane::Calls => {
                    let channel = self
                        .channel(leader, address)
                        .map_err(ForwardFailed::Unreachable)?;
                    return call(forward_client(channel), &self.token, asked.body, deadline).await;
                }
                Lane::Stream(lane) => match lane.send(asked) {
                    Ok(()) => {
                        return match tokio::time::timeout(deadline, answered).await {
                            Err(_) => Err(ForwardFailed::Late),
                            Ok(Err(_)) => Err(ForwardFailed::Unreachable(
                                "the lane to the leader closed".to_owned(),
                            )),
                            Ok(Ok(answer)) => answer,
                        };
                    }
                    Err(mpsc::error::SendError(back)) => asked = back,
                },
            }
        }
        Err(ForwardFailed::Unreachable(
            "the lane to the leader closed as it opened".to_owned(),
        ))
    }

    /// The lane to `leader` at `address`: the one kept, unless its address changed or its
    /// task has ended; else a new one.
    fn lane(&self, leader: NodeId, address: &str) -> Result<Lane, ForwardFailed> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, lane)) = lanes.get(&leader)
            && known == address
        {
            match lane {
                Lane::Stream(sender) if sender.is_closed() => {}
                lane => return Ok(lane.clone()),
            }
        }
        let channel = self
            .channel(leader, address)
            .map_err(ForwardFailed::Unreachable)?;
        let (sender, asks) = mpsc::unbounded_channel();
        let open = LaneTask {
            client: forward_client(channel),
            token: self.token.clone(),
            lanes: self.lanes.clone(),
            leader,
            address: address.to_owned(),
        };
        self.runtime.spawn(open.run(asks));
        let lane = Lane::Stream(sender);
        lanes.insert(leader, (address.to_owned(), lane.clone()));
        Ok(lane)
    }
}

/// `body` forwarded on `client` in a call of its own, within `deadline`.
async fn call(
    mut client: ForwardClient<Channel>,
    token: &tonic::metadata::AsciiMetadataValue,
    body: Vec<u8>,
    deadline: Duration,
) -> Result<Vec<u8>, ForwardFailed> {
    let request = crate::network::peer_request(token, Message { body }, deadline);
    match tokio::time::timeout(deadline, client.call(request)).await {
        Err(_) => Err(ForwardFailed::Late),
        Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => {
            Err(ForwardFailed::Late)
        }
        Ok(Err(status)) => Err(unreachable(&status)),
        Ok(Ok(answer)) => Ok(answer.into_inner().body),
    }
}

fn forward_client(channel: Channel) -> ForwardClient<Channel> {
    ForwardClient::new(channel)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}

fn unreachable(status: &Status) -> ForwardFailed {
    ForwardFailed::Unreachable(format!("{}: {}", status.code(), status.message()))
}

/// A lane's task: opens the stream, then sends what is asked in batches and hands each answer
/// to its asker, until the stream breaks or ends.
struct LaneTask {
    client: ForwardClient<Channel>,
    token: tonic::metadata::AsciiMetadataValue,
    lanes: Lanes,
    leader: NodeId,
    address: String,
}

impl LaneTask {
    /// Marks the leader as one that does not know lanes: a call per request from now on.
    fn calls_from_now(&self) {
        self.lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.leader, (self.address.clone(), Lane::Calls));
    }

    async fn run(mut self, mut asks: mpsc::UnboundedReceiver<Asked>) {
        let (out, outgoing) = mpsc::unbounded_channel::<Message>();
        let mut request = Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(
            outgoing,
        ));
        request
            .metadata_mut()
            .insert(PEER_TOKEN_HEADER, self.token.clone());
        // Requests asked meanwhile wait in `asks`.
        let opened = tokio::time::timeout(LANE_OPEN_DEADLINE, self.client.stream(request)).await;
        let mut answers = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unimplemented {
                    // A leader from before lanes: a call per request from now on, for those
                    // waiting here too.
                    self.calls_from_now();
                    asks.close();
                    while let Ok(Asked {
                        body,
                        answer,
                        deadline,
                    }) = asks.try_recv()
                    {
                        let (client, token) = (self.client.clone(), self.token.clone());
                        tokio::spawn(async move {
                            let _ = answer.send(call(client, &token, body, deadline).await);
                        });
                    }
                    return;
                }
                return refuse(asks, HashMap::new(), unreachable(&status));
            }
            Err(_) => {
                let why =
                    ForwardFailed::Unreachable("the leader did not open the lane in time".into());
                return refuse(asks, HashMap::new(), why);
            }
        };
        let mut next = 0u64;
        let mut waiting: HashMap<u64, oneshot::Sender<Result<Vec<u8>, ForwardFailed>>> =
            HashMap::new();
        let why = loop {
            tokio::select! {
                batch = gather(&mut asks) => {
                    // `None`: the network was dropped (the node is stopping).
                    let Some(batch) = batch else { break "this node is stopping".to_owned() };
                    let mut bodies = Vec::with_capacity(batch.len());
                    for Asked { body, answer, .. } in batch {
                        // One whose asker has given up (past its deadline) is not sent.
                        if answer.is_closed() {
                            continue;
                        }
                        next += 1;
                        waiting.insert(next, answer);
                        bodies.push((next, body));
                    }
                    if bodies.is_empty() {
                        continue;
                    }
                    let message = match postcard::to_allocvec(&bodies) {
                        Ok(body) => Message { body },
                        Err(error) => break format!("encoding forwarded requests: {error}"),
                    };
                    if out.send(message).is_err() {
                        break "the lane's stream closed".to_owned();
                    }
                }
                message = answers.message() => match message {
                    Ok(Some(message)) => match postcard::from_bytes::<Batch>(&message.body) {
                        Ok(batch) => {
                            for (id, body) in batch {
                                if let Some(answer) = waiting.remove(&id) {
                                    let _ = answer.send(Ok(body));
                                }
                            }
                        }
                        Err(error) => break format!("forwarded answers do not decode: {error}"),
                    },
                    Ok(None) => break "the leader ended the lane".to_owned(),
                    Err(status) => {
                        if status.code() == tonic::Code::Unimplemented {
                            self.calls_from_now();
                        }
                        break format!("{}: {}", status.code(), status.message());
                    }
                },
            }
        };
        refuse(asks, waiting, ForwardFailed::Unreachable(why));
    }
}

/// Ends a lane: everything asked on it and not answered hears `why`; a request that comes
/// after finds the lane closed and opens another.
fn refuse(
    mut asks: mpsc::UnboundedReceiver<Asked>,
    waiting: HashMap<u64, oneshot::Sender<Result<Vec<u8>, ForwardFailed>>>,
    why: ForwardFailed,
) {
    asks.close();
    while let Ok(Asked { answer, .. }) = asks.try_recv() {
        let _ = answer.send(Err(why.clone()));
    }
    for (_, answer) in waiting {
        let _ = answer.send(Err(why.clone()));
    }
}
