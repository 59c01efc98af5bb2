//! Baton's own HTTP/1.x server side, for the requests a proxy sees most: HTTP/1.1 (or 1.0)
//! requests without a body or with a small one (`Content-Length` up to 64 KiB).
//!
//! Such a request is parsed with httparse and its head written to the backend straight from
//! the client's bytes (hop-by-hop headers left out, the forwarding headers added); a body is
//! read whole first and goes out with the head in one write, as nginx buffers request bodies.
//! The backend's response head comes back the same way: no header map is built on either
//! side, which is how nginx and HAProxy forward a request. Everything else (a chunked or
//! larger body, an upgrade, h2c, a head the parser rejects or that is too large) is handed
//! to hyper for the rest of the connection, with the bytes already read: hyper then serves
//! it exactly as if it had read them itself, error responses included ([`crate::listener`]).
//!
//! A request in a canary split with affinity goes through the header map after all
//! ([`upstream::encode_head`]): its targeting rules read headers by name.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use tokio::io::{AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::backend::InFlight;
use crate::body::RequestBody;
use crate::chunked;
use crate::error::ProxyError;
use crate::forward::{ClientConn, exchange, fresh_key};
use crate::headers::{X_REQUEST_ID, add_forwarded, is_hop_by_hop, new_request_id_bytes};
use crate::listener::{Stage, Watch};
use crate::upstream::{self, Outgoing, UpstreamBody, parse_length};
use crate::validate::is_valid_host;

/// Most headers a request served here may have; one with more goes to hyper (which answers
/// 431 above its own limit of the same number).
const MAX_HEADERS: usize = 100;
/// Largest request body read whole before the request goes out (as nginx buffers request
/// bodies); a larger one is streamed by hyper.
const MAX_INLINE_BODY: usize = 64 * 1024;
/// Spare room made in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;
/// Body data up to this size is copied next to the head (one write); larger pieces are
/// written from where they are.
const COPY_LIMIT: usize = 16 * 1024;

/// How a connection served here ended.
pub(crate) enum Served {
    /// Closed (by either side, a timeout or the shutdown).
    Closed,
    /// hyper takes over: the stream, and the bytes read from it that no request consumed.
    Handoff(TcpStream, BytesMut),
}

