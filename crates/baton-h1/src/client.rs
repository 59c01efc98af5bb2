//! The proxy's own HTTP/1.1 client to instances: writes the request on a pooled connection,
//! reads the response head, and hands back a body that reads the rest straight from the
//! connection, in the client connection's own task.
//!
//! A general-purpose client (hyper's) runs each backend connection as a task of its own and
//! passes every request, response and body chunk through channels between the two tasks; for a
//! proxy that already owns the connection from checkout to return, that is work per request
//! with nothing gained. The protocol here is deliberately the plain subset a backend speaks to
//! its proxy: no pipelining, bodies framed by `Content-Length`, chunked coding or the end of the
//! connection (RFC 9112 6.3), informational responses skipped, `101` handed to a tunnel.

use std::io;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::body::{READ_CHUNK, RequestBody, UpstreamBody};
use crate::chunked;
use crate::error::UpstreamError;
use crate::pool::{Conn, Io, Pool};
use crate::response::{Head, parse_head};

/// Largest response head accepted from a backend.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The request to send: the proxy has already rewritten its headers.
pub struct Outgoing<'a> {
    /// The method.
    pub method: &'a Method,
    /// Path and query, as sent on the request line.
    pub target: &'a str,
    /// The headers, the framing ones left out (the framing sent is the body's own).
    pub headers: &'a HeaderMap,
}

/// A response head from the backend, with the connection positioned at its body.
pub struct Incoming {
    /// The final response head.
    pub head: Head,
    /// The body, read from the connection as it is taken.
    pub body: UpstreamBody,
}

/// Sends `request` with `body` on a connection from `pool` and reads the response head.
///
/// A pooled connection the backend closed while it was idle is detected and replaced: before
/// anything is written by the pool, and after, for a request without a body whose method is
/// idempotent, when the connection ends before the first byte of a response (the race with the
/// backend's own keep-alive timeout); on a pool with a [`crate::pool::Dial`], once also on a
/// fresh connection (the tunnel it went through may have ended). Any error with
/// [`UpstreamError::is_not_sent`] left the body untouched.
pub async fn send(
    pool: &Pool,
    request: &Outgoing<'_>,
    body: &mut RequestBody,
) -> Result<Incoming, UpstreamError> {
    let framing = BodyFraming::of(body);
    let head = encode_head(request, framing);
    send_encoded(pool, &head, request.method, framing, body).await
}

/// [`send`] with the request head already encoded, its framing header stated by
/// [`BodyFraming::write_header`] for `body`.
pub async fn send_encoded(
    pool: &Pool,
    head: &[u8],
    method: &Method,
    body_framing: BodyFraming,
    body: &mut RequestBody,
) -> Result<Incoming, UpstreamError> {
    let replayable = body_framing == BodyFraming::None && is_idempotent(method);
    // A dialed connection (another host's tunnel) can also end because the tunnel did (its
    // agent restarted or died): one replay on a fresh one, which the dial refuses at once if
    // the instance or its tunnel is gone (a connect error, retried on another instance).
    let mut fresh_replay = pool.is_dialed();
    loop {
        let mut conn = pool.checkout().await?;
        let Io::Whole(stream) = &mut conn.io else {
            unreachable!("the pool hands out whole connections");
        };
        let written = match &*body {
            RequestBody::Inline(bytes) => write_inline(stream, head, bytes).await,
            _ => stream.write_all(head).await.map(|()| None),
        };
        // Nothing of the request went out: a reused connection the instance had closed is
        // replaced; a fresh one is refused.
        let rest = match written {
            Ok(rest) => rest,
            Err(_) if conn.reused => continue,
            Err(error) => return Err(UpstreamError::Closed(error)),
        };
        let pending = match rest {
            Some(rest) => Some((
                BodyFraming::Length(rest.len() as u64),
                RequestBody::Inline(rest),
            )),
            None if body_framing != BodyFraming::None
                && !matches!(body, RequestBody::Inline(_)) =>
            {
                Some((body_framing, std::mem::replace(body, RequestBody::Empty)))
            }
            None => None,
        };
        if let Some((framing, mut body)) = pending {
            // The body goes out from a task of its own while the response is read here: the
            // instance may answer early (413, 401) or stream its answer as it reads.
            conn = conn.split(|mut write| {
                tokio::spawn(async move {
                    write_body(&mut write, &mut body, framing).await?;
                    Ok(write)
                })
            });
        }
        match read_head(&mut conn).await {
            Ok(head) => return finish_head(conn, head, method),
            Err(ReadHead::EndedBeforeResponse(_)) if conn.reused && replayable => continue,
            Err(ReadHead::EndedBeforeResponse(_)) if fresh_replay && replayable => {
                fresh_replay = false;
                continue;
            }
            Err(ReadHead::EndedBeforeResponse(error)) => {
                return Err(UpstreamError::Exchange(error));
            }
            Err(ReadHead::Failed(error)) => return Err(error),
        }
    }
}

