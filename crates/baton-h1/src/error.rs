//! What can go wrong between the proxy and an instance.

use std::time::Duration;

/// What went wrong between the proxy and a backend.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connect failed (refused, unreachable).
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The TCP connect did not finish in time.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The connection closed before the request was sent.
    #[error("connection closed before the request was sent: {0}")]
    Closed(#[source] std::io::Error),
    /// The exchange failed after the request was (maybe partly) sent.
    #[error("exchange failed: {0}")]
    Exchange(#[source] std::io::Error),
    /// The backend's response is not valid HTTP/1.1.
    #[error("{0}")]
    Protocol(String),
    /// The client's request body failed while it was being forwarded.
    #[error("the client's request body failed: {0}")]
    ClientBody(String),
}

impl UpstreamError {
    /// Whether the request certainly did not reach the backend.
    pub fn is_not_sent(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_) | UpstreamError::Closed(_)
        )
    }
}
