//! One error type for both protocols: a stable machine-readable `code`, an HTTP status, a
//! gRPC status code, and a precise human message. HTTP renders it as
//! `application/problem+json`; gRPC as a `Status`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tandem_actors::ExecuteError;
use tandem_core::RejectReason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub grpc: tonic::Code,
    /// Stable, snake_case: clients branch on this, never on the message.
    pub code: String,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, grpc: tonic::Code, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            grpc,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// A field is missing or malformed.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            "invalid_argument",
            format!("{field}: {problem}"),
        )
    }

    pub fn malformed(problem: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            "invalid_argument",
            problem,
        )
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
            "too_large",
            detail,
        )
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            tonic::Code::Unauthenticated,
            "unauthenticated",
            message,
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            tonic::Code::PermissionDenied,
            "permission_denied",
            message,
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            tonic::Code::NotFound,
            "not_found",
            what,
        )
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            tonic::Code::AlreadyExists,
            code,
            message,
        )
    }

    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::ResourceExhausted,
            "rate_limited",
            "this key is over its request rate; retry shortly",
        )
    }

    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::Unavailable,
            code,
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            tonic::Code::Internal,
            "internal",
            message,
        )
    }

    /// A command the account refused, by the core's reason.
    pub fn rejected(reason: RejectReason) -> Self {
        use RejectReason::*;
        let code = crate::convert::snake(&reason);
        let message = format!("the account refused this: {code}");
        match reason {
            NotPermitted | NotAMember => Self::new(
                StatusCode::FORBIDDEN,
                tonic::Code::PermissionDenied,
                &code,
                message,
            ),
            UnknownMember | UnknownCard | UnknownWithdrawal | AccountNotOpen => {
                Self::new(StatusCode::NOT_FOUND, tonic::Code::NotFound, &code, message)
            }
            MemberExists | CardExists | AccountAlreadyOpen | DuplicateKeyMismatch => Self::new(
                StatusCode::CONFLICT,
                tonic::Code::AlreadyExists,
                &code,
                message,
            ),
            _ => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                tonic::Code::FailedPrecondition,
                &code,
                message,
            ),
        }
    }
}

impl From<ExecuteError> for ApiError {
    fn from(error: ExecuteError) -> Self {
        match error {
            ExecuteError::Busy => ApiError::unavailable("busy", "too much work in flight; retry"),
            ExecuteError::LogFailed(why) => ApiError::unavailable(
                "log_unavailable",
                format!(
                    "the decision could not be made durable ({why}); nothing was recorded, retry later"
                ),
            ),
            ExecuteError::Interrupted => ApiError::unavailable(
                "interrupted",
                "the account restarted before answering; retry with the same idempotency key",
            ),
            ExecuteError::CouldNotDecide(why) => {
                ApiError::internal(format!("could not decide: {why}"))
            }
            ExecuteError::LoadFailed(why) => {
                ApiError::internal(format!("could not load the account: {why}"))
            }
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let mut status = tonic::Status::new(error.grpc, error.message);
        if let Ok(value) = error.code.parse() {
            status.metadata_mut().insert("tandem-code", value);
        }
        status
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("error"),
            status: self.status.as_u16(),
            code: &self.code,
            detail: &self.message,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
            bytes,
        )
            .into_response()
    }
}