/// Serves `stream` until it closes or a request needs hyper.
pub(crate) async fn serve(stream: TcpStream, conn: &ClientConn, watch: &mut Watch<'_>) -> Served {
    let proxy = &conn.proxy;
    let head_timeout = crate::listener::HEADER_READ_TIMEOUT.min(proxy.request_timeout);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut wire = Wire {
        stream,
        out: BytesMut::with_capacity(READ_CHUNK),
        watch,
        finishing: false,
        client_sent_more: false,
    };
    // Two timers for the connection's life, each only ever moved later (which, for a
    // registered timer, costs no more than a store): the wait for a head, and for an answer.
    let head_timer = tokio::time::sleep(head_timeout);
    tokio::pin!(head_timer);
    let answer_timer = tokio::time::sleep(proxy.request_timeout);
    tokio::pin!(answer_timer);
    loop {
        head_timer.as_mut().reset(Instant::now() + head_timeout);
        // A request whose head is in and whose body is still arriving.
        let mut awaiting_body: Option<Request> = None;
        let request = loop {
            if let Some(request) = awaiting_body.take_if(|r| buf.len() >= r.len + r.body) {
                break request;
            }
            if awaiting_body.is_none() && !buf.is_empty() {
                match parse(&buf, proxy.max_header_bytes) {
                    Parsed::Request(request) if buf.len() >= request.len + request.body => {
                        break request;
                    }
                    Parsed::Request(request) => {
                        if request.expect_continue {
                            wire.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                            if wire.flush().await.is_err() {
                                return Served::Closed;
                            }
                        }
                        awaiting_body = Some(request);
                    }
                    // RFC 9112 2.3: a higher 1.x minor version is served as 1.1.
                    Parsed::NewerMinor if as_http_1_1(&mut buf) => continue,
                    Parsed::Partial if buf.len() < proxy.max_header_bytes => {}
                    // hyper answers what it cannot accept either (400, 431) and serves the rest.
                    Parsed::Partial | Parsed::NewerMinor | Parsed::Other => {
                        return Served::Handoff(wire.stream, buf);
                    }
                }
            } else if buf.is_empty() && wire.finishing {
                return Served::Closed;
            }
            buf.reserve(READ_CHUNK);
            let read = std::future::poll_fn(|cx| {
                if wire.poll_close(cx).is_ready() {
                    return Poll::Ready(Wait::Close);
                }
                if head_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wait::TimedOut);
                }
                if wire.finishing && buf.is_empty() {
                    return Poll::Ready(Wait::Close);
                }
                poll_read(&wire.stream, &mut buf, cx).map(Wait::Read)
            })
            .await;
            match read {
                Wait::Read(Ok(n)) if n > 0 => {}
                // A slow body is not cut off: nothing of the request is consumed yet, and
                // hyper streams it to the instance as it comes.
                Wait::TimedOut if awaiting_body.is_some() => {
                    return Served::Handoff(wire.stream, buf);
                }
                // Closed by the client, broken, timed out or shut down.
                _ => return Served::Closed,
            }
        };
        let Request {
            len,
            body,
            method,
            target,
            headers,
            close,
            http10,
            expect_continue: _,
        } = request;
        let sent = {
            let head = &buf[..len];
            let body = match body {
                0 => RequestBody::Empty,
                n => RequestBody::Inline(Bytes::copy_from_slice(&buf[len..len + n])),
            };
            answer_timer
                .as_mut()
                .reset(Instant::now() + proxy.request_timeout);
            let answer = forward(
                conn,
                head,
                &method,
                target,
                &headers,
                body,
                answer_timer.as_mut(),
            );
            tokio::pin!(answer);
            let Some(answered) = wire.until(answer).await else {
                return Served::Closed;
            };
            let close = close || wire.finishing;
            match answered {
                Ok(answer) => wire.send_response(answer, &method, close, http10).await,
                Err(error) => {
                    tracing::debug!(app = %proxy.app, %error, "request not proxied");
                    let close = close || error.closes();
                    encode_error(&error, &method, close, http10, &mut wire.out);
                    wire.flush().await.map(|()| close)
                }
            }
        };
        match sent {
            Ok(false) if !wire.finishing => {}
            _ => {
                let _ = wire.stream.shutdown().await;
                return Served::Closed;
            }
        }
        buf.advance(len + body);
    }
}

/// What ended a wait for more of a request.
enum Wait {
    Read(io::Result<usize>),
    TimedOut,
    Close,
}

fn poll_read(
    stream: &TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_read_ready(cx))?;
        match stream.try_read_buf(buf) {
            // The readiness was stale: wait for the next.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

/// The client side of a connection: its stream, the bytes waiting to go out, and the
/// listener's signals, which every wait watches.
struct Wire<'a, 'w> {
    stream: TcpStream,
    out: BytesMut,
    watch: &'a mut Watch<'w>,
    /// The listener is shutting down: close after the response in flight.
    finishing: bool,
    /// The client sent bytes while the proxy waited on the instance (see
    /// [`Wire::poll_client_gone`]).
    client_sent_more: bool,
}

impl Wire<'_, '_> {
    /// Ready when the listener says to close now; notes a request to finish in between.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Poll::Ready(stage) = self.watch.poll(cx) {
            if stage == Stage::Close {
                return Poll::Ready(());
            }
            self.finishing = true;
        }
        Poll::Pending
    }

    /// Waits for `fut` (the instance's answer), or `None` if the listener says to close now or
    /// the client has gone.
    async fn until<F: Future>(&mut self, mut fut: Pin<&mut F>) -> Option<F::Output> {
        self.client_sent_more = false;
        std::future::poll_fn(|cx| {
            if self.poll_close(cx).is_ready() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(output) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            self.poll_client_gone(cx).map(|()| None)
        })
        .await
    }

    /// Ready once the client has closed its side of the connection (or reset it) while the
    /// proxy waits on the instance: the request is abandoned then, as hyper's server side and
    /// nginx do, so that it holds neither the instance's in-flight count (which drains and
    /// shutdowns wait for) nor a socket in CLOSE-WAIT. Bytes the client sends meanwhile (a
    /// pipelined request) are left unread and end the watch for this exchange: a close after
    /// them shows as a failed write.
    fn poll_client_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.client_sent_more {
            return Poll::Pending;
        }
        let mut byte = [MaybeUninit::uninit(); 1];
        let mut probe = ReadBuf::uninit(&mut byte);
        match self.stream.poll_peek(cx, &mut probe) {
            Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(()),
            Poll::Ready(Ok(_)) => {
                self.client_sent_more = true;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes what `out` holds.
    async fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        let result = std::future::poll_fn(|cx| {
            if self.poll_close(cx).is_ready() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
            }
            poll_write_all(&self.stream, &self.out, &mut written, cx)
        })
        .await;
        self.out.clear();
        result
    }

    /// Writes `data` after what `out` holds, without copying it there.
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.flush().await?;
        let mut written = 0;
        std::future::poll_fn(|cx| {
            if self.poll_close(cx).is_ready() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
            }
            poll_write_all(&self.stream, data, &mut written, cx)
        })
        .await
    }
}