/// Writes the head and as much of a body held whole as the socket takes in one write, and
/// returns what is left of them (for the writer task); an error only if nothing went out.
async fn write_inline(
    stream: &mut tokio::net::TcpStream,
    head: &[u8],
    body: &Bytes,
) -> io::Result<Option<Bytes>> {
    let n = stream
        .write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(body)])
        .await?;
    Ok(match n.checked_sub(head.len()) {
        None if n == 0 => return Err(io::ErrorKind::WriteZero.into()),
        // Part of the head went out: the rest of it, then the body (rare; copied).
        None => {
            let mut rest = BytesMut::with_capacity(head.len() - n + body.len());
            rest.extend_from_slice(&head[n..]);
            rest.extend_from_slice(body);
            Some(rest.freeze())
        }
        Some(sent) if sent == body.len() => None,
        Some(sent) => Some(body.slice(sent..)),
    })
}

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length` of the body's known size.
    Length(u64),
    /// Chunked coding: a body of unknown size.
    Chunked,
}

impl BodyFraming {
    /// The framing `body` needs.
    pub fn of(body: &RequestBody) -> BodyFraming {
        use http_body::Body as _;
        if body.is_end_stream() {
            BodyFraming::None
        } else if let Some(length) = body.size_hint().exact() {
            BodyFraming::Length(length)
        } else {
            // A request body of unknown size: the client sent it chunked (hyper decoded it).
            BodyFraming::Chunked
        }
    }

    /// The framing header line for a request with `method`. The framing is Baton's to state,
    /// from the body it will send, never the client's: a length the body does not match would
    /// let its bytes be read as another request.
    pub fn write_header(self, method: &Method, dst: &mut BytesMut) {
        match self {
            // A bodiless POST, PUT or PATCH says so, as clients do.
            BodyFraming::None if matches!(*method, Method::POST | Method::PUT | Method::PATCH) => {
                dst.extend_from_slice(b"content-length: 0\r\n");
            }
            BodyFraming::None => {}
            BodyFraming::Length(length) => {
                dst.extend_from_slice(b"content-length: ");
                dst.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
                dst.extend_from_slice(b"\r\n");
            }
            BodyFraming::Chunked => dst.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request line and headers, with the framing header the body needs.
pub fn encode_head(request: &Outgoing<'_>, framing: BodyFraming) -> Bytes {
    let headers = request.headers;
    let size: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut dst = BytesMut::with_capacity(request.target.len() + size + 64);
    dst.extend_from_slice(request.method.as_str().as_bytes());
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(request.target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        // The framing header is written below (see BodyFraming::write_header).
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    framing.write_header(request.method, &mut dst);
    dst.extend_from_slice(b"\r\n");
    dst.freeze()
}

/// Streams the client's body to the backend.
async fn write_body<W: AsyncWrite + Unpin>(
    write: &mut W,
    body: &mut RequestBody,
    framing: BodyFraming,
) -> Result<(), UpstreamError> {
    let exchange = UpstreamError::Exchange;
    // A body that ends short of the length it stated (an HTTP/2 stream that ends early, say),
    // or runs past it, must not leave the connection as if the request were complete: the
    // instance would read the next request's bytes as the rest of this body.
    let mut sent: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| UpstreamError::ClientBody(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            // Trailers are not forwarded.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match framing {
            BodyFraming::Length(length) if sent > length => {
                return Err(UpstreamError::ClientBody(format!(
                    "the body runs past its length of {length} bytes"
                )));
            }
            BodyFraming::Chunked => {
                let mut size = BytesMut::with_capacity(20);
                chunked::encode_chunk_header(data.len(), &mut size);
                write.write_all(&size).await.map_err(exchange)?;
                write.write_all(&data).await.map_err(exchange)?;
                write.write_all(chunked::CRLF).await.map_err(exchange)?;
            }
            _ => write.write_all(&data).await.map_err(exchange)?,
        }
    }
    match framing {
        BodyFraming::Length(length) if sent != length => Err(UpstreamError::ClientBody(format!(
            "the body ended after {sent} of its {length} bytes"
        ))),
        BodyFraming::Chunked => write.write_all(chunked::LAST_CHUNK).await.map_err(exchange),
        _ => Ok(()),
    }
}

enum ReadHead {
    /// The connection ended (or broke) before a single byte of a response.
    EndedBeforeResponse(io::Error),
    Failed(UpstreamError),
}

/// Reads up to the end of the final response head (informational ones are skipped).
async fn read_head(conn: &mut Conn) -> Result<Head, ReadHead> {
    let mut any_byte = !conn.read_buf.is_empty();
    loop {
        if let Some(head) = parse_head(&mut conn.read_buf).map_err(ReadHead::Failed)? {
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            return Ok(head);
        }
        if conn.read_buf.len() >= MAX_HEAD_BYTES {
            return Err(ReadHead::Failed(UpstreamError::Protocol(format!(
                "response head larger than {MAX_HEAD_BYTES} bytes"
            ))));
        }
        conn.read_buf.reserve(READ_CHUNK);
        let read = std::future::poll_fn(|cx| {
            if let Poll::Ready(error) = conn.poll_client_body_failed(cx) {
                return Poll::Ready(Err(ReadHead::Failed(error)));
            }
            conn.poll_read_more(cx).map(Ok)
        })
        .await?;
        match read {
            Ok(0) if !any_byte => {
                return Err(ReadHead::EndedBeforeResponse(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(0) => {
                return Err(ReadHead::Failed(UpstreamError::Exchange(
                    io::ErrorKind::UnexpectedEof.into(),
                )));
            }
            Ok(_) => any_byte = true,
            Err(error) if !any_byte => return Err(ReadHead::EndedBeforeResponse(error)),
            Err(error) => return Err(ReadHead::Failed(UpstreamError::Exchange(error))),
        }
    }
}

/// Decides how the body is delimited and whether the connection may carry another exchange.
fn finish_head(conn: Conn, mut head: Head, method: &Method) -> Result<Incoming, UpstreamError> {
    let (framing, keep_alive) = head.framing(method)?;
    Ok(Incoming {
        head,
        body: UpstreamBody::new(conn, framing, keep_alive),
    })
}

#[cfg(test)]
mod tests;
