//! gRPC (`tandem.v1`): thin adapters from tonic to [`App`]. The caller's [`Principal`] was put
//! in the request's extensions by the authentication layer shared with HTTP.

use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use tandem_proto::v1 as pb;
use tandem_proto::v1::accounts_server::Accounts;
use tandem_proto::v1::authorizations_server::Authorizations;
use tandem_proto::v1::balances_server::Balances;
use tokio::sync::{Semaphore, mpsc};
use tonic::{Request, Response, Status, Streaming};

use crate::app::App;
use crate::edge::v1;
use crate::keys::Principal;
use crate::limits::STREAM_IN_FLIGHT_MAX;
use crate::ops::OpError;

#[derive(Clone)]
pub struct Service {
    pub app: Arc<App>,
}

fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| OpError::unauthenticated("a bearer API key is required").into())
}

macro_rules! unary {
    ($self:ident, $request:ident, $method:ident) => {{
        let principal = principal(&$request)?;
        super::v1::$method(&$self.app, &principal, $request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }};
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Authorizations for Service {
    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        unary!(self, request, authorize)
    }
    async fn increment_authorization(
        &self,
        request: Request<pb::IncrementRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        unary!(self, request, increment)
    }
    async fn reverse(
        &self,
        request: Request<pb::ReverseRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        unary!(self, request, reverse)
    }
    async fn advise(
        &self,
        request: Request<pb::PostingRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        unary!(self, request, advise)
    }
    async fn clear(
        &self,
        request: Request<pb::PostingRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        unary!(self, request, clear)
    }
    async fn force_post(
        &self,
        request: Request<pb::PostingRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        unary!(self, request, force_post)
    }
    async fn refund(
        &self,
        request: Request<pb::PostingRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        unary!(self, request, refund)
    }
    async fn balance_inquiry(
        &self,
        request: Request<pb::BalanceInquiryRequest>,
    ) -> Result<Response<pb::BalanceInquiryResponse>, Status> {
        unary!(self, request, balance_inquiry)
    }

    type StreamStream = BoxStream<pb::StreamResponse>;

    /// Every request is handled as soon as it arrives, concurrently with the others on the
    /// stream, and answered the moment it is durable: answers come back in completion order,
    /// matched by correlation id.
    async fn stream(
        &self,
        request: Request<Streaming<pb::StreamRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let principal = principal(&request)?;
        let mut inbound = request.into_inner();
        let (answers, outbound) =
            mpsc::channel::<Result<pb::StreamResponse, Status>>(STREAM_IN_FLIGHT_MAX);
        let app = self.app.clone();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(STREAM_IN_FLIGHT_MAX));
            while let Some(message) = inbound.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(status) => {
                        let _ = answers.send(Err(status)).await;
                        return;
                    }
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let app = app.clone();
                let principal = principal.clone();
                let answers = answers.clone();
                tokio::spawn(async move {
                    let answer = handle_stream_message(&app, &principal, message).await;
                    let _ = answers.send(Ok(answer)).await;
                    drop(permit);
                });
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(outbound);
        Ok(Response::new(Box::pin(stream)))
    }
}

async fn handle_stream_message(
    app: &App,
    principal: &Principal,
    message: pb::StreamRequest,
) -> pb::StreamResponse {
    use pb::stream_request::Request as R;
    let correlation_id = message.correlation_id;
    let answer = match message.request {
        Some(R::Authorize(r)) => v1::authorize(app, principal, r).await,
        Some(R::Increment(r)) => v1::increment(app, principal, r).await,
        Some(R::Reverse(r)) => v1::reverse(app, principal, r).await,
        Some(R::Advise(r)) => v1::advise(app, principal, r).await,
        Some(R::Clear(r)) => v1::clear(app, principal, r).await,
        Some(R::ForcePost(r)) => v1::force_post(app, principal, r).await,
        Some(R::Refund(r)) => v1::refund(app, principal, r).await,
        Some(R::BalanceInquiry(r)) => {
            v1::balance_inquiry(app, principal, r)
                .await
                .map(|b| pb::AuthorizeResponse {
                    status: "accepted".into(),
                    response_code: b.response_code,
                    balance: b.balances.into_iter().next(),
                    ..Default::default()
                })
        }
        None => Err(OpError::malformed(
            "request: one of the request kinds must be set",
        )),
    };
    match answer {
        Ok(result) => pb::StreamResponse {
            correlation_id,
            result: Some(result),
            error_code: 0,
            error_message: String::new(),
        },
        Err(error) => stream_error(correlation_id, error),
    }
}

/// A processor-stream answer for a request that failed: its gRPC code and `code: message`.
pub(crate) fn stream_error(correlation_id: String, error: OpError) -> pb::StreamResponse {
    pb::StreamResponse {
        correlation_id,
        result: None,
        error_code: code_of(&error) as i32,
        error_message: error.to_string(),
    }
}