fn poll_write_all(
    stream: &TcpStream,
    bytes: &[u8],
    written: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while *written < bytes.len() {
        ready!(stream.poll_write_ready(cx))?;
        match stream.try_write(&bytes[*written..]) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// A request head parsed off the front of the read buffer. Ranges index into the buffer.
struct Request {
    /// The head's length.
    len: usize,
    /// The body's length (`Content-Length`; 0: none).
    body: usize,
    method: Method,
    target: (usize, usize),
    headers: Vec<Header>,
    /// The client asked to close after this request.
    close: bool,
    /// An HTTP/1.0 client: no chunked coding towards it, and keep-alive said explicitly.
    http10: bool,
    /// The client waits for a `100 Continue` before it sends the body.
    expect_continue: bool,
}

/// One request header, by where its name and value lie, and what the proxy makes of it.
#[derive(Clone, Copy)]
struct Header {
    name: (usize, usize),
    value: (usize, usize),
    role: Role,
}

/// What a header means to the proxy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Passed on as it is.
    Pass,
    /// Belongs to this connection (RFC 9110 7.6.1) or is the framing, which the proxy states
    /// itself: not passed on.
    Drop,
    Host,
    ForwardedFor,
    /// Replaced by the proxy's.
    ForwardedProto,
    /// Replaced by the proxy's when the request has a host, else dropped.
    ForwardedHost,
    RequestId,
}

enum Parsed {
    Request(Request),
    Partial,
    /// The request line names a version httparse does not know (perhaps `HTTP/1.2`).
    NewerMinor,
    /// Not a request this server takes: hyper's.
    Other,
}

fn parse(buf: &[u8], max_len: usize) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) if len <= max_len => len,
        Err(httparse::Error::Version) => return Parsed::NewerMinor,
        // Over the limit (hyper answers 431), malformed (400): hyper's.
        Ok(httparse::Status::Complete(_)) | Err(_) => return Parsed::Other,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
    };
    let (Some(method), Some(path), Some(version @ (0 | 1))) = (req.method, req.path, req.version)
    else {
        return Parsed::Other;
    };
    let http10 = version == 0;
    // Origin-form targets hyper would pass on unchanged only; CONNECT, `*`, absolute-form,
    // fragments and characters hyper refuses are hyper's.
    if !is_plain_target(path.as_bytes()) || method == "CONNECT" {
        return Parsed::Other;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start, start + s.len())
    };
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;
    let mut hosts = 0;
    let mut lengths = 0;
    let mut body = 0;
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let role = match role(name) {
            Some(role) => role,
            None => match name.len() {
                // A body to stream, an expectation or a protocol switch: hyper's.
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    // One length, small enough to read whole; the framing sent is the
                    // proxy's own, from the bytes it read.
                    match parse_length(h.value.trim_ascii()) {
                        Some(n) if lengths == 0 && n <= MAX_INLINE_BODY as u64 => {
                            body = n as usize;
                            lengths += 1;
                        }
                        _ => return Parsed::Other,
                    }
                    Role::Drop
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => return Parsed::Other,
                // The proxy reads the body whole itself, so it answers the expectation
                // (RFC 9110 10.1.1) and the instance never sees it; HTTP/1.0 knows no 100,
                // and other expectations get hyper's 417.
                6 if name.eq_ignore_ascii_case(b"expect") => {
                    if http10 || !h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                        return Parsed::Other;
                    }
                    expect_continue = true;
                    Role::Drop
                }
                7 if name.eq_ignore_ascii_case(b"upgrade") => return Parsed::Other,
                10 if name.eq_ignore_ascii_case(b"connection") => {
                    for token in h.value.split(|b| *b == b',') {
                        let token = token.trim_ascii();
                        if token.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            keep_alive = true;
                        } else if !token.is_empty() {
                            // It names headers of its own as hop-by-hop: hyper's path strips them.
                            return Parsed::Other;
                        }
                    }
                    Role::Drop
                }
                // The other headers that belong to this connection (RFC 9110 7.6.1).
                _ if is_hop_by_hop(name) => Role::Drop,
                _ => Role::Pass,
            },
        };
        if role == Role::Host {
            hosts += 1;
            // hyper's path answers an invalid one (400).
            if !is_valid_host(h.value) {
                return Parsed::Other;
            }
        }
        headers.push(Header {
            name: at(name),
            value: at(h.value),
            role,
        });
    }
    // Two Hosts, or none in HTTP/1.1 (RFC 9112 3.2): hyper's path answers 400.
    if hosts > 1 || (hosts == 0 && !http10) {
        return Parsed::Other;
    }
    Parsed::Request(Request {
        len,
        body,
        method,
        target: at(path.as_bytes()),
        headers,
        // HTTP/1.0 closes unless the client asked to keep the connection (RFC 9112 9.3).
        close: close || (http10 && !keep_alive),
        http10,
        expect_continue,
    })
}

