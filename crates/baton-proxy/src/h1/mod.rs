//! Baton's own HTTP/1.x server side, for the requests a proxy sees most: HTTP/1.1 (or 1.0)
//! requests without a body or with a small one (`Content-Length` up to 64 KiB).
//!
//! Such a request is parsed by `baton_h1::request` and its head written to the backend
//! ([`request`]) straight from the client's bytes (hop-by-hop headers left out, the forwarding headers added); a body is
//! read whole first and goes out with the head in one write, as nginx buffers request bodies.
//! The backend's response head comes back the same way: no header map is built on either
//! side, which is how nginx and HAProxy forward a request. Everything else (a chunked or
//! larger body, an upgrade, h2c, a head the parser rejects or that is too large) is handed
//! to hyper for the rest of the connection, with the bytes already read: hyper then serves
//! it exactly as if it had read them itself, error responses included ([`crate::listener`]).
//!
//! A request in a canary split with affinity goes through the header map after all
//! (`baton_h1::client::encode_head`): its targeting rules read headers by name. The answer is
//! written back by [`respond`], on the client side of the connection ([`wire`]).

use std::future::Future;
use std::io;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use baton_h1::RequestBody;
use baton_h1::request::{Parsed, RequestHead, as_http_1_1, parse};

use crate::forward::ClientConn;
use crate::signals::Watch;

pub(crate) use wire::ClientIo;

mod request;
mod respond;
mod wire;

use request::forward;
use respond::encode_error;
use wire::Wire;

/// Largest request body read whole before the request goes out (as nginx buffers request
/// bodies); a larger one is streamed by hyper.
const MAX_INLINE_BODY: usize = 64 * 1024;
/// Spare room made in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;
/// Body data up to this size is copied next to the head (one write); larger pieces are
/// written from where they are.
const COPY_LIMIT: usize = 16 * 1024;
/// How long a kept-alive connection that is idle when the listener shuts down may still send
/// its next request, which is answered with `Connection: close`. Closing it at once races
/// with a request the client is sending (it fails), and a connection just accepted has not
/// sent its first request yet: during a restart both are clients of the process that stops.
const FINISH_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// How a connection served here ended.
pub(crate) enum Served<S> {
    /// Closed (by either side, a timeout or the shutdown).
    Closed,
    /// hyper takes over: the stream, and the bytes read from it that no request consumed.
    Handoff(S, BytesMut),
}

/// Serves `stream` until it closes or a request needs hyper.
pub(crate) async fn serve<S: ClientIo>(
    stream: S,
    conn: &ClientConn,
    watch: &mut Watch<'_>,
) -> Served<S> {
    let proxy = &conn.proxy;
    let head_timeout = proxy.head_timeout;
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
    // Started when the listener says to finish while no request is in.
    let mut linger: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        head_timer.as_mut().reset(Instant::now() + head_timeout);
        // A request whose head is in and whose body is still arriving.
        let mut awaiting_body: Option<RequestHead> = None;
        let request = loop {
            if let Some(request) = awaiting_body.take_if(|r| buf.len() >= r.len + r.body) {
                break request;
            }
            if awaiting_body.is_none() && !buf.is_empty() {
                match parse(&buf, proxy.max_header_bytes, MAX_INLINE_BODY) {
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
                    let linger =
                        linger.get_or_insert_with(|| Box::pin(tokio::time::sleep(FINISH_LINGER)));
                    if linger.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wait::Close);
                    }
                }
                wire.stream.poll_read_buf(&mut buf, cx).map(Wait::Read)
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
        let RequestHead {
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
