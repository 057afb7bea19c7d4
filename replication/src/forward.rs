//! Forwarding: a request that reached a member which does not lead, carried to the leader
//! (`tandem.raft.v1.Forward`). This crate carries bytes only: what they mean, and the check
//! of the caller's key at the leader, are the server's ([`ForwardHandler`]). The caller must
//! be a cluster member, as for every peer RPC.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tandem_proto::raft::Message;
use tandem_proto::raft::forward_client::ForwardClient;
use tandem_proto::raft::forward_server::{Forward, ForwardServer};
use tandem_storage::types::NodeId;
use tonic::{Request, Response, Status};

use crate::service::authorized;
use crate::{GrpcNetwork, MESSAGE_BYTES_MAX};

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

#[tonic::async_trait]
impl Forward for ForwardService {
    async fn call(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        authorized(&request, &self.token)?;
        let handler = self
            .handler
            .get()
            .ok_or_else(|| Status::unavailable("this node is still recovering"))?;
        let body = handler.call(request.into_inner().body).await;
        Ok(Response::new(Message { body }))
    }
}

/// Why a forwarded request got no answer from the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardFailed {
    /// No answer within the deadline: the leader may have decided it (retry with the same
    /// idempotency key).
    Late,
    /// The leader could not be reached, or refused the call before looking at it.
    Unreachable(String),
}

impl GrpcNetwork {
    /// Sends a forwarded request `body` to `leader` at `address` over the channel kept for
    /// it, within `deadline`, and answers the leader's encoded answer.
    pub async fn forward(
        &self,
        leader: NodeId,
        address: &str,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<Vec<u8>, ForwardFailed> {
        let channel = self
            .channel(leader, address)
            .map_err(ForwardFailed::Unreachable)?;
        let mut client = ForwardClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let request = self.request(Message { body }, deadline);
        match tokio::time::timeout(deadline, client.call(request)).await {
            Err(_) => Err(ForwardFailed::Late),
            Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => {
                Err(ForwardFailed::Late)
            }
            Ok(Err(status)) => Err(ForwardFailed::Unreachable(format!(
                "{}: {}",
                status.code(),
                status.message()
            ))),
            Ok(Ok(answer)) => Ok(answer.into_inner().body),
        }
    }
}