/// Rewrites a request line ending in `HTTP/1.2` to `HTTP/1.9` as `HTTP/1.1` in place, which is
/// how RFC 9112 2.3 says to treat it; `false` if the line is not one of those.
fn as_http_1_1(buf: &mut [u8]) -> bool {
    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
        return false;
    };
    let line = &mut buf[..end];
    let line = match line.split_last_mut() {
        Some((b'\r', rest)) => rest,
        _ => line,
    };
    match line.len().checked_sub(9).map(|at| line.split_at_mut(at)) {
        Some((
            _,
            [
                b' ',
                b'H',
                b'T',
                b'T',
                b'P',
                b'/',
                b'1',
                b'.',
                minor @ b'2'..=b'9',
            ],
        )) => {
            *minor = b'1';
            true
        }
        _ => false,
    }
}

/// Whether `target` is an origin-form path and query with only the characters `http::Uri`
/// accepts there (the parity hyper's path has: it answers 400 to the others) and no fragment.
fn is_plain_target(target: &[u8]) -> bool {
    let Some((&b'/', rest)) = target.split_first() else {
        return false;
    };
    let (path, query) = match rest.iter().position(|b| *b == b'?') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let path_ok =
        |b: &u8| matches!(b, 0x21 | 0x22 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7E);
    let query_ok = |b: &u8| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E);
    path.iter().all(path_ok) && query.iter().all(query_ok)
}

/// The role of a header the proxy rewrites; `None` for the ones [`parse`] looks at itself
/// and for all others.
fn role(name: &[u8]) -> Option<Role> {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    Some(match name.len() {
        4 if is("host") => Role::Host,
        // httpoxy; a client's claims the proxy cannot check, replaced by its own.
        5 if is("proxy") => Role::Drop,
        9 if is("forwarded") || is("x-real-ip") => Role::Drop,
        12 if is("x-request-id") => Role::RequestId,
        15 if is("x-forwarded-for") => Role::ForwardedFor,
        16 if is("x-forwarded-host") => Role::ForwardedHost,
        17 if is("x-forwarded-proto") => Role::ForwardedProto,
        _ => return None,
    })
}

