//! API errors: a status, a stable code and a message that says what to do; every error the
//! API answers, its own or axum's, has this one JSON shape and a bounded size.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_store::StoreError;

use crate::views::{ErrorBody, ErrorDetail};

/// The longest message an error carries, in bytes: a message never grows with what was sent.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// How much of a string a client sent is quoted back in a message, in characters.
const QUOTE_CHARS: usize = 64;

/// A string a client sent, for a message: escaped (as a Rust string literal) and cut to
/// [`QUOTE_CHARS`] characters, with what was left out said.
pub fn quote(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    let rest = chars.as_str().len();
    if rest == 0 {
        format!("{head:?}")
    } else {
        format!("{head:?}… ({rest} more bytes)")
    }
}

/// `message` cut to at most [`MAX_MESSAGE_BYTES`] on a character boundary.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (cut)");
    }
    message
}

/// The stable code of an error status.
pub fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// An error returned by the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: bounded(message.into()),
        }
    }

    /// The error for a body axum could not read as JSON; `expected` shows a good one.
    pub fn json_body(e: &JsonRejection, expected: &str) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the JSON body is larger than {} bytes; expected {expected}",
                    super::MAX_JSON_BYTES
                ),
            );
        }
        Self::bad_request(format!("invalid JSON body: {e}; expected {expected}"))
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token: the token is in the data directory's `token` file (or set BATON_TOKEN)",
        )
    }

    /// The dashboard's read-only token asked for more than a read.
    pub fn read_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this is the dashboard's read-only token: it can read (GET) and nothing else; use the API token (the data directory's `token` file, or BATON_TOKEN) to change anything",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{:?}", self.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::VersionConflict { .. } | StoreError::DeploymentActive(_) => {
                ApiError::conflict(e.to_string())
            }
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                other.to_string(),
            ),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{e:#}"),
        )
    }
}
