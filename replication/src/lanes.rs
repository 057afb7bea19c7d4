//! The lanes a member forwards requests to its leader on (`forward.rs` runs them): what a
//! lane takes, and the table of lanes the member's network keeps (`network.rs`). A module of
//! its own so that the network holds the table without depending on the forwarding code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_storage::types::NodeId;
use tokio::sync::{mpsc, oneshot};

/// Why a forwarded request got no answer from the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardFailed {
    /// No answer within the deadline: the leader may have decided it (retry with the same
    /// idempotency key).
    Late,
    /// The leader could not be reached, or refused the call before looking at it.
    Unreachable(String),
}

/// A request on its way to a lane, and where its answer goes.
pub(crate) struct Asked {
    pub(crate) body: Vec<u8>,
    pub(crate) answer: oneshot::Sender<Result<Vec<u8>, ForwardFailed>>,
    /// The asker's deadline, for a call of its own if the leader turns out not to know lanes.
    pub(crate) deadline: Duration,
}

/// How this member forwards to one leader.
#[derive(Clone)]
pub(crate) enum Lane {
    /// On a stream, whose task takes requests here.
    Stream(mpsc::UnboundedSender<Asked>),
    /// A call per request: the leader does not know the stream.
    Calls,
}

/// The lanes of one member, by leader: the address each was opened to, and the lane.
pub(crate) type Lanes = Arc<Mutex<HashMap<NodeId, (String, Lane)>>>;
