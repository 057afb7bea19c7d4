//! [`OpError`]: why an operation did not produce an outcome, the same for every gateway.
//!
//! Each variant is a kind of failure a caller can act on; `code` is its stable snake_case name
//! (clients branch on it, never on the message). The operations know nothing of the wire:
//! each gateway maps the variants once, in its own file: `edge::http::status_of` (rendered as
//! `application/problem+json`), `edge::grpc::code_of` (a `tonic::Status` with the code in
//! `tandem-code` metadata, and the processor stream's `error_code`) and
//! `edge::iso8583::de39_of` (the ISO 8583 gateway's answer). `docs/api.md` holds the same
//! table, and the tests below read it back against those functions.
//!
//! A decline is never an error: the account's answer to card traffic is an outcome with its
//! own DE 39. These are the failures before or around a decision.

use tandem_actors::ExecuteError;
use tandem_core::RejectReason;

/// Serializable: a leader answers a forwarded request's error as it would its own caller
/// (`ops::forward`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OpError {
    /// A field is missing or malformed (`invalid_argument`); the message names it.
    InvalidArgument(String),
    /// A request body or message over the configured size (`too_large`).
    TooLarge(String),
    /// No key, or an unknown one (`unauthenticated`).
    Unauthenticated(String),
    /// The key's scope, or the member's role, does not allow it (`permission_denied`,
    /// `not_permitted`, `not_a_member`).
    PermissionDenied { code: String, message: String },
    /// What the request names does not exist (`not_found`, `unknown_member`, ...).
    NotFound { code: String, message: String },
    /// A creating call whose id or PAN is taken, or a key reused with other content
    /// (`account_exists`, `card_exists`, `pan_exists`, `duplicate_key_mismatch`, ...).
    Conflict { code: String, message: String },
    /// The account's rules refuse a management command (`last_owner`, `account_has_balance`,
    /// ...).
    Refused { code: String, message: String },
    /// The key is over its request rate (`rate_limited`).
    RateLimited,
    /// Nothing was recorded and a retry with the same idempotency key is safe: too much work
    /// in flight (`busy`), the log cannot be written (`log_unavailable`), the account
    /// restarted (`interrupted`), the node is recovering (`recovering`).
    Unavailable { code: String, message: String },
    /// This node does not lead the account's log; a retry (here once it leads, or at
    /// `leader`) is safe (`not_leader`).
    NotLeader { leader: Option<String> },
    /// A fault of ours (`internal`).
    Internal(String),
}

impl OpError {
    /// A field is missing or malformed.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(format!("{field}: {problem}"))
    }

    /// The request as a whole does not parse.
    pub fn malformed(problem: impl Into<String>) -> Self {
        Self::InvalidArgument(problem.into())
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::TooLarge(detail.into())
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::Unauthenticated(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::PermissionDenied {
            code: "permission_denied".into(),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound {
            code: "not_found".into(),
            message: what.into(),
        }
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn rate_limited() -> Self {
        Self::RateLimited
    }

    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The node has not finished recovering its state: retry shortly.
    pub fn recovering() -> Self {
        Self::unavailable("recovering", "the node is still recovering; retry shortly")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// A command the account refused, by the core's reason.
    pub fn rejected(reason: RejectReason) -> Self {
        use RejectReason::*;
        let code = crate::names::snake(&reason);
        let message = format!("the account refused this: {code}");
        match reason {
            NotPermitted | NotAMember => Self::PermissionDenied { code, message },
            UnknownMember | UnknownCard | UnknownWithdrawal | AccountNotOpen => {
                Self::NotFound { code, message }
            }
            MemberExists | CardExists | AccountAlreadyOpen | DuplicateKeyMismatch => {
                Self::Conflict { code, message }
            }
            _ => Self::Refused { code, message },
        }
    }

    /// The stable snake_case code clients branch on.
    pub fn code(&self) -> &str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::TooLarge(_) => "too_large",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::RateLimited => "rate_limited",
            Self::NotLeader { .. } => "not_leader",
            Self::Internal(_) => "internal",
            Self::PermissionDenied { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Refused { code, .. }
            | Self::Unavailable { code, .. } => code,
        }
    }

    /// What happened, for a person.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidArgument(m)
            | Self::TooLarge(m)
            | Self::Unauthenticated(m)
            | Self::Internal(m) => m.clone(),
            Self::PermissionDenied { message, .. }
            | Self::NotFound { message, .. }
            | Self::Conflict { message, .. }
            | Self::Refused { message, .. }
            | Self::Unavailable { message, .. } => message.clone(),
            Self::RateLimited => "this key is over its request rate; retry shortly".into(),
            Self::NotLeader {
                leader: Some(leader),
            } => {
                format!("this node does not lead the account; retry at {leader}")
            }
            Self::NotLeader { leader: None } => {
                "this node does not lead the account; retry shortly".into()
            }
        }
    }

    /// Whether retrying the same request (same idempotency key) is safe and may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::Unavailable { .. } | Self::NotLeader { .. }
        )
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for OpError {}

