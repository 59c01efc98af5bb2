//! One proxied request: load the split once, pick a backend, rewrite headers, send with a
//! timeout, retry once on a connect error, and hand back a body that holds the in-flight count.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use baton_h1::client::{self as upstream, BodyFraming, Outgoing};
use baton_h1::{RequestBody, rules};
use bytes::Bytes;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::affinity::Target;
use crate::backend::{Backend, InFlight};
use crate::body::ResponseBody;
use crate::error::{ProxyError, UpstreamError};
use crate::headers::{add_forwarded, is_upgrade, strip_hop_by_hop};
use crate::router::{AppRoute, Router};
use crate::select::{select, select_retry, select_target};
use crate::upgrade::spawn_tunnel;

/// What every request of one listener shares.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) app: String,
    pub(crate) router: Arc<Router>,
    pub(crate) request_timeout: Duration,
    /// Longest wait for a client's request head.
    pub(crate) head_timeout: Duration,
    /// Largest request head accepted.
    pub(crate) max_header_bytes: usize,
    /// Cancelled when the listener has shut down: closes upgraded tunnels.
    pub(crate) closing: CancellationToken,
    /// The upgraded connections (tunnels) open now, which a shutdown waits for a while.
    pub(crate) tunnels: Arc<crate::signals::Clients>,
    /// The app's request counter ([`Router::requests`]).
    pub(crate) requests: Arc<std::sync::atomic::AtomicU64>,
    /// Clients speak HTTPS here (`X-Forwarded-Proto: https`).
    pub(crate) https: bool,
    /// The app's circuit breakers (`breaker.rs`).
    pub(crate) breakers: crate::breaker::AppBreakers,
    /// The app's outlier ejection config (`outlier.rs`).
    pub(crate) outlier: crate::outlier::AppOutlier,
}

