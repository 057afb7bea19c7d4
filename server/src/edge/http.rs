//! HTTP/JSON: the public contract's paths (docs/api.md) over the same operations and
//! messages as gRPC. Bodies are parsed here so a malformed one gets a problem+json answer.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use tandem_proto::v1 as pb;

use crate::app::App;
use crate::edge::v1;
use crate::keys::Principal;
use crate::ops::OpError;

/// A JSON body parsed into a `tandem.v1` message, with a precise error when it does not fit.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = OpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, OpError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                OpError::too_large(e.body_text())
            } else {
                OpError::malformed(format!("could not read the body: {}", e.body_text()))
            }
        })?;
        if bytes.is_empty() {
            return serde_json::from_slice(b"{}")
                .map(Body)
                .map_err(|e| OpError::malformed(format!("body: {e}")));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| OpError::malformed(format!("body is not valid JSON for this call: {e}")))
    }
}

type Shared = State<Arc<App>>;

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}

fn ok<T: serde::Serialize>(value: Result<T, OpError>) -> Response {
    match value {
        Ok(value) => json(StatusCode::OK, &value),
        Err(error) => error.into_response(),
    }
}

fn created<T: serde::Serialize>(value: Result<T, OpError>) -> Response {
    match value {
        Ok(value) => json(StatusCode::CREATED, &value),
        Err(error) => error.into_response(),
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/accounts", post(open_account))
        .route("/v1/accounts/{account_id}/members", post(add_member))
        .route(
            "/v1/accounts/{account_id}/members/{member_id}",
            put(update_member).delete(remove_member),
        )
        .route(
            "/v1/accounts/{account_id}/members/{member_id}/controls",
            put(member_controls),
        )
        .route("/v1/accounts/{account_id}/cards", post(issue_card))
        .route("/v1/cards/{card_id}/status", put(card_status))
        .route("/v1/cards/{card_id}/controls", put(card_controls))
        .route("/v1/cards/{card_id}/replace", post(replace_card))
        .route("/v1/accounts/{account_id}/split-rule", put(split_rule))
        .route(
            "/v1/accounts/{account_id}/funding-policy",
            put(funding_policy),
        )
        .route("/v1/accounts/{account_id}/deposits", post(deposit))
        .route("/v1/accounts/{account_id}/withdrawals", post(withdraw))
        .route("/v1/fx/rates", put(set_rates))
        .route("/v1/authorizations", post(authorize))
        .route(
            "/v1/authorizations/{authorization_id}/increments",
            post(increment),
        )
        .route(
            "/v1/authorizations/{authorization_id}/reversals",
            post(reverse),
        )
        .route(
            "/v1/authorizations/{authorization_id}/clearings",
            post(clear),
        )
        .route("/v1/advices", post(advise))
        .route("/v1/force-posts", post(force_post))
        .route("/v1/refunds", post(refund))
        .route("/v1/balance-inquiries", post(balance_inquiry))
        .route("/v1/accounts/{account_id}/balance", get(balance))
        .route(
            "/v1/accounts/{account_id}/balance/stream",
            get(balance_stream),
        )
        .route("/v1/accounts/{account_id}/holds", get(holds))
        .route("/v1/accounts/{account_id}/positions", get(positions))
        .route("/v1/accounts/{account_id}/entries", get(entries))
        .route(
            "/v1/accounts/{account_id}/lifecycle-events",
            get(lifecycle_events),
        )
        .route("/v1/api-keys", post(issue_key))
        .route("/v1/api-keys/{key_id}", delete(revoke_key))
        .route("/v1/admin/backup", post(backup))
        .route("/v1/cluster", get(cluster_status))
        .route("/v1/cluster/init", post(cluster_init))
        .route("/v1/cluster/digest", get(cluster_digest))
        .route("/v1/admin/faults", post(faults))
        .with_state(app)
}

/// Handlers that hand their JSON body to a `tandem.v1` operation and answer `$answer` (`ok`
/// or `created`); with `$field <- path`, the path's one parameter is first set in that field
/// of the request (the path names the resource, the body the rest).
macro_rules! body_handler {
    ($name:ident, $request:ty, $operation:path, $answer:ident $(, $field:ident <- path)?) => {
        async fn $name(
            State(app): Shared,
            principal: Principal,
            $(Path($field): Path<String>,)?
            Body(request): Body<$request>,
        ) -> Response {
            $(let mut request = request; request.$field = $field;)?
            $answer($operation(&app, &principal, request).await)
        }
    };
}

/// Handlers that read one account, named by the path, through a `tandem.v1` operation.
macro_rules! account_read {
    ($name:ident, $operation:path) => {
        async fn $name(
            State(app): Shared,
            principal: Principal,
            Path(account_id): Path<String>,
            read: ReadQuery,
        ) -> Response {
            let consistency = match read {
                Ok(Query(read)) => read.consistency,
                Err(e) => return OpError::malformed(format!("query: {e}")).into_response(),
            };
            let request = pb::AccountRef {
                account_id,
                consistency,
            };
            ok($operation(&app, &principal, request).await)
        }
    };
}

/// A read's query: `?consistency=linearizable` (or `applied`, the default).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Read {
    consistency: String,
}