impl From<ExecuteError> for OpError {
    fn from(error: ExecuteError) -> Self {
        match error {
            ExecuteError::Busy => OpError::unavailable("busy", "too much work in flight; retry"),
            ExecuteError::LogFailed(why) => OpError::unavailable(
                "log_unavailable",
                format!(
                    "the decision could not be made durable ({why}); nothing was recorded, retry later"
                ),
            ),
            ExecuteError::Interrupted => OpError::unavailable(
                "interrupted",
                "the account restarted before answering; retry with the same idempotency key",
            ),
            ExecuteError::CouldNotDecide(why) => {
                OpError::internal(format!("could not decide: {why}"))
            }
            ExecuteError::LoadFailed(why) => {
                OpError::internal(format!("could not load the account: {why}"))
            }
            ExecuteError::NotLeader { leader } => OpError::NotLeader {
                leader: leader.map(|node| format!("node {node}")),
            },
            ExecuteError::ShuttingDown => OpError::unavailable(
                "shutting_down",
                "the server is stopping; nothing was recorded, retry shortly or on another node",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    /// One of each variant.
    fn examples() -> Vec<OpError> {
        vec![
            OpError::invalid("amount_minor", "must be positive"),
            OpError::too_large("body over 4096 bytes"),
            OpError::unauthenticated("a bearer API key is required"),
            OpError::forbidden("this key acts for one member of one account"),
            OpError::not_found("no account a"),
            OpError::conflict("card_exists", "card c exists already"),
            OpError::rejected(RejectReason::LastOwner),
            OpError::RateLimited,
            OpError::unavailable("busy", "too much work in flight; retry"),
            OpError::NotLeader { leader: None },
            OpError::internal("could not decide"),
        ]
    }

    /// `Debug` of the variant without its fields: `InvalidArgument`, `NotLeader`, ...
    fn variant(error: &OpError) -> String {
        format!("{error:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// `tonic::Code::InvalidArgument` as the gRPC docs spell it: `INVALID_ARGUMENT`.
    fn screaming(code: tonic::Code) -> String {
        let mut out = String::new();
        for (i, c) in format!("{code:?}").chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    /// The rows of docs/api.md's error table: variant, HTTP, gRPC, DE 39, retryable.
    fn documented() -> Vec<(String, u16, String, String, bool)> {
        let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
            .expect("docs/api.md");
        let table = api
            .split("<!-- op-errors -->")
            .nth(1)
            .and_then(|rest| rest.split("<!-- /op-errors -->").next())
            .expect("docs/api.md marks its error table with <!-- op-errors -->");
        table
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (
                    cells[1].trim_matches('`').to_owned(),
                    cells[3].parse().expect("HTTP status"),
                    cells[4].to_owned(),
                    cells[5].to_owned(),
                    cells[6] == "yes",
                )
            })
            .collect()
    }

    #[test]
    fn every_variant_maps_as_docs_api_md_says() {
        let rows = documented();
        let examples = examples();
        assert_eq!(
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            examples.iter().map(variant).collect::<Vec<_>>(),
            "one row per variant, in order"
        );
        for (error, (name, http, grpc, de39, retry)) in examples.iter().zip(&rows) {
            assert_eq!(
                crate::edge::http::status_of(error).as_u16(),
                *http,
                "{name}: HTTP"
            );
            assert_eq!(
                screaming(crate::edge::grpc::code_of(error)),
                *grpc,
                "{name}: gRPC"
            );
            assert_eq!(crate::edge::iso8583::de39_of(error), de39, "{name}: DE 39");
            assert_eq!(error.retryable(), *retry, "{name}: retryable");
        }
    }

    /// Every code the server's source gives `OpError::unavailable` or `OpError::conflict`
    /// as a literal is in docs/api.md's row for its variant.
    #[test]
    fn every_code_the_server_answers_is_in_docs_api_md() {
        let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
            .expect("docs/api.md");
        let codes_of = |variant: &str| -> String {
            api.lines()
                .find(|line| line.starts_with(&format!("| `{variant}` |")))
                .and_then(|line| line.split('|').nth(2))
                .unwrap_or_default()
                .to_owned()
        };
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut found = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (call, variant) in [("unavailable(", "Unavailable"), ("conflict(", "Conflict")] {
                for (at, _) in text.match_indices(call) {
                    let rest = text[at + call.len()..].trim_start();
                    let Some(literal) = rest.strip_prefix('"') else {
                        continue;
                    };
                    let code = &literal[..literal.find('"').unwrap_or(0)];
                    found += 1;
                    assert!(
                        codes_of(variant).contains(&format!("`{code}`")),
                        "{}: `{code}` is not in docs/api.md's `{variant}` row",
                        file.display()
                    );
                }
            }
        }
        assert!(
            found >= 8,
            "only {found} codes found: the scan has gone wrong"
        );
    }

    #[test]
    fn every_variant_renders_on_every_gateway() {
        for error in examples() {
            let name = variant(&error);
            // HTTP/JSON: problem+json with the status and the stable code.
            let response = error.clone().into_response();
            assert_eq!(
                response.status(),
                crate::edge::http::status_of(&error),
                "{name}"
            );
            assert_eq!(
                response.headers()[axum::http::header::CONTENT_TYPE],
                "application/problem+json",
                "{name}"
            );
            // gRPC unary: the code, the message and the stable code in metadata.
            let status = tonic::Status::from(error.clone());
            assert_eq!(status.code(), crate::edge::grpc::code_of(&error), "{name}");
            assert_eq!(status.message(), error.message(), "{name}");
            assert_eq!(
                status
                    .metadata()
                    .get("tandem-code")
                    .and_then(|v| v.to_str().ok()),
                Some(error.code()),
                "{name}"
            );
            // The processor stream: the same code in the answer, never a result.
            let answer = crate::edge::grpc::stream_error("c-1".into(), error.clone());
            assert_eq!(
                answer.error_code,
                crate::edge::grpc::code_of(&error) as i32,
                "{name}"
            );
            assert!(answer.result.is_none());
            assert!(answer.error_message.starts_with(error.code()), "{name}");
            // ISO 8583: a two-digit DE 39 of the profile's list.
            assert!(
                ["05", "14", "30", "57", "91", "94", "96"]
                    .contains(&crate::edge::iso8583::de39_of(&error)),
                "{name}"
            );
        }
    }

    #[test]
    fn retryable_errors_are_91_503_unavailable_or_the_rate_limit() {
        for error in examples() {
            if error.retryable() {
                assert_eq!(crate::edge::iso8583::de39_of(&error), "91");
                assert!(matches!(
                    crate::edge::http::status_of(&error),
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
                ));
            } else {
                assert_ne!(crate::edge::iso8583::de39_of(&error), "91", "{error}");
            }
        }
    }
}