#[tonic::async_trait]
impl Accounts for Service {
    async fn open_account(
        &self,
        request: Request<pb::OpenAccountRequest>,
    ) -> Result<Response<pb::Created>, Status> {
        unary!(self, request, open_account)
    }
    async fn add_member(
        &self,
        request: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::Created>, Status> {
        unary!(self, request, add_member)
    }
    async fn update_member(
        &self,
        request: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        unary!(self, request, update_member)
    }
    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        unary!(self, request, remove_member)
    }
    async fn issue_card(
        &self,
        request: Request<pb::IssueCardRequest>,
    ) -> Result<Response<pb::Created>, Status> {
        unary!(self, request, issue_card)
    }
    async fn replace_card(
        &self,
        request: Request<pb::ReplaceCardRequest>,
    ) -> Result<Response<pb::Created>, Status> {
        unary!(self, request, replace_card)
    }
    async fn set_card_status(
        &self,
        request: Request<pb::CardStatusRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        unary!(self, request, set_card_status)
    }
    async fn set_member_controls(
        &self,
        request: Request<pb::MemberControlsRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        unary!(self, request, set_member_controls)
    }
    async fn set_card_controls(
        &self,
        request: Request<pb::CardControlsRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        unary!(self, request, set_card_controls)
    }
    async fn set_split_rule(
        &self,
        request: Request<pb::SplitRuleRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        unary!(self, request, set_split_rule)
    }
    async fn set_funding_policy(
        &self,
        request: Request<pb::FundingPolicyRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        unary!(self, request, set_funding_policy)
    }
    async fn deposit(
        &self,
        request: Request<pb::MoneyRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        unary!(self, request, deposit)
    }
    async fn withdraw(
        &self,
        request: Request<pb::MoneyRequest>,
    ) -> Result<Response<pb::WithdrawalResponse>, Status> {
        unary!(self, request, withdraw)
    }
    async fn set_rates(
        &self,
        request: Request<pb::SetRatesRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        unary!(self, request, set_rates)
    }
}

#[tonic::async_trait]
impl Balances for Service {
    async fn get_balance(
        &self,
        request: Request<pb::AccountRef>,
    ) -> Result<Response<pb::BalanceSnapshot>, Status> {
        unary!(self, request, balance)
    }

    type WatchBalanceStream = BoxStream<pb::BalanceSnapshot>;

    async fn watch_balance(
        &self,
        request: Request<pb::AccountRef>,
    ) -> Result<Response<Self::WatchBalanceStream>, Status> {
        let principal = principal(&request)?;
        let stream =
            super::v1::watch_balance(&self.app, &principal, &request.get_ref().account_id, None)
                .await
                .map_err(Status::from)?;
        Ok(Response::new(Box::pin(stream.map(Ok))))
    }

    async fn list_holds(
        &self,
        request: Request<pb::AccountRef>,
    ) -> Result<Response<pb::Holds>, Status> {
        unary!(self, request, holds)
    }
    async fn get_positions(
        &self,
        request: Request<pb::AccountRef>,
    ) -> Result<Response<pb::Positions>, Status> {
        unary!(self, request, positions)
    }
    async fn list_entries(
        &self,
        request: Request<pb::EntriesRequest>,
    ) -> Result<Response<pb::Entries>, Status> {
        unary!(self, request, entries)
    }
    async fn list_lifecycle_events(
        &self,
        request: Request<pb::EntriesRequest>,
    ) -> Result<Response<pb::LifecycleEvents>, Status> {
        unary!(self, request, lifecycle_events)
    }
}

/// The gRPC code of an operation's error, unary and on the processor stream (docs/api.md's
/// table).
pub(crate) fn code_of(error: &OpError) -> tonic::Code {
    match error {
        OpError::InvalidArgument(_) => tonic::Code::InvalidArgument,
        OpError::Unauthenticated(_) => tonic::Code::Unauthenticated,
        OpError::PermissionDenied { .. } => tonic::Code::PermissionDenied,
        OpError::NotFound { .. } => tonic::Code::NotFound,
        OpError::Conflict { .. } => tonic::Code::AlreadyExists,
        OpError::TooLarge(_) | OpError::RateLimited => tonic::Code::ResourceExhausted,
        OpError::Refused { .. } => tonic::Code::FailedPrecondition,
        OpError::Unavailable { .. } | OpError::NotLeader { .. } => tonic::Code::Unavailable,
        OpError::Internal(_) => tonic::Code::Internal,
    }
}

impl From<OpError> for tonic::Status {
    fn from(error: OpError) -> Self {
        let mut status = tonic::Status::new(code_of(&error), error.message());
        if let Ok(value) = error.code().parse() {
            status.metadata_mut().insert("tandem-code", value);
        }
        status
    }
}