type ReadQuery = Result<Query<Read>, axum::extract::rejection::QueryRejection>;

body_handler!(
    open_account,
    pb::OpenAccountRequest,
    v1::open_account,
    created
);
body_handler!(add_member, pb::MemberRequest, v1::add_member, created, account_id <- path);
body_handler!(issue_card, pb::IssueCardRequest, v1::issue_card, created, account_id <- path);
body_handler!(card_status, pb::CardStatusRequest, v1::set_card_status, ok, card_id <- path);
body_handler!(replace_card, pb::ReplaceCardRequest, v1::replace_card, created, card_id <- path);
body_handler!(split_rule, pb::SplitRuleRequest, v1::set_split_rule, ok, account_id <- path);
body_handler!(funding_policy, pb::FundingPolicyRequest, v1::set_funding_policy, ok, account_id <- path);
body_handler!(deposit, pb::MoneyRequest, v1::deposit, created, account_id <- path);
body_handler!(withdraw, pb::MoneyRequest, v1::withdraw, created, account_id <- path);
body_handler!(set_rates, pb::SetRatesRequest, v1::set_rates, ok);
body_handler!(authorize, pb::AuthorizeRequest, v1::authorize, ok);
body_handler!(increment, pb::IncrementRequest, v1::increment, ok, authorization_id <- path);
body_handler!(reverse, pb::ReverseRequest, v1::reverse, ok, authorization_id <- path);
body_handler!(clear, pb::PostingRequest, v1::clear, ok, authorization_id <- path);
body_handler!(advise, pb::PostingRequest, v1::advise, ok);
body_handler!(force_post, pb::PostingRequest, v1::force_post, ok);
body_handler!(refund, pb::PostingRequest, v1::refund, ok);
body_handler!(
    balance_inquiry,
    pb::BalanceInquiryRequest,
    v1::balance_inquiry,
    ok
);
account_read!(balance, v1::balance);
account_read!(holds, v1::holds);
account_read!(positions, v1::positions);

async fn update_member(
    State(app): Shared,
    principal: Principal,
    Path((account_id, member_id)): Path<(String, String)>,
    Body(mut request): Body<pb::MemberRequest>,
) -> Response {
    request.account_id = account_id;
    request.member_id = member_id;
    ok(v1::update_member(&app, &principal, request).await)
}

async fn remove_member(
    State(app): Shared,
    principal: Principal,
    Path((account_id, member_id)): Path<(String, String)>,
) -> Response {
    let request = pb::RemoveMemberRequest {
        account_id,
        member_id,
    };
    ok(v1::remove_member(&app, &principal, request).await)
}

async fn member_controls(
    State(app): Shared,
    principal: Principal,
    Path((account_id, member_id)): Path<(String, String)>,
    Body(controls): Body<pb::Controls>,
) -> Response {
    let request = pb::MemberControlsRequest {
        account_id,
        member_id,
        controls: Some(controls),
    };
    ok(v1::set_member_controls(&app, &principal, request).await)
}

