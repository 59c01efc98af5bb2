//! The proxy's own HTTP/1.1 client to backends: writes the request on a pooled connection,
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
use std::mem::MaybeUninit;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Method, Response, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::body::RequestBody;
use crate::chunked::{self, ChunkedDecoder, Decoded};
use crate::error::UpstreamError;
use crate::pool::{Conn, Io, Pool};

/// Most headers a backend's response may have.
const MAX_HEADERS: usize = 128;
/// Largest response head accepted from a backend.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Spare room made in a connection's read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// The request to send: the proxy has already rewritten its headers.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a Method,
    /// Path and query, as sent on the request line.
    pub(crate) target: &'a str,
    pub(crate) headers: &'a HeaderMap,
}

/// A response head from the backend, with the connection positioned at its body.
pub(crate) struct Incoming {
    pub(crate) head: Head,
    pub(crate) body: UpstreamBody,
}

/// Sends `request` with `body` on a connection from `pool` and reads the response head.
///
/// A pooled connection the backend closed while it was idle is detected and replaced: before
/// anything is written by the pool, and after, for a request without a body whose method is
/// idempotent, when the connection ends before the first byte of a response (the race with the
/// backend's own keep-alive timeout). Any error with [`UpstreamError::is_not_sent`] left the
/// body untouched.
#[cfg(test)]
pub(crate) async fn send(
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
pub(crate) async fn send_encoded(
    pool: &Pool,
    head: &[u8],
    method: &Method,
    body_framing: BodyFraming,
    body: &mut RequestBody,
) -> Result<Incoming, UpstreamError> {
    let replayable = body_framing == BodyFraming::None && is_idempotent(method);
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
pub(crate) enum BodyFraming {
    None,
    /// `Content-Length` of the body's known size.
    Length(u64),
    Chunked,
}

impl BodyFraming {
    pub(crate) fn of(body: &RequestBody) -> BodyFraming {
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
    pub(crate) fn write_header(self, method: &Method, dst: &mut BytesMut) {
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
pub(crate) fn encode_head(request: &Outgoing<'_>, framing: BodyFraming) -> Bytes {
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

/// A response head as the backend sent it: its bytes, and where each header lies in them.
/// The proxy's HTTP/1.1 server writes the headers on from these bytes; a [`HeaderMap`] is
/// built only for the clients hyper serves ([`Head::into_parts`]).
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    bytes: Bytes,
    spans: Vec<Span>,
    /// The body is framed by a transfer coding, so any `Content-Length` is void (RFC 9112
    /// 6.3) and must not reach the client.
    transfer_coded: bool,
}

/// Where one header's name and value lie in the head.
#[derive(Debug, Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

impl Head {
    /// The headers, names as the backend spelled them, in order.
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|s| {
            (
                &self.bytes[s.name.0 as usize..s.name.1 as usize],
                &self.bytes[s.value.0 as usize..s.value.1 as usize],
            )
        })
    }

    /// The values of every header called `name` (lowercase).
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Whether a `Connection` header lists `token`.
    pub(crate) fn connection_has(&self, token: &str) -> bool {
        self.values("connection")
            .flat_map(|v| v.split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether the body is framed by a transfer coding (any `Content-Length` is then void).
    pub(crate) fn is_transfer_coded(&self) -> bool {
        self.transfer_coded
    }

    /// The transfer codings other than a final `chunked` (which the proxy decodes and the
    /// client connection's own framing redoes), as one list, if there are any: the body
    /// reaches the client still in them (a `gzip` transfer coding, say), so the client must
    /// be told.
    pub(crate) fn other_codings(&self) -> Option<Vec<u8>> {
        let mut codings: Vec<&[u8]> = self
            .values("transfer-encoding")
            .flat_map(|v| v.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
            .collect();
        if codings
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
        {
            codings.pop();
        }
        (!codings.is_empty()).then(|| codings.join(&b", "[..]))
    }

    /// The head as `http` parts, the headers' values sharing the head's bytes.
    pub(crate) fn into_parts(self) -> Result<Parts, UpstreamError> {
        // Room to spare: hyper reuses this map for the next request on the client connection,
        // which then gains the forwarding headers; without room, each request would regrow it.
        let mut headers = HeaderMap::with_capacity(self.spans.len() + 16);
        for span in &self.spans {
            let name = &self.bytes[span.name.0 as usize..span.name.1 as usize];
            if self.transfer_coded && name.eq_ignore_ascii_case(b"content-length") {
                continue;
            }
            let name = HeaderName::from_bytes(name)
                .map_err(|_| UpstreamError::Protocol("invalid header name in response".into()))?;
            let value = self
                .bytes
                .slice(span.value.0 as usize..span.value.1 as usize);
            let value = HeaderValue::from_maybe_shared(value)
                .map_err(|_| UpstreamError::Protocol("invalid header value in response".into()))?;
            headers.append(name, value);
        }
        let mut response = Response::new(());
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = headers;
        Ok(response.into_parts().0)
    }
}

/// Parses a complete response head off the front of `buf`, or `None` if it is not all there.
/// Nothing is copied: the head keeps the bytes it was read into.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, UpstreamError> {
    // Uninitialised: filling 128 empty headers on every parse cost more than the parse.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => {
            return Err(UpstreamError::Protocol(format!(
                "invalid response head: {error}"
            )));
        }
    };
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| UpstreamError::Protocol("invalid response status".into()))?;
    // Offsets fit in u32: the head is at most MAX_HEAD_BYTES.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start as u32, (start + s.len()) as u32)
    };
    let spans: Vec<Span> = response
        .headers
        .iter()
        .map(|h| Span {
            name: at(h.name.as_bytes()),
            value: at(h.value),
        })
        .collect();
    Ok(Some(Head {
        status,
        version,
        bytes: buf.split_to(len).freeze(),
        spans,
        transfer_coded: false,
    }))
}

/// Decides how the body is delimited and whether the connection may carry another exchange.
fn finish_head(conn: Conn, mut head: Head, method: &Method) -> Result<Incoming, UpstreamError> {
    // Chunked must be the last coding; anything else is read to the connection's end.
    // A Transfer-Encoding with no coding in it counts as one that is not chunked, as before:
    // its Content-Length is void all the same.
    let mut last_coding = None;
    let mut chunked = 0;
    for value in head.values("transfer-encoding") {
        last_coding = last_coding.or(Some(false));
        for coding in crate::validate::codings(std::iter::once(value)) {
            let is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            chunked += usize::from(is_chunked);
            last_coding = Some(is_chunked);
        }
    }
    // Chunked at most once and only last (RFC 9112 6.1, 7): anything else cannot be passed on
    // in a framing of the proxy's own without naming chunked twice.
    if chunked > 1 || (chunked == 1 && last_coding == Some(false)) {
        return Err(UpstreamError::Protocol(
            "response with chunked twice or not as its last transfer coding".into(),
        ));
    }
    head.transfer_coded = last_coding.is_some();
    let framing = if *method == Method::HEAD
        || head.status.is_informational()
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED
    {
        Framing::Length(0)
    } else if let Some(chunked) = last_coding {
        if chunked {
            Framing::Chunked(ChunkedDecoder::new())
        } else {
            Framing::Close
        }
    } else {
        match content_length(head.values("content-length"))? {
            Some(length) => Framing::Length(length),
            None => Framing::Close,
        }
    };
    let keep_alive = match head.version {
        Version::HTTP_10 => head.connection_has("keep-alive"),
        _ => !head.connection_has("close"),
    } && !matches!(framing, Framing::Close);
    Ok(Incoming {
        head,
        body: UpstreamBody {
            conn: Some(conn),
            framing,
            keep_alive,
        },
    })
}

/// The one length every `Content-Length` value states (RFC 9110 8.6: equal duplicates are
/// one), or `None` without any.
pub(crate) fn content_length<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<u64>, UpstreamError> {
    let mut length = None;
    for value in values {
        for part in value.split(|b| *b == b',') {
            let part = part.trim_ascii();
            let n = parse_length(part).ok_or_else(|| {
                UpstreamError::Protocol(format!(
                    "invalid content-length {:?}",
                    String::from_utf8_lossy(part)
                ))
            })?;
            if length.is_some_and(|l| l != n) {
                return Err(UpstreamError::Protocol(
                    "conflicting content-length values".into(),
                ));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// A decimal length: digits only, no sign, no overflow.
pub(crate) fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// How a response body is delimited.
#[derive(Debug)]
enum Framing {
    /// This many bytes are left (0: none, or all read).
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the backend closes the connection.
    Close,
}

/// A response body read from the backend's connection as the client takes it.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    /// `None` once the body has failed (the connection is then closed).
    conn: Option<Conn>,
    framing: Framing,
    /// The backend allows another exchange on the connection once this one is complete.
    keep_alive: bool,
}

impl UpstreamBody {
    /// The next piece of the body, `None` at its end.
    pub(crate) fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let result = ready!(self.poll_data_inner(cx));
        if let Some(Err(_)) = &result {
            // The connection is in an unknown state: close it.
            self.conn = None;
        }
        Poll::Ready(result)
    }

    fn poll_data_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            if self.is_end_stream() {
                return Poll::Ready(None);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.read_buf;
            match &mut self.framing {
                Framing::Length(left) => {
                    if !buf.is_empty() {
                        let n = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                        *left -= n as u64;
                        return Poll::Ready(Some(Ok(buf.split_to(n).freeze())));
                    }
                }
                Framing::Chunked(decoder) => match decoder.decode(buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(data))),
                    Ok(Decoded::Done) => return Poll::Ready(None),
                    Ok(Decoded::NeedMore) => {}
                    Err(error) => {
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            error,
                        ))));
                    }
                },
                Framing::Close => {
                    if !buf.is_empty() {
                        return Poll::Ready(Some(Ok(buf.split().freeze())));
                    }
                }
            }
            buf.reserve(READ_CHUNK);
            let n = ready!(conn.poll_read_more(cx))?;
            if n == 0 {
                return Poll::Ready(match self.framing {
                    Framing::Close => {
                        // The end of the connection is the end of the body.
                        self.conn = None;
                        None
                    }
                    _ => Some(Err(io::ErrorKind::UnexpectedEof.into())),
                });
            }
        }
    }

    /// Whether the whole body has been read (or there is none).
    pub(crate) fn is_end_stream(&self) -> bool {
        match &self.framing {
            Framing::Length(left) => *left == 0,
            Framing::Chunked(decoder) => decoder.is_done(),
            Framing::Close => self.conn.is_none(),
        }
    }

    /// The body's exact size when it is known.
    pub(crate) fn exact_size(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(left) => Some(left),
            _ => None,
        }
    }

    /// The connection, if the body has been read to its end and the connection may carry
    /// another exchange (the request body, if any, fully sent too).
    pub(crate) fn take_reusable(&mut self) -> Option<Conn> {
        if !self.keep_alive || !self.is_end_stream() {
            return None;
        }
        self.conn.take().and_then(Conn::into_reusable)
    }

    /// The connection and the bytes already read past the head, for a protocol switch.
    pub(crate) fn into_upgraded(mut self) -> Option<(tokio::net::TcpStream, Bytes)> {
        let conn = self.conn.take()?;
        let stream = conn.io.into_whole()?;
        Some((stream, conn.read_buf.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    /// A scripted backend: for each accepted connection, reads requests and answers each with
    /// the next canned response; sends every request it read (head and body bytes) to the test.
    /// A response of `None` closes the connection instead of answering; a response without
    /// a length (ending at the close) is followed by closing the connection.
    async fn backend(
        responses: Vec<Option<&'static [u8]>>,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut responses = responses.into_iter();
            while let Ok((mut stream, _)) = listener.accept().await {
                loop {
                    let Some(request) = read_request(&mut stream).await else {
                        break;
                    };
                    let _ = tx.send(request);
                    match responses.next() {
                        Some(Some(response)) => {
                            let head = String::from_utf8_lossy(response).to_lowercase();
                            let delimited = head.contains("content-length")
                                || head.contains("chunked")
                                || head.contains(" 204 ")
                                || head.contains(" 304 ");
                            if stream.write_all(response).await.is_err() || !delimited {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
            }
        });
        (addr, rx)
    }

    /// A request head, up to and including its blank line.
    async fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            got.push(byte[0]);
        }
        Some(got)
    }

    /// One request: its head, then a body framed by content-length or chunked.
    async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut got = read_request_head(stream).await?;
        let mut byte = [0u8; 1];
        let head = String::from_utf8_lossy(&got).to_lowercase();
        if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await.ok()?;
            got.extend(body);
        } else if head.contains("transfer-encoding: chunked") {
            while !got.ends_with(b"\r\n0\r\n\r\n") {
                if stream.read(&mut byte).await.ok()? == 0 {
                    return None;
                }
                got.push(byte[0]);
            }
        }
        Some(got)
    }

    fn pool(addr: SocketAddr) -> Arc<Pool> {
        Pool::new(addr, 0, Duration::from_secs(2), Duration::from_secs(60), 64)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    /// One exchange; the connection goes back to the pool if it may carry another, as the
    /// proxy's response body does.
    async fn exchange(
        pool: &Arc<Pool>,
        method: Method,
        body: &mut RequestBody,
    ) -> Result<(Parts, Vec<u8>, bool), UpstreamError> {
        let headers = headers(&[("host", "backend")]);
        let request = Outgoing {
            method: &method,
            target: "/path?q=1",
            headers: &headers,
        };
        let Incoming { head, mut body } = send(pool, &request, body).await?;
        let parts = head.into_parts()?;
        let mut data = Vec::new();
        while let Some(chunk) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
            data.extend_from_slice(&chunk.map_err(UpstreamError::Exchange)?);
        }
        let reusable = match body.take_reusable() {
            Some(conn) => {
                pool.put(conn);
                true
            }
            None => false,
        };
        Ok((parts, data, reusable))
    }

    #[tokio::test]
    async fn content_length_body_and_keep_alive() {
        let (addr, mut requests) = backend(vec![Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
        )])
        .await;
        let (parts, body, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(parts.status, 200);
        assert_eq!(body, b"hello");
        assert!(reusable);
        let x: Vec<_> = parts.headers.get_all("x-a").iter().collect();
        assert_eq!(x, ["1", "2"]);
        let request = String::from_utf8(requests.recv().await.unwrap()).unwrap();
        assert_eq!(request, "GET /path?q=1 HTTP/1.1\r\nhost: backend\r\n\r\n");
    }

    #[tokio::test]
    async fn a_response_trickling_in_byte_by_byte_is_read_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let responses: [&[u8]; 2] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Long: abcdefghij\r\n\r\nhello world",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ];
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            for response in responses {
                read_request(&mut stream).await.unwrap();
                for byte in response {
                    stream.write_all(&[*byte]).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
            // Keep the connection open until the client is done with it.
            let _ = read_request(&mut stream).await;
        });
        let pool = pool(addr);
        let (parts, body, reusable) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(
            (parts.status.as_u16(), body.as_slice(), reusable),
            (200, &b"hello world"[..], true)
        );
        assert_eq!(parts.headers["x-long"], "abcdefghij");
        let (parts, body, reusable) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(
            (parts.status.as_u16(), body.as_slice(), reusable),
            (201, &b"abcde"[..], true)
        );
    }

    #[tokio::test]
    async fn chunked_body_with_trailers_is_decoded() {
        let (addr, _requests) = backend(vec![Some(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n",
        )])
        .await;
        let (parts, body, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(body, b"hello world");
        assert!(!parts.headers.contains_key("content-length"));
        assert!(reusable);
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_the_close_and_the_connection_is_not_reused() {
        let (addr, _requests) =
            backend(vec![Some(b"HTTP/1.1 200 OK\r\n\r\nuntil close"), None]).await;
        let (_, body, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(body, b"until close");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn head_204_and_304_have_no_body_and_informational_responses_are_skipped() {
        let (addr, _requests) = backend(vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
            Some(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Some(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"),
            Some(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ])
        .await;
        let pool = pool(addr);
        let (parts, body, reusable) = exchange(&pool, Method::HEAD, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(
            (parts.status.as_u16(), body.len(), reusable),
            (200, 0, true)
        );
        for status in [204, 304] {
            let (parts, body, reusable) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
                .await
                .unwrap();
            assert_eq!(
                (parts.status.as_u16(), body.len(), reusable),
                (status, 0, true)
            );
        }
        let (parts, body, _) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!((parts.status.as_u16(), body.as_slice()), (200, &b"ok"[..]));
    }

    #[tokio::test]
    async fn connection_close_and_http_1_0_are_not_reused() {
        let (addr, _requests) = backend(vec![Some(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
        )])
        .await;
        let (_, _, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert!(!reusable);
        let (addr, _requests) =
            backend(vec![Some(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na")]).await;
        let (_, _, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert!(!reusable);
    }

    #[tokio::test]
    async fn bad_responses_are_protocol_errors() {
        for response in [
            &b"NOT HTTP\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            let (addr, _requests) = backend(vec![Some(response)]).await;
            let failed = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
                .await
                .unwrap_err();
            assert!(matches!(failed, UpstreamError::Protocol(_)), "{failed:?}");
        }
    }

    #[tokio::test]
    async fn a_response_head_over_the_limit_is_refused_without_growing_forever() {
        let mut head = b"HTTP/1.1 200 OK\r\nX-Filler: ".to_vec();
        head.resize(MAX_HEAD_BYTES + 100, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        let head: &'static [u8] = Box::leak(head.into_boxed_slice());
        let (addr, _requests) = backend(vec![Some(head)]).await;
        let failed = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap_err();
        assert!(
            matches!(&failed, UpstreamError::Protocol(m) if m.contains("larger than")),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn a_stale_pooled_connection_is_replaced_for_an_idempotent_request() {
        // The first connection answers once and then closes at the next request, as a backend
        // whose keep-alive timeout fired just as the request went out.
        let (addr, mut requests) = backend(vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
            None,
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"),
        ])
        .await;
        let pool = pool(addr);
        exchange(&pool, Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        let (_, body, _) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(body, b"b");
        for _ in 0..3 {
            requests.recv().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_stale_pooled_connection_fails_a_post_rather_than_sending_it_twice() {
        let (addr, _requests) = backend(vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
            None,
        ])
        .await;
        let pool = pool(addr);
        exchange(&pool, Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        let failed = exchange(&pool, Method::POST, &mut RequestBody::Empty)
            .await
            .unwrap_err();
        assert!(matches!(failed, UpstreamError::Exchange(_)), "{failed:?}");
    }

    /// A request body the test feeds piece by piece, of unknown size (sent chunked).
    fn fed_body() -> (
        http_body_util::channel::Sender<Bytes, std::io::Error>,
        RequestBody,
    ) {
        let (tx, body) = http_body_util::channel::Channel::new(4);
        (tx, RequestBody::Test(body))
    }

    /// Sends a POST of `body` to `target` on a connection from `pool`.
    async fn post(
        pool: &Pool,
        target: &str,
        body: &mut RequestBody,
    ) -> Result<Incoming, UpstreamError> {
        let headers = headers(&[("host", "backend")]);
        let request = Outgoing {
            method: &Method::POST,
            target,
            headers: &headers,
        };
        send(pool, &request, body).await
    }

    #[tokio::test]
    async fn an_early_answer_arrives_while_the_body_is_still_being_sent() {
        // The instance refuses the upload after the head, as a 413 or a 401 would.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request_head(&mut stream).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            // Keep the socket until the test ends: the proxy must not need the close.
            std::future::pending::<()>().await;
        });
        let pool = pool(addr);
        let (mut tx, mut body) = fed_body();
        tx.send_data(Bytes::from_static(b"part of a large upload"))
            .await
            .unwrap();
        // The body never ends (tx is kept): the answer must come anyway.
        let incoming =
            tokio::time::timeout(Duration::from_secs(20), post(&pool, "/upload", &mut body))
                .await
                .expect("the early answer is read while the body is unfinished")
                .unwrap();
        assert_eq!(incoming.head.status, 413);
        let mut response = incoming.body;
        assert!(response.is_end_stream());
        assert!(
            response.take_reusable().is_none(),
            "the body was not all sent"
        );
        drop(tx);
    }

    #[tokio::test]
    async fn a_failing_client_body_ends_the_exchange_at_once() {
        // An instance that waits for the whole body before it answers.
        let (addr, _requests) =
            backend(vec![Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]).await;
        let pool = pool(addr);
        let (mut tx, mut body) = fed_body();
        tx.send_data(Bytes::from_static(b"half")).await.unwrap();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.abort(std::io::Error::other("client went away"));
        });
        let failed =
            tokio::time::timeout(Duration::from_secs(20), post(&pool, "/upload", &mut body))
                .await
                .expect("no wait for an answer that cannot come")
                .err()
                .expect("the exchange fails");
        assert!(matches!(failed, UpstreamError::ClientBody(_)), "{failed:?}");
    }

    #[tokio::test]
    async fn an_instance_may_stream_its_answer_while_it_reads_the_body() {
        // An echo that answers each piece of the body as it arrives (full duplex).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request_head(&mut stream).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            // Re-frame whatever arrives (the chunked request, as raw bytes) as one chunk each.
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                let mut piece = BytesMut::new();
                chunked::encode_chunk_header(n, &mut piece);
                piece.extend_from_slice(&buf[..n]);
                piece.extend_from_slice(chunked::CRLF);
                stream.write_all(&piece).await.unwrap();
                if buf[..n].ends_with(chunked::LAST_CHUNK) {
                    break;
                }
            }
            stream.write_all(chunked::LAST_CHUNK).await.unwrap();
            std::future::pending::<()>().await;
        });
        let pool = pool(addr);
        let (mut tx, mut body) = fed_body();
        tx.send_data(Bytes::from_static(b"ping")).await.unwrap();
        let Incoming { mut body, .. } =
            tokio::time::timeout(Duration::from_secs(20), post(&pool, "/echo", &mut body))
                .await
                .expect("the head comes while the body is open")
                .unwrap();
        let mut echoed = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&echoed).contains("ping") {
            let piece =
                tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| body.poll_data(cx)))
                    .await
                    .expect("the first piece is echoed before the body ends")
                    .unwrap()
                    .unwrap();
            echoed.extend_from_slice(&piece);
        }
        tx.send_data(Bytes::from_static(b"pong")).await.unwrap();
        drop(tx);
        while let Some(piece) =
            tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| body.poll_data(cx)))
                .await
                .expect("the rest is echoed")
        {
            echoed.extend_from_slice(&piece.unwrap());
        }
        let echoed = String::from_utf8_lossy(&echoed);
        assert!(
            echoed.contains("ping") && echoed.contains("pong"),
            "{echoed:?}"
        );
        assert!(
            body.take_reusable().is_some(),
            "body sent, answer read: reusable"
        );
    }

    #[test]
    fn request_heads_carry_the_framing_their_body_needs() {
        // A client's own framing headers never go out as they came.
        let h = headers(&[("host", "b"), ("content-length", "99")]);
        let head = |method: &Method, framing| {
            let request = Outgoing {
                method,
                target: "/",
                headers: &h,
            };
            String::from_utf8(encode_head(&request, framing).to_vec()).unwrap()
        };
        assert_eq!(
            head(&Method::GET, BodyFraming::None),
            "GET / HTTP/1.1\r\nhost: b\r\n\r\n"
        );
        assert_eq!(
            head(&Method::POST, BodyFraming::None),
            "POST / HTTP/1.1\r\nhost: b\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(
            head(&Method::POST, BodyFraming::Length(35)),
            "POST / HTTP/1.1\r\nhost: b\r\ncontent-length: 35\r\n\r\n"
        );
        assert_eq!(
            head(&Method::POST, BodyFraming::Chunked),
            "POST / HTTP/1.1\r\nhost: b\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_body_of_unknown_size_is_sent_chunked() {
        let (addr, mut requests) =
            backend(vec![Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]).await;
        let pool = pool(addr);
        let (tx, body) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(4);
        let mut tx = tx;
        tokio::spawn(async move {
            tx.send_data(Bytes::from_static(b"hello ")).await.unwrap();
            tx.send_data(Bytes::from_static(b"world")).await.unwrap();
        });
        // hyper's Incoming cannot be built in a test; stream the channel through a real client
        // connection instead: a tiny server hands its Incoming to `send`.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        let pool2 = pool.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let pool = pool2.clone();
                    async move {
                        let (parts, incoming) = req.into_parts();
                        let mut body = RequestBody::Incoming(incoming);
                        let request = Outgoing {
                            method: &parts.method,
                            target: "/upload",
                            headers: &parts.headers,
                        };
                        let status = match send(&pool, &request, &mut body).await {
                            Ok(incoming) => incoming.head.status,
                            Err(_) => StatusCode::BAD_GATEWAY,
                        };
                        let mut response =
                            http::Response::new(http_body_util::Empty::<Bytes>::new());
                        *response.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        let stream = TcpStream::connect(front).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let response = sender
            .send_request(
                http::Request::post("/upload")
                    .header("host", "front")
                    .body(body)
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
        let request = String::from_utf8(requests.recv().await.unwrap()).unwrap();
        assert!(
            request.contains("transfer-encoding: chunked\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with("\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"),
            "{request:?}"
        );
    }

    #[tokio::test]
    async fn a_body_shorter_or_longer_than_its_length_fails_as_the_clients() {
        for (bytes, length) in [(&b"abc"[..], 5), (&b"abcdef"[..], 5)] {
            let mut wire = Vec::new();
            let mut body = RequestBody::Inline(Bytes::from_static(bytes));
            let written = write_body(&mut wire, &mut body, BodyFraming::Length(length)).await;
            assert!(
                matches!(written, Err(UpstreamError::ClientBody(_))),
                "{bytes:?} as {length} bytes: {written:?}"
            );
        }
        let mut wire = Vec::new();
        let mut body = RequestBody::Inline(Bytes::from_static(b"abcde"));
        write_body(&mut wire, &mut body, BodyFraming::Length(5))
            .await
            .unwrap();
        assert_eq!(wire, b"abcde");
    }

    #[tokio::test]
    async fn an_inline_body_the_socket_does_not_take_at_once_is_left_for_the_writer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(4096).unwrap();
        let mut stream = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        // The other side reads nothing until the end.
        let (mut peer, _) = listener.accept().await.unwrap();
        let head = b"POST / HTTP/1.1\r\ncontent-length: 4194304\r\n\r\n";
        let body = Bytes::from((0..4 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());

        let rest = write_inline(&mut stream, head, &body)
            .await
            .unwrap()
            .expect("4 MiB do not fit in one write to a 4 KiB send buffer");
        assert!(!rest.is_empty() && rest.len() < body.len());
        // What went out and what is left make the request exactly.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        stream.write_all(&rest).await.unwrap();
        drop(stream);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), head.len() + body.len());
        assert_eq!(&got[..head.len()], head);
        assert!(got[head.len()..] == body[..], "the body arrived altered");
    }
}