/// What came back for a request: the response head and its body, the in-flight count, and
/// a cookie to add.
struct Answer {
    incoming: upstream::Incoming,
    guard: InFlight,
    set_cookie: Option<HeaderValue>,
}

async fn forward(
    conn: &ClientConn,
    head: &[u8],
    method: &Method,
    target: (usize, usize),
    headers: &[Header],
    mut body: RequestBody,
    timeout: Pin<&mut Sleep>,
) -> Result<Answer, ProxyError> {
    let proxy = &conn.proxy;
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
    let Some(affinity) = &route.affinity else {
        let (incoming, guard) = exchange(
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
                dst.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
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
        .await?;
        return Ok(Answer {
            incoming,
            guard,
            set_cookie: None,
        });
    };
    // A canary with affinity: its rules read the headers as the backend will see them.
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
    add_forwarded(&mut map, &conn.client_ip, host.clone());
    let decision = affinity.decide(&map, || fresh_key(&mut rng));
    let prefer = decision
        .target
        .as_ref()
        .map(|t| (affinity.canary.as_str(), t));
    let target =
        std::str::from_utf8(text(target)).map_err(|_| ProxyError::Client("invalid target"))?;
    let (incoming, guard) = exchange(
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
    .await?;
    Ok(Answer {
        incoming,
        guard,
        set_cookie: decision.set_cookie,
    })
}

fn put_header(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

impl Wire<'_, '_> {
    /// Writes the response head and streams the body, re-framed for this connection: its
    /// length if known, else chunked (an HTTP/1.0 client: the end of the connection). Returns
    /// whether the connection must close after it.
    async fn send_response(
        &mut self,
        answer: Answer,
        method: &Method,
        close: bool,
        http10: bool,
    ) -> io::Result<bool> {
        let Answer {
            incoming: upstream::Incoming { head, mut body },
            guard,
            set_cookie,
        } = answer;
        guard.metrics().status(head.status);
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            // Upgrades are hyper's; a backend switching unasked is broken.
            let error = ProxyError::Internal(format!(
                "backend {} switched protocols unasked",
                guard.backend().addr()
            ));
            encode_error(&error, method, close, http10, &mut self.out);
            return self.flush().await.map(|()| close);
        }
        let mut guard = Some(guard);
        // No body by the rules of HTTP (HEAD, 204, 304).
        let bodiless = *method == Method::HEAD
            || head.status == StatusCode::NO_CONTENT
            || head.status == StatusCode::NOT_MODIFIED;
        let length = body.exact_size();
        let unknown = !bodiless && length.is_none();
        let chunked = unknown && !http10;
        // HTTP/1.0 has no chunked coding: the body ends with the connection.
        let close = close || (unknown && http10);
        encode_status(head.status, &mut self.out);
        let named = named_in_connection(&head);
        let mut date = false;
        for (name, value) in head.headers() {
            let skip = is_hop_by_hop(name)
                || named.iter().any(|n| name.eq_ignore_ascii_case(n))
                || (name.eq_ignore_ascii_case(b"content-length")
                    // The proxy states the length of a body it sends. Without one, the
                    // backend's describes the representation (HEAD, 304) and goes on as it
                    // is, unless a transfer coding voids it or it is a 204 (which must not
                    // have one, RFC 9110 8.6).
                    && (!bodiless
                        || head.is_transfer_coded()
                        || head.status == StatusCode::NO_CONTENT));
            if !skip {
                date |= name.eq_ignore_ascii_case(b"date");
                put_header(&mut self.out, name, value);
            }
        }
        if !date {
            crate::date::with(|now| put_header(&mut self.out, b"date", now));
        }
        if let Some(cookie) = &set_cookie {
            put_header(&mut self.out, b"set-cookie", cookie.as_bytes());
        }
        if chunked {
            self.out.extend_from_slice(b"transfer-encoding: ");
            if let Some(codings) = head.other_codings() {
                self.out.extend_from_slice(&codings);
                self.out.extend_from_slice(b", ");
            }
            self.out.extend_from_slice(b"chunked\r\n");
        } else if let (false, Some(length)) = (bodiless, length) {
            put_header(
                &mut self.out,
                b"content-length",
                itoa::Buffer::new().format(length).as_bytes(),
            );
        }
        connection_header(close, http10, &mut self.out);
        self.out.extend_from_slice(b"\r\n");
        drop(named);
        drop(head);
        if bodiless {
            finish(&mut body, &mut guard);
            return self.flush().await.map(|()| close);
        }
        loop {
            // What is ready now goes out with what is already waiting; only then wait.
            let mut next = std::future::poll_fn(|cx| Poll::Ready(body.poll_data(cx))).await;
            if next.is_pending() {
                self.flush().await?;
                let waited = std::future::poll_fn(|cx| {
                    if self.poll_close(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    if let Poll::Ready(data) = body.poll_data(cx) {
                        return Poll::Ready(Some(data));
                    }
                    self.poll_client_gone(cx).map(|()| None)
                })
                .await;
                let Some(waited) = waited else {
                    return Err(io::ErrorKind::ConnectionAborted.into());
                };
                next = Poll::Ready(waited);
            }
            let Poll::Ready(next) = next else {
                unreachable!("waited for above")
            };
            match next {
                Some(Ok(data)) => {
                    if chunked {
                        chunked::encode_chunk_header(data.len(), &mut self.out);
                    }
                    if data.len() <= COPY_LIMIT {
                        self.out.extend_from_slice(&data);
                    } else {
                        self.write(&data).await?;
                    }
                    if chunked {
                        self.out.extend_from_slice(chunked::CRLF);
                    }
                    // A body that keeps arriving is passed on as it comes, not gathered.
                    if self.out.len() >= COPY_LIMIT {
                        self.flush().await?;
                    }
                }
                Some(Err(error)) => {
                    // The client cannot be told but by the end of its connection after what
                    // did arrive (no last chunk, or fewer bytes than the length said).
                    guard.take();
                    let _ = self.flush().await;
                    return Err(error);
                }
                None => {
                    finish(&mut body, &mut guard);
                    if chunked {
                        self.out.extend_from_slice(chunked::LAST_CHUNK);
                    }
                    return self.flush().await.map(|()| close);
                }
            }
        }
    }
}

fn encode_status(status: StatusCode, out: &mut BytesMut) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The exchange is over: the backend connection goes back to the pool if it may carry
/// another, and the in-flight count is released (before the last bytes reach the client, as
/// with hyper's path, so that a drain does not wait on a slow client).
fn finish(body: &mut UpstreamBody, guard: &mut Option<InFlight>) {
    if let Some(guard) = guard.take()
        && let Some(conn) = body.take_reusable()
    {
        guard.backend().put_conn(conn);
    }
}

/// Headers a response's `Connection` names as hop-by-hop, besides the standard ones.
fn named_in_connection(head: &upstream::Head) -> Vec<&[u8]> {
    head.headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, value)| value.split(|b| *b == b',').map(<[u8]>::trim_ascii))
        .filter(|token| {
            !(token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive"))
        })
        .collect()
}

/// A response of the proxy's own: status, a short text, and the head alone for HEAD.
fn encode_error(
    error: &ProxyError,
    method: &Method,
    close: bool,
    http10: bool,
    out: &mut BytesMut,
) {
    let body = error.body();
    encode_status(error.status(), out);
    out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
    put_header(
        out,
        b"content-length",
        itoa::Buffer::new().format(body.len()).as_bytes(),
    );
    crate::date::with(|now| put_header(out, b"date", now));
    connection_header(close, http10, out);
    out.extend_from_slice(b"\r\n");
    if *method != Method::HEAD {
        out.extend_from_slice(body);
    }
}

/// Says what happens to the connection after this response: `close`, or for an HTTP/1.0
/// client that asked to keep it, `keep-alive` (without which it would assume a close).
fn connection_header(close: bool, http10: bool, out: &mut BytesMut) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
}
