//! Request heads as Baton's own HTTP/1.1 server side takes them: parsed with httparse into
//! offsets in the read buffer (nothing copied), each header classified by what the proxy does
//! with it ([`Role`]), and anything unusual left to hyper's server ([`Parsed::Other`]), which
//! then answers or serves it exactly as if it had read the bytes itself.

use std::mem::MaybeUninit;

use http::Method;

use crate::response::parse_length;
use crate::rules::{is_hop_by_hop, is_valid_host};

/// Most headers a request served here may have; one with more goes to hyper (which answers
/// 431 above its own limit of the same number).
const MAX_HEADERS: usize = 100;

/// A request head parsed off the front of the read buffer. Ranges index into the buffer.
#[derive(Debug)]
pub struct RequestHead {
    /// The head's length.
    pub len: usize,
    /// The body's length (`Content-Length`; 0: none).
    pub body: usize,
    /// The method.
    pub method: Method,
    /// Where the target lies.
    pub target: (usize, usize),
    /// The headers, in order.
    pub headers: Vec<Header>,
    /// The client asked to close after this request.
    pub close: bool,
    /// An HTTP/1.0 client: no chunked coding towards it, and keep-alive said explicitly.
    pub http10: bool,
    /// The client waits for a `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

/// One request header, by where its name and value lie, and what the proxy makes of it.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Where the name lies.
    pub name: (usize, usize),
    /// Where the value lies.
    pub value: (usize, usize),
    /// What the proxy makes of it.
    pub role: Role,
}

/// What a header means to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Passed on as it is.
    Pass,
    /// Belongs to this connection (RFC 9110 7.6.1) or is the framing, which the proxy states
    /// itself: not passed on.
    Drop,
    /// `Host`.
    Host,
    /// `X-Forwarded-For`: the proxy appends the peer.
    ForwardedFor,
    /// Replaced by the proxy's.
    ForwardedProto,
    /// Replaced by the proxy's when the request has a host, else dropped.
    ForwardedHost,
    /// `X-Request-Id`: kept, or created by the proxy.
    RequestId,
}

/// What [`parse`] made of a buffer.
#[derive(Debug)]
pub enum Parsed {
    /// A whole head this parser takes.
    Request(RequestHead),
    /// Not all there yet.
    Partial,
    /// The request line names a version httparse does not know (perhaps `HTTP/1.2`).
    NewerMinor,
    /// Not a request this parser takes (hyper's server answers or serves it).
    Other,
}

/// Parses the request head at the front of `buf`, if it is one this parser takes: HTTP/1.0 or
/// 1.1, an origin-form target, at most one `Content-Length` of at most `max_body`, no transfer
/// coding, no upgrade, a `Connection` naming nothing but `close`/`keep-alive`, exactly one
/// valid `Host` (HTTP/1.1; at most one in HTTP/1.0), an `Expect` of `100-continue` at most, and
/// a head of at most `max_len` bytes.
pub fn parse(buf: &[u8], max_len: usize, max_body: usize) -> Parsed {
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
                        Some(n) if lengths == 0 && n <= max_body as u64 => {
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
    Parsed::Request(RequestHead {
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
pub fn as_http_1_1(buf: &mut [u8]) -> bool {
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
        // Baton's own feature-flag header: a client's is never believed.
        13 if is("x-baton-flags") => Role::Drop,
        15 if is("x-forwarded-for") => Role::ForwardedFor,
        16 if is("x-forwarded-host") => Role::ForwardedHost,
        17 if is("x-forwarded-proto") => Role::ForwardedProto,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8]) -> RequestHead {
        match parse(raw, 16 * 1024, 64 * 1024) {
            Parsed::Request(head) => head,
            _ => panic!("not taken: {:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn other(raw: &[u8]) -> bool {
        matches!(parse(raw, 16 * 1024, 64 * 1024), Parsed::Other)
    }

    #[test]
    fn a_plain_request_and_its_body_boundary() {
        let raw = b"POST /a?b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello";
        let h = head(raw);
        assert_eq!((h.len, h.body), (raw.len() - 5, 5));
        assert_eq!(&raw[h.target.0..h.target.1], b"/a?b");
        let roles: Vec<Role> = h.headers.iter().map(|h| h.role).collect();
        assert_eq!(roles, [Role::Host, Role::Drop, Role::Pass]);
        assert!(!h.close && !h.http10);
    }

    #[test]
    fn what_hypers_path_takes_instead() {
        for raw in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: t\r\n\r\n",
            b"CONNECT / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: x-other\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n",
        ] {
            assert!(other(raw), "{:?}", String::from_utf8_lossy(raw));
        }
        // HTTP/1.0 needs no Host.
        assert!(head(b"GET / HTTP/1.0\r\n\r\n").close);
    }

    #[test]
    fn a_newer_minor_version_is_read_as_1_1() {
        let mut raw = b"GET /a HTTP/1.2\r\nHost: t\r\n\r\n".to_vec();
        assert!(matches!(parse(&raw, 1024, 0), Parsed::NewerMinor));
        assert!(as_http_1_1(&mut raw));
        assert!(raw.starts_with(b"GET /a HTTP/1.1\r\n"));
        assert!(!head(&raw).http10);
        for line in [
            &b"GET /a HTTP/2.0\r\n"[..],
            b"GET /a HTTP/1.10\r\n",
            b"GET /a",
        ] {
            assert!(!as_http_1_1(&mut line.to_vec()));
        }
    }

    #[test]
    fn the_forwarding_headers_have_their_roles() {
        let h = head(
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Host: e\r\n\
              X-Forwarded-Proto: https\r\nX-Request-Id: r\r\nProxy: http://evil\r\n\
              Forwarded: for=x\r\nX-Real-IP: 6.6.6.6\r\nKeep-Alive: 5\r\n\r\n",
        );
        let roles: Vec<Role> = h.headers.iter().map(|h| h.role).collect();
        use Role::*;
        assert_eq!(
            roles,
            [
                Host,
                ForwardedFor,
                ForwardedHost,
                ForwardedProto,
                RequestId,
                Drop,
                Drop,
                Drop,
                Drop
            ]
        );
    }
}