async fn card_controls(
    State(app): Shared,
    principal: Principal,
    Path(card_id): Path<String>,
    Body(controls): Body<pb::Controls>,
) -> Response {
    let request = pb::CardControlsRequest {
        card_id,
        controls: Some(controls),
    };
    ok(v1::set_card_controls(&app, &principal, request).await)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Page {
    after: String,
    limit: u32,
    consistency: String,
}

type PageQuery = Result<Query<Page>, axum::extract::rejection::QueryRejection>;

/// The request for one page of a feed (`after`, `limit` in the query).
fn page_request(account_id: String, page: PageQuery) -> Result<pb::EntriesRequest, OpError> {
    let Query(page) = page.map_err(|e| OpError::malformed(format!("query: {e}")))?;
    Ok(pb::EntriesRequest {
        account_id,
        after: page.after,
        limit: page.limit,
        consistency: page.consistency,
    })
}

/// Handlers that read one page of an account's feed (the account in the path, `after` and
/// `limit` in the query) through a `tandem.v1` operation.
macro_rules! page_read {
    ($name:ident, $operation:path) => {
        async fn $name(
            State(app): Shared,
            principal: Principal,
            Path(account_id): Path<String>,
            page: PageQuery,
        ) -> Response {
            match page_request(account_id, page) {
                Ok(request) => ok($operation(&app, &principal, request).await),
                Err(malformed) => malformed.into_response(),
            }
        }
    };
}

page_read!(entries, v1::entries);
page_read!(lifecycle_events, v1::lifecycle_events);

/// Server-Sent Events: the current state, then one event per committed change. Each event's
/// id is the account's sequence number; a client reconnecting with `Last-Event-ID` gets the
/// current state only if it is newer than what it saw.
async fn balance_stream(
    State(app): Shared,
    principal: Principal,
    Path(account_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let seen: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    match super::v1::watch_balance(&app, &principal, &account_id, seen).await {
        Ok(stream) => Sse::new(sse_events(stream))
            .keep_alive(KeepAlive::default())
            .into_response(),
        Err(error) => error.into_response(),
    }
}

fn sse_events(
    stream: impl Stream<Item = pb::BalanceSnapshot> + Send + 'static,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    use futures_util::StreamExt;
    stream.map(|snapshot| {
        let data = serde_json::to_string(&snapshot).unwrap_or_default();
        Ok(SseEvent::default()
            .id(snapshot.seq.to_string())
            .event("balance")
            .data(data))
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyRequest {
    role: String,
    account_id: String,
    member_id: String,
}

async fn issue_key(
    State(app): Shared,
    principal: Principal,
    Body(request): Body<KeyRequest>,
) -> Response {
    created(issued_key(&app, &principal, &request).await)
}

/// Reads a key request (role, and for app keys the account and member it acts for) and
/// issues the key.
async fn issued_key(
    app: &App,
    principal: &Principal,
    request: &KeyRequest,
) -> Result<crate::ops::admin::IssuedKey, OpError> {
    app.admin_only(principal, "issuing API keys")?;
    let role: crate::keys::KeyRole =
        serde_json::from_value(serde_json::Value::String(request.role.clone()))
            .map_err(|_| OpError::invalid("role", "must be one of admin, network, app"))?;
    let account = (!request.account_id.is_empty())
        .then(|| v1::account_id(&request.account_id))
        .transpose()?;
    let member = (!request.member_id.is_empty())
        .then(|| v1::member_id(&request.member_id))
        .transpose()?;
    app.issue_key(principal, role, account, member).await
}

async fn revoke_key(
    State(app): Shared,
    principal: Principal,
    Path(key_id): Path<String>,
) -> Response {
    match app.revoke_key(&principal, &key_id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn cluster_status(State(app): Shared, principal: Principal) -> Response {
    match app.cluster_status(&principal) {
        Ok(status) => json(StatusCode::OK, &cluster_json(&status)),
        Err(error) => error.into_response(),
    }
}

async fn cluster_digest(State(app): Shared, principal: Principal) -> Response {
    match app.state_digest(&principal).await {
        Ok((applied_index, digest)) => json(
            StatusCode::OK,
            &serde_json::json!({"applied_index": applied_index, "digest": digest}),
        ),
        Err(error) => error.into_response(),
    }
}

/// The cluster's status as `GET /v1/cluster` and `tandem cluster status` print it.
fn cluster_json(status: &tandem_actors::ClusterStatus) -> serde_json::Value {
    let members: Vec<serde_json::Value> = status
        .members
        .iter()
        .map(|member| {
            serde_json::json!({
                "node_id": member.node_id,
                "address": member.address,
                "role": member.role.as_str(),
                "matched_index": member.matched_index,
                "lag_entries": member.lag_entries,
                "lag_ms": member.lag_ms,
            })
        })
        .collect();
    serde_json::json!({
        "node_id": status.node_id,
        "role": status.role.as_str(),
        "leader_id": status.leader_id,
        "term": status.term,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "members": members,
    })
}

async fn cluster_init(State(app): Shared, principal: Principal) -> Response {
    match app.form_cluster(&principal).await {
        Ok(formed) => json(StatusCode::OK, &serde_json::json!({ "formed": formed })),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BackupRequest {
    to: String,
}

async fn backup(
    State(app): Shared,
    principal: Principal,
    Body(request): Body<BackupRequest>,
) -> Response {
    created(app.backup(&principal, &request.to).await.map(|taken| {
        serde_json::json!({
            "to": taken.to,
            "covers_log_index": taken.covers_log_index,
            "bytes": taken.bytes,
        })
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FaultRequest {
    disk_full: bool,
    commit_delay_ms: u64,
    apply_delay_ms: u64,
}

async fn faults(
    State(app): Shared,
    principal: Principal,
    Body(request): Body<FaultRequest>,
) -> Response {
    match app.set_faults(
        &principal,
        request.disk_full,
        request.commit_delay_ms,
        request.apply_delay_ms,
    ) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = OpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, OpError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| OpError::unauthenticated("a bearer API key is required"))
    }
}

/// The HTTP status of an operation's error, answered as problem+json (docs/api.md's table).
pub(crate) fn status_of(error: &OpError) -> StatusCode {
    match error {
        OpError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        OpError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        OpError::PermissionDenied { .. } => StatusCode::FORBIDDEN,
        OpError::NotFound { .. } => StatusCode::NOT_FOUND,
        OpError::Conflict { .. } => StatusCode::CONFLICT,
        OpError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        OpError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        OpError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        OpError::Unavailable { .. } | OpError::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
        OpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What `Retry-After` says on a retryable refusal (503, 429), seconds: an election ends
/// within one (the election timeout's upper bound), and a retry under the same idempotency
/// key is always safe.
const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        let detail = self.message();
        let body = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("error"),
            status: status.as_u16(),
            code: self.code(),
            detail: &detail,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
            bytes,
        )
            .into_response();
        if self.retryable() {
            // An election, a busy node, a rate: each passes within a second or two.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}
