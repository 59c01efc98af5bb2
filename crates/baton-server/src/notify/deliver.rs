//! One webhook's delivery task: POSTs its queue's events one at a time, in order, retrying
//! each with exponential backoff until it is delivered or the attempts run out.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::RetryPolicy;
use super::queue::{Pending, Queue};
use super::target::Target;
use super::tls::{HandshakeError, Tls};

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    /// Nothing accepted the connection (or the name did not resolve).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// An https webhook's TLS handshake failed (unknown CA, wrong name, expired, not TLS).
    #[error("{0}")]
    Tls(#[from] HandshakeError),
    /// The connection broke or the answer was not HTTP.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The webhook answered, but not with 2xx.
    #[error("answered {0}")]
    Status(StatusCode),
    /// No answer within `attempt_timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Delivers `queue`'s events to `target` (over `tls` for https) until the task is aborted.
pub(super) async fn run(target: Target, tls: Option<Tls>, queue: Arc<Queue>, policy: RetryPolicy) {
    loop {
        let (event, dropped) = queue.take().await;
        if dropped > 0 {
            tracing::warn!(webhook = %target, dropped, "webhook queue was full: dropped its oldest undelivered events");
        }
        deliver(&target, tls.as_ref(), &event, &policy).await;
        queue.done();
    }
}

/// Tries `event` up to `policy.max_attempts` times; logs and gives up after the last.
async fn deliver(target: &Target, tls: Option<&Tls>, event: &Pending, policy: &RetryPolicy) {
    let attempts = policy.max_attempts.max(1);
    for attempt in 1..=attempts {
        let error = match tokio::time::timeout(
            policy.attempt_timeout,
            post(target, tls, event.body.clone()),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::debug!(webhook = %target, event = event.id, attempt, "webhook delivered");
                return;
            }
            Ok(Err(e)) => e,
            Err(_) => AttemptError::Timeout(policy.attempt_timeout),
        };
        if attempt == attempts {
            tracing::warn!(webhook = %target, event = event.id, attempts, error = %error, "webhook delivery failed: giving up on this event");
            return;
        }
        let wait = backoff(policy, attempt, fastrand::f64());
        tracing::debug!(webhook = %target, event = event.id, attempt, error = %error, retry_in = ?wait, "webhook delivery failed: will retry");
        tokio::time::sleep(wait).await;
    }
}

/// The wait after failed attempt `attempt` (1-based): `first_backoff` doubled per attempt,
/// capped at `max_backoff`, then scaled into its upper half by `jitter` in [0, 1) so that
/// webhooks failing together do not retry in lockstep.
pub(super) fn backoff(policy: &RetryPolicy, attempt: u32, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let base = policy
        .first_backoff
        .saturating_mul(1 << doublings)
        .min(policy.max_backoff);
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// One POST on a connection of its own, in TLS for https: 2xx is success, anything else an
/// error.
pub(super) async fn post(
    target: &Target,
    tls: Option<&Tls>,
    body: Bytes,
) -> Result<(), AttemptError> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(AttemptError::Connect)?;
    let _ = stream.set_nodelay(true);
    match tls {
        Some(tls) => exchange(target, tls.handshake(stream).await?, body).await,
        None => exchange(target, stream, body).await,
    }
}

/// The request and its response head on an open connection.
async fn exchange<S>(target: &Target, stream: S, body: Bytes) -> Result<(), AttemptError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let mut request = Request::post(target.path.clone())
        .header(header::HOST, target.authority.clone())
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .header(header::USER_AGENT, HeaderValue::from_static("baton"))
        .header(header::CONNECTION, HeaderValue::from_static("close"))
        .body(Full::new(body))
        .expect("method, parsed target and static headers make a valid request");
    if let Some(auth) = &target.authorization {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    let response = sender.send_request(request);
    tokio::pin!(conn, response);
    let response = tokio::select! {
        response = &mut response => response?,
        // With `connection: close` the connection can end in the same poll that delivers the
        // response; the response is then ready (or failed) already.
        _ = &mut conn => response.await?,
    };
    // The body is not read: only the status matters, and the connection is closed after it.
    match response.status() {
        s if s.is_success() => Ok(()),
        s => Err(AttemptError::Status(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        let top = |attempt| backoff(&p, attempt, 1.0);
        assert_eq!(top(1), Duration::from_millis(500));
        assert_eq!(top(2), Duration::from_secs(1));
        assert_eq!(top(3), Duration::from_secs(2));
        assert_eq!(top(7), Duration::from_secs(30));
        assert_eq!(top(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_keeps_the_upper_half() {
        let p = policy();
        assert_eq!(backoff(&p, 3, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 3, 0.5), Duration::from_millis(1500));
        assert_eq!(backoff(&p, 3, 7.0), Duration::from_secs(2));
    }
}
