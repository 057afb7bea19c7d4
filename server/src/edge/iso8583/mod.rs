//! The ISO 8583 gateway: card networks connect over TCP and send length-framed messages
//! (`shared/iso8583-profile.md`). Each connection (a *link*) is read by one task that cuts
//! frames with [`tandem_iso8583::Framer`] and decodes them; every request is decided in its own
//! task, so answers return as soon as each is durable, out of order, matched by the network
//! on MTI and STAN; one writer task per link batches answers into few writes.
//!
//! What a link may not do to the server: a frame over the limit, or bytes that are not a
//! message at all, close that link only; a malformed message with a readable MTI gets a 30;
//! a silent link is closed after the idle timeout, a frame begun must finish within the
//! read timeout, and a link has a bounded number of requests in flight.

mod messages;

pub use messages::{Gateway, PanInAnswers, Settings};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tandem_iso8583::{Framer, Message, frame_into};

use crate::ops::OpError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

/// Accepts links until `stop` turns true, then lets open links finish what they have in
/// flight, for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut links = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (read, write) = stream.into_split();
                    links.spawn(link(read, write, peer, gateway.clone(), stop.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "ISO 8583 accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = links.join_next(), if !links.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    let drained =
        tokio::time::timeout(grace, async { while links.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = links.len(),
            "ISO 8583 links still busy at the end of the grace period"
        );
    }
}

/// Why a link was closed, for the log and the metric.
fn closed(peer: SocketAddr, reason: &'static str) {
    metrics::counter!("tandem_iso8583_links_closed_total", "reason" => reason).increment(1);
    tracing::info!(%peer, reason, "ISO 8583 link closed");
}

async fn link(
    mut read: OwnedReadHalf,
    write: OwnedWriteHalf,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = &gateway.settings;
    metrics::gauge!("tandem_iso8583_links").increment(1.0);
    tracing::info!(%peer, "ISO 8583 link open");
    let (answers, outbox) = mpsc::channel::<Message>(settings.in_flight_per_link);
    let writer = tokio::spawn(write_answers(
        write,
        outbox,
        settings.bitmap,
        settings.read_timeout,
    ));
    let permits = Arc::new(Semaphore::new(settings.in_flight_per_link));
    let signed_on = Arc::new(AtomicBool::new(true));
    let framer = Framer::new(settings.frame_max);
    let mut buffer: Vec<u8> = Vec::with_capacity(16 * 1024);
    'read: loop {
        if answers.is_closed() {
            // The writer gave up on a peer that does not read its answers.
            closed(peer, "write_failed");
            break;
        }
        let wait = if buffer.is_empty() {
            settings.idle_timeout
        } else {
            settings.read_timeout
        };
        buffer.reserve(8 * 1024);
        let read = tokio::select! {
            read = tokio::time::timeout(wait, read.read_buf(&mut buffer)) => read,
            _ = stop.changed() => {
                closed(peer, "shutdown");
                break 'read;
            }
        };
        match read {
            Err(_) if buffer.is_empty() => {
                closed(peer, "idle");
                break;
            }
            Err(_) => {
                closed(peer, "read_timeout");
                break;
            }
            Ok(Err(_)) => {
                closed(peer, "read_error");
                break;
            }
            Ok(Ok(0)) => {
                closed(peer, "peer_closed");
                break;
            }
            Ok(Ok(_)) => {}
        }
        let mut start = 0;
        loop {
            let frame = match framer.next(&buffer, &mut start) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%peer, %error, "ISO 8583 framing broken");
                    closed(peer, "bad_frame");
                    break 'read;
                }
            };
            let message = match Message::decode(frame, settings.bitmap) {
                Ok(message) => message,
                Err(malformed) => match malformed.mti {
                    Some(mti) if mti.is_request() => {
                        tracing::info!(%peer, error = %malformed, "ISO 8583 format error");
                        let answer = gateway.format_error_answer(mti, malformed.partial.as_ref());
                        if answers.send(answer).await.is_err() {
                            break 'read;
                        }
                        continue;
                    }
                    _ => {
                        tracing::warn!(%peer, error = %malformed, "unreadable ISO 8583 message");
                        closed(peer, "unreadable");
                        break 'read;
                    }
                },
            };
            if !message.mti.is_request() {
                // Answers to requests we never send, or unknown functions: nothing to answer.
                tracing::debug!(%peer, mti = %message.mti, "ignored a message that is not a request");
                continue;
            }
            if message.mti.class() == 8 {
                let (answer, now) =
                    gateway.network_management(&message, signed_on.load(Ordering::Acquire));
                signed_on.store(now, Ordering::Release);
                if answers.send(answer).await.is_err() {
                    break 'read;
                }
                continue;
            }
            // Backpressure: a link with too much in flight is not read until one is answered.
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break 'read;
            };
            let gateway = gateway.clone();
            let answers = answers.clone();
            let on = signed_on.load(Ordering::Acquire);
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let answer = gateway.answer(&message, on).await;
                metrics::histogram!("tandem_iso8583_seconds", "mti" => messages::mti_label(message.mti))
                    .record(started.elapsed().as_secs_f64());
                let _ = answers.send(answer).await;
                drop(permit);
            });
        }
        buffer.drain(..start);
    }
    // Requests already read are still answered (each task holds a sender); the writer ends
    // when the last one has been written.
    drop(answers);
    let _ = writer.await;
    metrics::gauge!("tandem_iso8583_links").decrement(1.0);
}

/// Writes answers as they come, many per write when they queue up.
async fn write_answers(
    mut write: OwnedWriteHalf,
    mut outbox: mpsc::Receiver<Message>,
    bitmap: tandem_iso8583::BitmapEncoding,
    timeout: Duration,
) {
    let mut bytes = Vec::with_capacity(16 * 1024);
    while let Some(first) = outbox.recv().await {
        bytes.clear();
        frame_into(&mut bytes, &first.encode(bitmap));
        while bytes.len() < crate::limits::ISO8583_WRITE_BATCH_BYTES {
            match outbox.try_recv() {
                Ok(next) => frame_into(&mut bytes, &next.encode(bitmap)),
                Err(_) => break,
            }
        }
        // A peer that stops reading is cut off rather than left to hold answers forever.
        if !matches!(
            tokio::time::timeout(timeout, write.write_all(&bytes)).await,
            Ok(Ok(()))
        ) {
            // Answers still queued are lost with the link, as on any network: the network's
            // repeats recover them.
            break;
        }
    }
}

/// ISO 8583: DE 39 of the answer (`../shared/iso8583-profile.md`, "Response codes").
/// 91 tells the network to stand in or retry: everything retryable is 91.
pub(crate) fn de39_of(error: &OpError) -> &'static str {
    match error {
        OpError::InvalidArgument(_) | OpError::TooLarge(_) => "30",
        OpError::PermissionDenied { .. } => "57",
        OpError::NotFound { .. } => "14",
        OpError::Conflict { .. } => "94",
        OpError::Refused { .. } => "05",
        OpError::RateLimited | OpError::Unavailable { .. } | OpError::NotLeader { .. } => "91",
        OpError::Unauthenticated(_) | OpError::Internal(_) => "96",
    }
}
