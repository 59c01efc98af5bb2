//! Response heads from instances: parsed without copying ([`Head`]), the body framing they
//! state (RFC 9112 6.3), and the pieces of a response head written to a client.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Method, Response, StatusCode, Version};
use std::mem::MaybeUninit;

use crate::body::Framing;
use crate::chunked::ChunkedDecoder;
use crate::error::UpstreamError;
use crate::rules::codings;

/// Most headers a backend's response may have.
const MAX_HEADERS: usize = 128;

/// A response head as the backend sent it: its bytes, and where each header lies in them.
/// The proxy's HTTP/1.1 server writes the headers on from these bytes; a [`HeaderMap`] is
/// built only for the clients hyper serves ([`Head::into_parts`]).
#[derive(Debug)]
pub struct Head {
    /// The final status (informational responses are skipped, but for `101`).
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    bytes: Bytes,
    spans: Vec<Span>,
    /// The body is framed by a transfer coding, so any `Content-Length` is void (RFC 9112
    /// 6.3) and must not reach the client.
    pub(crate) transfer_coded: bool,
}

/// Where one header's name and value lie in the head.
#[derive(Debug, Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

impl Head {
    /// The headers, names as the backend spelled them, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|s| {
            (
                &self.bytes[s.name.0 as usize..s.name.1 as usize],
                &self.bytes[s.value.0 as usize..s.value.1 as usize],
            )
        })
    }

    /// The values of every header called `name` (lowercase).
    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Whether a `Connection` header lists `token`.
    pub fn connection_has(&self, token: &str) -> bool {
        self.values("connection")
            .flat_map(|v| v.split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether the body is framed by a transfer coding (any `Content-Length` is then void).
    pub fn is_transfer_coded(&self) -> bool {
        self.transfer_coded
    }

    /// The transfer codings other than a final `chunked` (which the proxy decodes and the
    /// client connection's own framing redoes), as one list, if there are any: the body
    /// reaches the client still in them (a `gzip` transfer coding, say), so the client must
    /// be told.
    pub fn other_codings(&self) -> Option<Vec<u8>> {
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
    pub fn into_parts(self) -> Result<Parts, UpstreamError> {
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
pub(crate) fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, UpstreamError> {
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

impl Head {
    /// How the body after this head (the answer to a `method` request) is delimited, and
    /// whether the connection may carry another exchange after it. Notes whether a transfer
    /// coding frames the body. Chunked must be the last coding and appear once (RFC 9112
    /// 6.1, 7): anything else cannot be passed on in a framing of the proxy's own without
    /// naming chunked twice, and is refused.
    pub(crate) fn framing(&mut self, method: &Method) -> Result<(Framing, bool), UpstreamError> {
        // A Transfer-Encoding with no coding in it counts as one that is not chunked: its
        // Content-Length is void all the same.
        let mut last_coding = None;
        let mut chunked = 0;
        for value in self.values("transfer-encoding") {
            last_coding = last_coding.or(Some(false));
            for coding in codings(std::iter::once(value)) {
                let is_chunked = coding.eq_ignore_ascii_case(b"chunked");
                chunked += usize::from(is_chunked);
                last_coding = Some(is_chunked);
            }
        }
        if chunked > 1 || (chunked == 1 && last_coding == Some(false)) {
            return Err(UpstreamError::Protocol(
                "response with chunked twice or not as its last transfer coding".into(),
            ));
        }
        self.transfer_coded = last_coding.is_some();
        let framing = if *method == Method::HEAD
            || self.status.is_informational()
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else if let Some(chunked) = last_coding {
            if chunked {
                Framing::Chunked(ChunkedDecoder::new())
            } else {
                Framing::Close
            }
        } else {
            match content_length(self.values("content-length"))? {
                Some(length) => Framing::Length(length),
                None => Framing::Close,
            }
        };
        let keep_alive = match self.version {
            Version::HTTP_10 => self.connection_has("keep-alive"),
            _ => !self.connection_has("close"),
        } && !matches!(framing, Framing::Close);
        Ok((framing, keep_alive))
    }

    /// Headers its `Connection` names as hop-by-hop, besides the standard ones.
    pub fn named_in_connection(&self) -> Vec<&[u8]> {
        self.values("connection")
            .flat_map(|value| value.split(|b| *b == b',').map(<[u8]>::trim_ascii))
            .filter(|token| {
                !(token.is_empty()
                    || token.eq_ignore_ascii_case(b"close")
                    || token.eq_ignore_ascii_case(b"keep-alive"))
            })
            .collect()
    }
}

/// Appends a status line: `HTTP/1.1`, the code and its canonical reason (empty if none).
pub fn encode_status(status: StatusCode, out: &mut BytesMut) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a header line.
pub fn put_header(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

/// Appends what happens to the connection after this response: `close`, or for an HTTP/1.0
/// client that asked to keep it, `keep-alive` (without which it would assume a close).
pub fn connection_header(close: bool, http10: bool, out: &mut BytesMut) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
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
pub fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}
