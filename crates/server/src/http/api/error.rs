//! The API's one error type and the one place it, and every core error,
//! becomes an HTTP status and a JSON body:
//!
//! ```json
//! {"error": {"status": 400, "code": "invalid_argument", "field": "limit",
//!            "value": "100000", "limit": "1 to 500",
//!            "message": "limit: \"100000\" is over the limit (1 to 500)"}}
//! ```
//!
//! `field`, `value` and `limit` are there when the error has them.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use carteiro_core::BrokerError;
use serde::Serialize;
use tonic::Code;

/// Characters of a client's value repeated in an error; the rest is cut.
pub const ERROR_VALUE_CHARS_MAX: usize = 64;

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A path segment, query parameter or body field is invalid.
    #[error("{field}: {value:?} {problem}")]
    Invalid {
        /// The field, as the request named it.
        field: &'static str,
        /// The value given, cut to [`ERROR_VALUE_CHARS_MAX`] characters.
        value: String,
        /// What is wrong with it.
        problem: String,
        /// The limit it broke, if one.
        limit: Option<String>,
    },
    /// No such path under `/api/`.
    #[error("no such path {path:?} under /api/: see docs/http.md")]
    NoSuchPath {
        /// The path, cut.
        path: String,
    },
    /// A method the path does not serve.
    #[error("method not allowed here: see docs/http.md")]
    MethodNotAllowed,
    /// A body that is not JSON, or not said to be.
    #[error("the body must be JSON, sent with content-type application/json")]
    NotJson,
    /// A body over the limit.
    #[error("the body is over the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A write from a page of another origin.
    #[error("origin {origin:?} is not this listener's ({host:?}): writes only from the console")]
    ForeignOrigin {
        /// The request's `Origin`, cut.
        origin: String,
        /// The request's `Host`, cut.
        host: String,
    },
    /// The broker is still recovering its data.
    #[error("the broker is recovering: try again once /readyz answers 200")]
    Recovering,
    /// What the core refused.
    #[error("{0}")]
    Core(#[from] BrokerError),
    /// A task of ours failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `value` cut to [`ERROR_VALUE_CHARS_MAX`] characters.
pub fn cut(value: &str) -> String {
    let mut chars = value.chars();
    let mut out: String = chars.by_ref().take(ERROR_VALUE_CHARS_MAX).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

impl ApiError {
    /// An invalid field with no limit to name.
    pub fn invalid(field: &'static str, value: &str, problem: impl Into<String>) -> Self {
        ApiError::Invalid {
            field,
            value: cut(value),
            problem: problem.into(),
            limit: None,
        }
    }

    /// A field over (or under) its limit.
    pub fn over_limit(field: &'static str, value: &str, limit: impl Into<String>) -> Self {
        let limit = limit.into();
        ApiError::Invalid {
            field,
            value: cut(value),
            problem: format!("is outside the limit ({limit})"),
            limit: Some(limit),
        }
    }

    /// The HTTP status and short code of this error.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_argument"),
            ApiError::NoSuchPath { .. } => (StatusCode::NOT_FOUND, "no_such_path"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::NotJson => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json"),
            ApiError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::ForeignOrigin { .. } => (StatusCode::FORBIDDEN, "foreign_origin"),
            ApiError::Recovering => (StatusCode::SERVICE_UNAVAILABLE, "recovering"),
            ApiError::Core(e) => core_status(e),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The HTTP status of a core error: its gRPC code (`crate::error::code`,
/// where every core error is mapped) as an HTTP status and short name.
fn core_status(e: &BrokerError) -> (StatusCode, &'static str) {
    match crate::error::code(e) {
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, "out_of_range"),
        Code::ResourceExhausted => (StatusCode::SERVICE_UNAVAILABLE, "resource_exhausted"),
        Code::Unavailable if matches!(e, BrokerError::ShuttingDown) => {
            (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
        }
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Code::FailedPrecondition => (StatusCode::CONFLICT, "failed_precondition"),
        Code::Aborted => (StatusCode::CONFLICT, "aborted"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "data_loss"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// The JSON body of an error.
#[derive(Debug, Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Debug, Serialize)]
struct Detail<'a> {
    status: u16,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'a str>,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if status.is_server_error() && !matches!(self, ApiError::Recovering) {
            tracing::error!(error = %self, "HTTP API request failed");
        }
        let (field, value, limit) = match &self {
            ApiError::Invalid {
                field,
                value,
                limit,
                ..
            } => (Some(*field), Some(value.as_str()), limit.as_deref()),
            ApiError::Core(BrokerError::InvalidArgument { field, .. }) => {
                (Some(*field), None, None)
            }
            _ => (None, None, None),
        };
        let body = Body {
            error: Detail {
                status: status.as_u16(),
                code,
                field,
                value,
                limit,
                message: self.to_string(),
            },
        };
        let text = serde_json::to_string(&body).unwrap_or_else(|_| {
            format!(
                r#"{{"error":{{"status":{},"code":"{code}"}}}}"#,
                status.as_u16()
            )
        });
        (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carteiro_storage::StoreError;

    #[test]
    fn long_values_are_cut_in_errors() {
        let long = "x".repeat(1000);
        let cut = cut(&long);
        assert_eq!(cut.chars().count(), ERROR_VALUE_CHARS_MAX + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(super::cut("short"), "short");
    }

    #[test]
    fn core_errors_map_to_statuses() {
        let unknown = ApiError::Core(BrokerError::UnknownGroup {
            group: "g".to_string(),
        });
        assert_eq!(unknown.status().0, StatusCode::NOT_FOUND);
        let exists = ApiError::Core(BrokerError::Store(StoreError::TopicExists {
            name: "t".to_string(),
        }));
        assert_eq!(exists.status().0, StatusCode::CONFLICT);
        let invalid = ApiError::Core(BrokerError::invalid("name", "bad"));
        assert_eq!(invalid.status().0, StatusCode::BAD_REQUEST);
        assert_eq!(
            ApiError::Core(BrokerError::ShuttingDown).status().0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
