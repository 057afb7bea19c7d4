//! A bare gRPC echo of `tandem.v1.Authorizations`: every card request is answered "approved"
//! at once, with no decision, no log and no state, on the same hyper/tonic stack and HTTP/2
//! settings as `tandem serve`. It is the transport's own ceiling: `benches/compare.sh`
//! drives it with `tandem-loadtest run --echo` exactly as it drives Tandem, so a ratio to it
//! says how much of the transport's capacity Tandem's work leaves.
//!
//! `cargo run --release -p tandem-benches --example echo -- 127.0.0.1:50171`

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::pin::Pin;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tandem_proto::v1 as pb;
use tandem_proto::v1::authorizations_server::{Authorizations, AuthorizationsServer};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type Answer = Result<Response<pb::AuthorizeResponse>, Status>;

/// The answer to any card request: approved for the amount asked, under its key.
fn approved(key: &str, amount_minor: i64) -> pb::AuthorizeResponse {
    pb::AuthorizeResponse {
        authorization_id: key.to_owned(),
        status: "approved".into(),
        approved_amount_minor: amount_minor,
        response_code: "00".into(),
        approval_code: "000000".into(),
        ..Default::default()
    }
}

fn posting(request: Request<pb::PostingRequest>) -> Answer {
    let r = request.into_inner();
    Ok(Response::new(approved(&r.authorization_id, r.amount_minor)))
}

struct Echo;

#[tonic::async_trait]
impl Authorizations for Echo {
    async fn authorize(&self, request: Request<pb::AuthorizeRequest>) -> Answer {
        let r = request.into_inner();
        Ok(Response::new(approved(&r.idempotency_key, r.amount_minor)))
    }
    async fn increment_authorization(&self, request: Request<pb::IncrementRequest>) -> Answer {
        let r = request.into_inner();
        Ok(Response::new(approved(&r.authorization_id, r.amount_minor)))
    }
    async fn reverse(&self, request: Request<pb::ReverseRequest>) -> Answer {
        let r = request.into_inner();
        Ok(Response::new(approved(&r.authorization_id, 0)))
    }
    async fn advise(&self, request: Request<pb::PostingRequest>) -> Answer {
        posting(request)
    }
    async fn clear(&self, request: Request<pb::PostingRequest>) -> Answer {
        posting(request)
    }
    async fn force_post(&self, request: Request<pb::PostingRequest>) -> Answer {
        posting(request)
    }
    async fn refund(&self, request: Request<pb::PostingRequest>) -> Answer {
        posting(request)
    }
    async fn balance_inquiry(
        &self,
        _request: Request<pb::BalanceInquiryRequest>,
    ) -> Result<Response<pb::BalanceInquiryResponse>, Status> {
        Ok(Response::new(pb::BalanceInquiryResponse {
            response_code: "00".into(),
            balances: Vec::new(),
        }))
    }

    type StreamStream = Pin<Box<dyn Stream<Item = Result<pb::StreamResponse, Status>> + Send>>;

    async fn stream(
        &self,
        request: Request<Streaming<pb::StreamRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let answers = request.into_inner().map(|message| {
            let message = message?;
            let amount = match &message.request {
                Some(pb::stream_request::Request::Authorize(r)) => r.amount_minor,
                Some(pb::stream_request::Request::Clear(r)) => r.amount_minor,
                _ => 0,
            };
            Ok(pb::StreamResponse {
                result: Some(approved(&message.correlation_id, amount)),
                correlation_id: message.correlation_id,
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50171".into());
    let listener = TcpListener::bind(&address).await?;
    eprintln!("echo: listening on {}", listener.local_addr()?);
    let router = tonic::service::Routes::new(AuthorizationsServer::new(Echo)).into_axum_router();
    let mut builder = Builder::new(TokioExecutor::new());
    // As `tandem serve` configures its listeners (its `streams_per_connection_max` default).
    builder.http2().max_concurrent_streams(1_024);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
