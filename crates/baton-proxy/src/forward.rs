//! One proxied request: load the split once, pick a backend, rewrite headers, send with a
//! timeout, retry once on a connect error, and hand back a body that holds the in-flight count.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::affinity::Target;
use crate::backend::{Backend, InFlight};
use crate::body::{RequestBody, ResponseBody};
use crate::error::{ProxyError, UpstreamError};
use crate::headers::{add_forwarded, is_upgrade, strip_hop_by_hop};
use crate::router::{AppRoute, Router};
use crate::select::{select, select_retry, select_target};
use crate::upgrade::spawn_tunnel;
use crate::upstream::{self, Outgoing};

/// What every request of one listener shares.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) app: String,
    pub(crate) router: Arc<Router>,
    pub(crate) request_timeout: Duration,
    /// Cancelled when the listener has shut down: closes upgraded tunnels.
    pub(crate) closing: CancellationToken,
}

/// What the requests of one client connection share.
#[derive(Debug)]
pub(crate) struct ClientConn {
    pub(crate) proxy: Arc<Proxy>,
    /// The peer's IP, formatted once per connection for `X-Forwarded-For`.
    pub(crate) client_ip: HeaderValue,
}

/// The service function: never fails, errors become their status responses.
pub(crate) async fn handle(
    conn: Arc<ClientConn>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    Ok(match forward(&conn, req).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(app = %conn.proxy.app, %error, "request not proxied");
            error.to_response()
        }
    })
}

async fn forward(
    conn: &ClientConn,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let proxy = &conn.proxy;
    // Loaded once: the whole request, retries included, sees one split (DESIGN.md I6).
    let table = proxy.router.current();
    let no_backend = || ProxyError::NoBackend {
        app: proxy.app.clone(),
    };
    let route = table.apps.get(&proxy.app).ok_or_else(no_backend)?;

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    strip_hop_by_hop(&mut parts.headers, upgrade);
    add_forwarded(&mut parts.headers, &conn.client_ip, host.clone());
    if let (false, Some(host)) = (parts.headers.contains_key(header::HOST), host) {
        // HTTP/2 carries the host in :authority; the HTTP/1.1 backend needs a Host header.
        parts.headers.insert(header::HOST, host);
    }
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // Only a request with nothing to resend may be retried.
    let retryable = body.is_end_stream();
    let mut rng = fastrand::Rng::new();
    // A canary split may tie this request to a release (targeting rule or sticky key).
    let decision = route.affinity.as_ref().map(|a| {
        (
            a.canary.as_str(),
            a.decide(&parts.headers, || fresh_key(&mut rng)),
        )
    });
    let prefer = decision
        .as_ref()
        .and_then(|(canary, d)| d.target.as_ref().map(|t| (*canary, t)));
    let set_cookie = decision.as_ref().and_then(|(_, d)| d.set_cookie.clone());

    // Without a host from the client, the backend's own address (the next one's on a retry).
    let host_from_backend = !parts.headers.contains_key(header::HOST);
    let mut body = RequestBody::Incoming(body);

    let mut guard = acquire(route, None, prefer, &mut rng).ok_or_else(no_backend)?;
    let mut retried = false;
    let incoming = loop {
        let backend = guard.backend();
        if host_from_backend {
            parts.headers.insert(header::HOST, backend.host().clone());
        }
        guard.metrics().request();
        let request = Outgoing {
            method: &parts.method,
            target: path.as_str(),
            headers: &parts.headers,
        };
        let exchange = upstream::send(&backend.local().pool, &request, &mut body);
        let failed = match tokio::time::timeout(proxy.request_timeout, exchange).await {
            Ok(Ok(answered)) => {
                backend.note_reachable();
                break answered;
            }
            // The client's own body failed: nothing to blame the instance for.
            Ok(Err(UpstreamError::ClientBody(_))) => {
                guard.skip_latency();
                return Err(ProxyError::Client("the request body failed"));
            }
            Ok(Err(failed)) => failed,
            Err(_elapsed) => {
                guard.metrics().timeout();
                guard.metrics().status(StatusCode::GATEWAY_TIMEOUT);
                return Err(ProxyError::Timeout {
                    addr: backend.addr(),
                    timeout: proxy.request_timeout,
                });
            }
        };
        let error = ProxyError::from_upstream(backend.addr(), failed);
        // Not sent: the body is untouched and the request may go elsewhere.
        let ProxyError::Connect { .. } = &error else {
            guard.metrics().status(StatusCode::BAD_GATEWAY);
            return Err(error);
        };
        guard.skip_latency();
        let backend = guard.backend();
        backend.note_connect_error();
        let next = if retried || !retryable {
            None
        } else {
            acquire(route, Some(backend), None, &mut rng)
        };
        let Some(next) = next else {
            guard.metrics().status(StatusCode::BAD_GATEWAY);
            return Err(error);
        };
        tracing::debug!(app = %proxy.app, failed = %backend.instance(), to = %next.backend().instance(), "retrying after connect error");
        guard = next;
        retried = true;
    };
    let mut response = respond(proxy, incoming, guard, client_upgrade)?;
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// A new sticky key for a client that has none: 128 random bits, hex.
fn fresh_key(rng: &mut fastrand::Rng) -> String {
    format!("{:016x}{:016x}", rng.u64(..), rng.u64(..))
}

/// Turns the backend's response into the client's, tying the in-flight count to its body (or,
/// for a protocol switch, to the tunnel).
fn respond(
    proxy: &Proxy,
    incoming: upstream::Incoming,
    mut guard: InFlight,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let upstream::Incoming { mut parts, body } = incoming;
    guard.metrics().status(parts.status);
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_upgrade), Some((backend_io, already_read))) =
            (client_upgrade, body.into_upgraded())
        else {
            return Err(ProxyError::Internal(format!(
                "backend {} switched protocols unasked",
                guard.backend().addr()
            )));
        };
        strip_hop_by_hop(&mut parts.headers, true);
        guard.record_latency_now();
        spawn_tunnel(
            client_upgrade,
            backend_io,
            already_read,
            guard,
            proxy.closing.clone(),
        );
        return Ok(Response::from_parts(parts, ResponseBody::empty()));
    }
    strip_hop_by_hop(&mut parts.headers, false);
    parts.version = Version::HTTP_11;
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(body, guard),
    ))
}

/// Picks a backend and counts the request on it. A backend that started draining between the
/// pick and the count is no longer eligible, so the next pick skips it.
fn acquire(
    route: &AppRoute,
    failed: Option<&Backend>,
    prefer: Option<(&str, &Target)>,
    rng: &mut fastrand::Rng,
) -> Option<InFlight> {
    let backends: usize = route.releases.iter().map(|r| r.backends.len()).sum();
    for _ in 0..=backends {
        let backend = match failed {
            Some(failed) => select_retry(route, failed, rng)?,
            // The group affinity chose; if it has no eligible backend, serving beats stickiness.
            None => match prefer
                .and_then(|(canary, target)| select_target(route, canary, target, rng))
            {
                Some(b) => b,
                None => select(route, None, rng)?,
            },
        };
        if let Some(guard) = InFlight::acquire(backend) {
            return Some(guard);
        }
    }
    None
}
