//! A request Baton's own HTTP/1.1 server took, sent on: its head written for the backend
//! straight from the client's bytes (hop-by-hop headers left out, the forwarding headers
//! added), or through a header map for a canary split with affinity, whose rules read headers
//! by name.

use std::pin::Pin;

use baton_h1::RequestBody;
use baton_h1::client::{self as upstream, Outgoing};
use baton_h1::request::{Header, Role};
use baton_h1::response::put_header;
use bytes::BytesMut;
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::time::Sleep;

use crate::backend::InFlight;
use crate::error::ProxyError;
use crate::forward::{ClientConn, exchange, fresh_key};
use crate::headers::{X_REQUEST_ID, add_forwarded, new_request_id_bytes};

/// What came back for a request: the response head and its body, the in-flight count, and
/// a cookie to add.
pub(super) struct Answer {
    pub(super) incoming: upstream::Incoming,
    pub(super) guard: InFlight,
    pub(super) set_cookie: Option<HeaderValue>,
}

pub(super) async fn forward(
    conn: &ClientConn,
    head: &[u8],
    method: &Method,
    target: (usize, usize),
    headers: &[Header],
    mut body: RequestBody,
    timeout: Pin<&mut Sleep>,
) -> Result<Answer, ProxyError> {
    let proxy = &conn.proxy;
    proxy
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let table = proxy.router.current();
    let route = table
        .apps
        .get(&proxy.app)
        .ok_or_else(|| ProxyError::NoBackend {
            app: proxy.app.clone(),
        })?;
    let text = |(start, end): (usize, usize)| &head[start..end];
    let host = headers
        .iter()
        .find(|h| h.role == Role::Host)
        .map(|h| text(h.value));
    let mut rng = fastrand::Rng::new();
    let ticket = crate::breaker::gate(&proxy.breakers, text(target))?;
    if route.mirror.is_some() {
        let target = String::from_utf8_lossy(text(target));
        let copied = || {
            let mut map = HeaderMap::with_capacity(headers.len() + 1);
            for h in headers.iter().filter(|h| h.role != Role::Drop) {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(text(h.name)),
                    HeaderValue::from_bytes(text(h.value)),
                ) {
                    map.append(n, v);
                }
            }
            map
        };
        crate::mirror::offer(route, method, &target, copied, &body, &mut rng);
    }
    let flags = proxy.router.flags();
    let app_flags = flags.get(&proxy.app).filter(|f| !f.flags.is_empty());
    if route.affinity.is_none() && app_flags.is_none() {
        let exchanged = exchange(
            proxy,
            route,
            None,
            &mut rng,
            method,
            &mut body,
            timeout,
            |backend, framing| {
                let mut dst = BytesMut::with_capacity(head.len() + 160);
                dst.extend_from_slice(method.as_str().as_bytes());
                dst.extend_from_slice(b" ");
                dst.extend_from_slice(text(target));
                dst.extend_from_slice(b" HTTP/1.1\r\n");
                let mut forwarded_for = None;
                let mut request_id = false;
                for h in headers {
                    match h.role {
                        Role::Drop | Role::ForwardedProto => continue,
                        Role::ForwardedHost => continue,
                        Role::ForwardedFor => {
                            // Several lines are one list (RFC 9110 5.3): joined, then ours.
                            let value = text(h.value).trim_ascii();
                            if !value.is_empty() {
                                let list = forwarded_for.get_or_insert_with(Vec::new);
                                if !list.is_empty() {
                                    list.extend_from_slice(b", ");
                                }
                                list.extend_from_slice(value);
                            }
                            continue;
                        }
                        Role::RequestId => request_id = true,
                        Role::Pass | Role::Host => {}
                    }
                    put_header(&mut dst, text(h.name), text(h.value));
                }
                if host.is_none() {
                    put_header(&mut dst, b"host", backend.host().as_bytes());
                }
                dst.extend_from_slice(b"x-forwarded-for: ");
                if let Some(list) = forwarded_for {
                    dst.extend_from_slice(&list);
                    dst.extend_from_slice(b", ");
                }
                dst.extend_from_slice(conn.client_ip.as_bytes());
                dst.extend_from_slice(b"\r\nx-real-ip: ");
                dst.extend_from_slice(conn.client_ip.as_bytes());
                dst.extend_from_slice(b"\r\nx-forwarded-proto: ");
                dst.extend_from_slice(conn.proxy.proto().as_bytes());
                dst.extend_from_slice(b"\r\n");
                if let Some(host) = host {
                    put_header(&mut dst, b"x-forwarded-host", host);
                }
                if !request_id {
                    put_header(
                        &mut dst,
                        X_REQUEST_ID.as_str().as_bytes(),
                        &new_request_id_bytes(),
                    );
                }
                framing.write_header(method, &mut dst);
                dst.extend_from_slice(b"\r\n");
                dst.freeze()
            },
        )
        .await;
        crate::breaker::finish(ticket, &exchanged, |(incoming, _)| incoming.head.status);
        let (incoming, guard) = exchanged?;
        return Ok(Answer {
            incoming,
            guard,
            set_cookie: None,
        });
    }
    // A canary with affinity, or feature flags: they read the headers as the backend will
    // see them.
    let mut map = HeaderMap::with_capacity(headers.len() + 4);
    for h in headers.iter().filter(|h| h.role != Role::Drop) {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(text(h.name)),
            HeaderValue::from_bytes(text(h.value)),
        ) else {
            return Err(ProxyError::Client("invalid header"));
        };
        map.append(name, value);
    }
    let host = map.get(header::HOST).cloned();
    add_forwarded(&mut map, &conn.client_ip, conn.proxy.proto(), host.clone());
    crate::flags::add_header(app_flags.map(|f| &**f), &mut map);
    let decision = route
        .affinity
        .as_ref()
        .map(|a| a.decide(&map, || fresh_key(&mut rng)))
        .unwrap_or_default();
    let prefer = route
        .affinity
        .as_ref()
        .zip(decision.target.as_ref())
        .map(|(a, t)| (a.canary.as_str(), t));
    let target =
        std::str::from_utf8(text(target)).map_err(|_| ProxyError::Client("invalid target"))?;
    let exchanged = exchange(
        proxy,
        route,
        prefer,
        &mut rng,
        method,
        &mut body,
        timeout,
        |backend, framing| {
            if host.is_none() {
                map.insert(header::HOST, backend.host().clone());
            }
            let request = Outgoing {
                method,
                target,
                headers: &map,
            };
            upstream::encode_head(&request, framing)
        },
    )
    .await;
    crate::breaker::finish(ticket, &exchanged, |(incoming, _)| incoming.head.status);
    let (incoming, guard) = exchanged?;
    Ok(Answer {
        incoming,
        guard,
        set_cookie: decision.set_cookie,
    })
}
