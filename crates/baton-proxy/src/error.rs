//! Proxy errors: each carries its kind (whom to blame), and the status code and the retry
//! decision are read from the kind, never from a message.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use baton_h1::Refusal;
pub use baton_h1::UpstreamError;

use crate::body::ResponseBody;

/// Whom an error blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The client sent something the proxy cannot forward.
    Client,
    /// No backend is eligible for the app.
    Unavailable,
    /// The backend could not be reached; the request was not sent, so it may be retried.
    UpstreamConnect,
    /// The backend failed after the request was (maybe partly) sent.
    UpstreamOther,
    /// The backend did not answer within `request_timeout`.
    Timeout,
    /// A defect in the proxy.
    Internal,
}

impl ErrorKind {
    /// The status the client gets for it.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Client => StatusCode::BAD_REQUEST,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamOther => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn body(self) -> &'static [u8] {
        match self {
            ErrorKind::Client => b"bad request\n",
            ErrorKind::Unavailable => b"no healthy backend\n",
            ErrorKind::UpstreamConnect => b"backend unreachable\n",
            ErrorKind::UpstreamOther => b"bad gateway\n",
            ErrorKind::Timeout => b"backend timed out\n",
            ErrorKind::Internal => b"internal proxy error\n",
        }
    }
}

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request cannot be forwarded as it is.
    #[error("bad request: {0}")]
    Client(&'static str),
    /// The request breaks a rule of HTTP the proxy enforces (its framing, host or target):
    /// answered with the status, and the connection closes after it, since what follows on it
    /// cannot be trusted to start a request.
    #[error("refused ({0}): {1}")]
    Refused(StatusCode, &'static str),
    /// No eligible backend for the app.
    #[error("no eligible backend for app {app:?}")]
    NoBackend {
        /// The app.
        app: String,
    },
    /// Could not reach the backend; nothing was sent.
    #[error("could not connect to backend {addr}: {source}")]
    Connect {
        /// The backend's address.
        addr: SocketAddr,
        /// Why.
        source: UpstreamError,
    },
    /// The exchange with the backend failed after sending began.
    #[error("backend {addr} failed: {source}")]
    Upstream {
        /// The backend's address.
        addr: SocketAddr,
        /// Why.
        source: UpstreamError,
    },
    /// The backend's response head did not arrive in time.
    #[error("backend {addr} did not answer within {timeout:?}")]
    Timeout {
        /// The backend's address.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// A defect in the proxy.
    #[error("internal proxy error: {0}")]
    Internal(String),
    /// The route's circuit breaker refused the request: its fallback is the answer.
    #[error("circuit breaker open: fallback {}", .0.status)]
    Fallback(std::sync::Arc<crate::breaker::Fallback>),
}

impl From<Refusal> for ProxyError {
    fn from(refusal: Refusal) -> Self {
        ProxyError::Refused(refusal.status, refusal.reason)
    }
}

impl ProxyError {
    /// Whom it blames.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::Client(_) | ProxyError::Refused(..) => ErrorKind::Client,
            ProxyError::NoBackend { .. } | ProxyError::Fallback(_) => ErrorKind::Unavailable,
            ProxyError::Connect { .. } => ErrorKind::UpstreamConnect,
            ProxyError::Upstream { .. } => ErrorKind::UpstreamOther,
            ProxyError::Timeout { .. } => ErrorKind::Timeout,
            ProxyError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Classifies a failed exchange: "not sent" (connect failed, or the connection closed
    /// before the request went out) may be retried elsewhere; anything else may have reached
    /// the backend.
    pub(crate) fn from_upstream(addr: SocketAddr, source: UpstreamError) -> Self {
        if source.is_not_sent() {
            ProxyError::Connect { addr, source }
        } else {
            ProxyError::Upstream { addr, source }
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Refused(status, _) => *status,
            ProxyError::Fallback(f) => f.status,
            _ => self.kind().status(),
        }
    }

    /// The text of the response the client gets.
    pub(crate) fn body(&self) -> &[u8] {
        match self {
            ProxyError::Fallback(f) => &f.body,
            ProxyError::Refused(status, _) if *status == StatusCode::NOT_IMPLEMENTED => {
                b"not implemented\n"
            }
            _ => self.kind().body(),
        }
    }

    /// Whether the client connection closes after the answer.
    pub(crate) fn closes(&self) -> bool {
        matches!(self, ProxyError::Refused(..))
    }

    /// The `Content-Type` of [`ProxyError::body`].
    pub(crate) fn content_type(&self) -> &'static str {
        match self {
            ProxyError::Fallback(f) => f.content_type,
            _ => "text/plain; charset=utf-8",
        }
    }

    /// The `Retry-After` the answer carries (a breaker's fallback may set one).
    pub(crate) fn retry_after(&self) -> Option<&HeaderValue> {
        match self {
            ProxyError::Fallback(f) => f.retry_after.as_ref(),
            _ => None,
        }
    }

    /// The response the client gets.
    pub(crate) fn to_response(&self) -> Response<ResponseBody> {
        let body = match self {
            ProxyError::Fallback(f) => f.body.clone(),
            _ => Bytes::copy_from_slice(self.body()),
        };
        let mut response = Response::new(ResponseBody::full(body));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type()),
        );
        if let Some(retry_after) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after.clone());
        }
        if self.closes() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comes_from_the_kind() {
        assert_eq!(
            ProxyError::NoBackend { app: "web".into() }
                .to_response()
                .status(),
            503
        );
        let addr = "127.0.0.1:1".parse().unwrap();
        let timeout = ProxyError::Timeout {
            addr,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        assert_eq!(timeout.to_response().status(), 504);
        assert_eq!(ProxyError::Client("x").to_response().status(), 400);
        assert_eq!(ErrorKind::UpstreamConnect.status(), 502);
    }
}
