//! The tower layers both protocols share: authentication (bearer API keys, per-key rate
//! limits) and request metrics. Written once, applied to the gRPC and the HTTP router alike.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

use crate::app::App;
use crate::ops::OpError;

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Paths anyone may call: liveness, readiness, metrics, gRPC health and reflection.
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
        || path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.")
}

fn refuse(grpc: bool, error: OpError) -> Response {
    if grpc {
        tonic::Status::from(error).into_http::<Body>()
    } else {
        error.into_response()
    }
}

/// The request timeout (`--request-timeout-ms`), answered in each protocol's own way: a
/// problem+json 503 over HTTP, `UNAVAILABLE` with `tandem-code: timeout` over gRPC. The
/// request may still complete; a retry with the same idempotency key gets its answer.
pub async fn time_limit(
    State(limit): State<std::time::Duration>,
    request: Request,
    next: Next,
) -> Response {
    let grpc = is_grpc(&request);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => refuse(
            grpc,
            OpError::unavailable(
                "timeout",
                format!(
                    "no answer within the request timeout ({} ms); it may still complete: retry \
                     with the same idempotency key",
                    limit.as_millis()
                ),
            ),
        ),
    }
}

/// Checks the bearer key before anything else runs and puts the caller's principal in the
/// request's extensions; missing or unknown keys are refused with 401 / UNAUTHENTICATED.
pub async fn authenticate(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    if public(request.uri().path()) {
        return next.run(request).await;
    }
    let grpc = is_grpc(&request);
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return refuse(
            grpc,
            OpError::unauthenticated("send an API key as `authorization: Bearer <token>`"),
        );
    };
    let principal = match app.keys.check(token) {
        Ok(Some(principal)) => principal,
        Ok(None) => return refuse(grpc, OpError::unauthenticated("unknown or revoked API key")),
        // Not "unknown": the key may well be good once the committed keys are read.
        Err(crate::keys::NotReady) => return refuse(grpc, crate::ops::OpError::recovering()),
    };
    if !app.keys.admit(&principal.key_id) {
        metrics::counter!("tandem_rate_limited_total").increment(1);
        return refuse(grpc, OpError::rate_limited());
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Counts requests and their latency by protocol, route and status.
pub async fn measure(request: Request, next: Next) -> Response {
    let grpc = is_grpc(&request);
    let protocol = if grpc { "grpc" } else { "http" };
    let route = match request.extensions().get::<MatchedPath>() {
        Some(_) if grpc && request.uri().path().len() <= 96 => request.uri().path().to_owned(),
        Some(matched) => matched.as_str().to_owned(),
        None => "unmatched".to_owned(),
    };
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = if grpc {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0")
            .to_owned()
    } else {
        response.status().as_u16().to_string()
    };
    metrics::counter!("tandem_requests_total", "protocol" => protocol, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("tandem_request_seconds", "protocol" => protocol, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
