//! The server's bounds and default sizes, each with why, in one place. `config.rs` resolves
//! each setting from its flag, environment variable or file, else from here; `tandem serve
//! --help` and `docs/operations.md` show the same defaults. The rules' bounds (amounts, ids,
//! members, open holds) are in `tandem_core::limits`; the account system's (in-flight
//! decisions, idle actors, the sweeper) are `tandem_actors::SystemConfig::default()`.

use std::ops::RangeInclusive;
use std::time::Duration;

/// Largest HTTP body or gRPC message accepted, bytes: the largest request of the contract
/// (a card's 256 control-list entries, an FX table of 256 rates) is a few kilobytes, so a
/// larger one is refused (413, `RESOURCE_EXHAUSTED`) before it is read into memory.
pub const REQUEST_BODY_MAX_BYTES_DEFAULT: usize = 64 * 1024;

/// How long a request may take before it is answered `timeout` (HTTP 503, gRPC
/// `UNAVAILABLE`): well past a commit's usual milliseconds and past the ISO 8583 deadline, so
/// only a stalled disk or log reaches it, and a caller is never left waiting without end.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// HTTP/2 streams one connection may have open (gRPC calls in flight): a processor's 1,024
/// callers fit on one connection, and one client cannot take every task of the node.
pub const STREAMS_PER_CONNECTION_MAX_DEFAULT: u32 = 1_024;

/// Requests one processor stream may have in flight at once: enough to keep a group commit
/// full from one stream (a commit takes up to a few thousand records), and a bound on the
/// answers one stream can make the node hold.
pub const STREAM_IN_FLIGHT_MAX: usize = 4_096;

/// Entries one page of the feed holds at most: a page is read from the log in one go and
/// held whole while it is rendered.
pub const ENTRIES_PAGE_MAX: u32 = 1_000;

/// Entries a page holds when the caller does not say.
pub const ENTRIES_PAGE_DEFAULT: u32 = 100;

/// The checkpoint store's block cache, bytes: the directories' and accounts' hot keys stay in
/// memory on a node with a few GiB; the store's own default is smaller, for embedding.
pub const CHECKPOINT_CACHE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// How often applied state is checkpointed and the log purged: once a second keeps the log
/// to replay at start short and costs one sync a second.
pub const CHECKPOINT_EVERY_DEFAULT: Duration = Duration::from_secs(1);

/// The shortest checkpoint interval accepted: below it, syncs would crowd out the log's.
pub const CHECKPOINT_EVERY_MIN: Duration = Duration::from_millis(10);

/// Log entries kept behind a checkpoint: a cluster member that lags by fewer (a restart, a
/// short partition) catches up from the log, cheaper than a snapshot of the whole state.
pub const LOG_KEPT_ENTRIES_DEFAULT: u64 = 1_000;

/// How long a stopping node waits for requests in flight to be answered.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(10);

/// An ISO 8583 authorization not durable within this is answered 91 and the network stands
/// in: it must answer inside the network's own response window, which is a few seconds.
pub const ISO8583_DEADLINE_DEFAULT: Duration = Duration::from_millis(1_500);

/// Largest ISO 8583 message accepted by default, bytes: a message of the profile is a few
/// hundred bytes; a larger frame closes the link before its body is read.
pub const ISO8583_FRAME_MAX_DEFAULT: usize = 8 * 1024;

/// The frame limits an operator may set: a message's header and bitmaps need 64 bytes, and
/// the two-byte length prefix cannot say more than 65,535.
pub const ISO8583_FRAME_MAX_RANGE: RangeInclusive<usize> = 64..=65_535;

/// An ISO 8583 link with no bytes at all for this long is closed (a network echoes every
/// minute or so to keep a quiet link open).
pub const ISO8583_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);

/// A frame begun must be complete within this, or its link is closed (a peer cannot hold a
/// reader open with half a message).
pub const ISO8583_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Requests of one ISO 8583 link being decided at once; beyond it the link is read no
/// further until one is answered (TCP backpressure): a network's link pipelines a few
/// hundred at its peak.
pub const ISO8583_IN_FLIGHT_PER_LINK: usize = 512;

/// Answers written to an ISO 8583 link in one write when they queue up, bytes at most.
pub const ISO8583_WRITE_BATCH_BYTES: usize = 64 * 1024;