impl Proxy {
    /// `X-Forwarded-Proto`'s value for this listener's requests.
    pub(crate) fn proto(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
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
    proxy
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Loaded once: the whole request, retries included, sees one split (docs/DESIGN.md I6).
    let table = proxy.router.current();
    let no_backend = || ProxyError::NoBackend {
        app: proxy.app.clone(),
    };
    let route = table.apps.get(&proxy.app).ok_or_else(no_backend)?;

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let host = rules::check(&parts)?;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    add_forwarded(
        &mut parts.headers,
        &conn.client_ip,
        proxy.proto(),
        host.clone(),
    );
    let flags = proxy.router.flags();
    crate::flags::add_header(flags.get(&proxy.app).map(|f| &**f), &mut parts.headers);
    if let Some(host) = host {
        // HTTP/2 carries the host in :authority, an absolute-form target in the target; the
        // HTTP/1.1 backend needs it as the Host header.
        parts.headers.insert(header::HOST, host);
    }
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
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
    let ticket = crate::breaker::gate(&proxy.breakers, path.as_str().as_bytes())?;

    // Without a host from the client, the backend's own address (the next one's on a retry).
    let host_from_backend = !parts.headers.contains_key(header::HOST);
    let mut body = RequestBody::Incoming(body);
    crate::mirror::offer(
        route,
        &parts.method,
        path.as_str(),
        || parts.headers.clone(),
        &body,
        &mut rng,
    );
    let timeout = tokio::time::sleep(proxy.request_timeout);
    tokio::pin!(timeout);
    let exchanged = exchange(
        proxy,
        route,
        prefer,
        &mut rng,
        &parts.method,
        &mut body,
        timeout,
        |backend, framing| {
            if host_from_backend {
                parts.headers.insert(header::HOST, backend.host().clone());
            }
            let request = Outgoing {
                method: &parts.method,
                target: path.as_str(),
                headers: &parts.headers,
            };
            upstream::encode_head(&request, framing)
        },
    )
    .await;
    crate::breaker::finish(ticket, &exchanged, |(incoming, _)| incoming.head.status);
    let (incoming, guard) = exchanged?;
    let mut response = respond(proxy, incoming, guard, client_upgrade)?;
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Sends a request to a backend of `route` (in the release `prefer` names, if it has an
/// eligible one) and reads the response head, before `timeout` fires. `encode` writes the
/// request head for the backend chosen, with the framing header of `body`. A request that
/// could not be sent is retried once on another backend if it has no body to resend.
///
/// Counts the request, and on failure its status, on the backend's metrics; the guard it
/// returns holds the in-flight count until the response has been passed on.
#[allow(clippy::too_many_arguments)] // one call site per HTTP server side; a struct would only rename them
pub(crate) async fn exchange(
    proxy: &Proxy,
    route: &AppRoute,
    prefer: Option<(&str, &Target)>,
    rng: &mut fastrand::Rng,
    method: &Method,
    body: &mut RequestBody,
    mut timeout: Pin<&mut Sleep>,
    mut encode: impl FnMut(&Backend, BodyFraming) -> Bytes,
) -> Result<(upstream::Incoming, InFlight), ProxyError> {
    let no_backend = || ProxyError::NoBackend {
        app: proxy.app.clone(),
    };
    let framing = BodyFraming::of(body);
    // Only a request with nothing to resend, or whose body is held whole, may be retried.
    let retryable = framing == BodyFraming::None || matches!(body, RequestBody::Inline(_));
    let mut guard = acquire(route, None, prefer, rng).ok_or_else(no_backend)?;
    let mut retried = false;
    loop {
        let backend = guard.backend();
        let head = encode(backend, framing);
        guard.metrics().request();
        let sent = {
            let exchange =
                upstream::send_encoded(&backend.local().pool, &head, method, framing, body);
            tokio::pin!(exchange);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(sent) = exchange.as_mut().poll(cx) {
                    return Poll::Ready(Some(sent));
                }
                timeout.as_mut().poll(cx).map(|()| None)
            })
            .await
        };
        let failed = match sent {
            Some(Ok(answered)) => {
                backend.note_reachable();
                let error = answered.head.status.is_server_error();
                crate::outlier::note(&proxy.outlier, route, backend, error);
                return Ok((answered, guard));
            }
            // The client's own body failed: nothing to blame the instance for.
            Some(Err(UpstreamError::ClientBody(_))) => {
                guard.skip_latency();
                return Err(ProxyError::Client("the request body failed"));
            }
            Some(Err(failed)) => failed,
            None => {
                crate::outlier::note(&proxy.outlier, route, backend, true);
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
            crate::outlier::note(&proxy.outlier, route, backend, true);
            guard.metrics().status(StatusCode::BAD_GATEWAY);
            return Err(error);
        };
        guard.skip_latency();
        let backend = guard.backend();
        backend.note_connect_error();
        let next = if retried || !retryable {
            None
        } else {
            acquire(route, Some(backend), None, rng)
        };
        let Some(next) = next else {
            guard.metrics().status(StatusCode::BAD_GATEWAY);
            return Err(error);
        };
        tracing::debug!(app = %proxy.app, failed = %backend.instance(), to = %next.backend().instance(), "retrying after connect error");
        guard = next;
        retried = true;
    }
}

/// A new sticky key for a client that has none: 128 random bits, hex.
pub(crate) fn fresh_key(rng: &mut fastrand::Rng) -> String {
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
    let upstream::Incoming { head, body } = incoming;
    let codings = head.other_codings();
    let mut parts = match head.into_parts() {
        Ok(parts) => parts,
        Err(error) => {
            guard.metrics().status(StatusCode::BAD_GATEWAY);
            return Err(ProxyError::from_upstream(guard.backend().addr(), error));
        }
    };
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
            crate::signals::Clients::register(&proxy.tunnels),
        );
        return Ok(Response::from_parts(parts, ResponseBody::empty()));
    }
    strip_hop_by_hop(&mut parts.headers, false);
    // Codings the body is still in; hyper adds the chunked framing after them.
    if let Some(codings) = codings.and_then(|c| HeaderValue::from_bytes(&c).ok()) {
        parts.headers.insert(header::TRANSFER_ENCODING, codings);
    }
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
