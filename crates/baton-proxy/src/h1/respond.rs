//! The answer Baton's own HTTP/1.1 server writes back: the backend's response head re-framed
//! for the client's connection (its length if known, else chunked; HTTP/1.0: the end of the
//! connection), the body as it arrives, and the proxy's own error answers.

use std::io;
use std::task::Poll;

use baton_h1::response::{connection_header, encode_status, put_header};
use baton_h1::rules::is_hop_by_hop;
use baton_h1::{UpstreamBody, chunked, client as upstream};
use bytes::BytesMut;
use http::{Method, StatusCode};

use super::COPY_LIMIT;
use super::request::Answer;
use super::wire::Wire;
use crate::backend::InFlight;
use crate::error::ProxyError;

impl<S: super::wire::ClientIo> Wire<'_, '_, S> {
    /// Writes the response head and streams the body, re-framed for this connection: its
    /// length if known, else chunked (an HTTP/1.0 client: the end of the connection). Returns
    /// whether the connection must close after it.
    pub(super) async fn send_response(
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
        let named = head.named_in_connection();
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

/// A response of the proxy's own: status, a short text, and the head alone for HEAD.
pub(super) fn encode_error(
    error: &ProxyError,
    method: &Method,
    close: bool,
    http10: bool,
    out: &mut BytesMut,
) {
    let body = error.body();
    encode_status(error.status(), out);
    put_header(out, b"content-type", error.content_type().as_bytes());
    if let Some(retry_after) = error.retry_after() {
        put_header(out, b"retry-after", retry_after.as_bytes());
    }
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
