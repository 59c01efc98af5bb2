//! The rules of HTTP a request must satisfy before the proxy forwards it, on either server
//! side: one valid `Host` (RFC 9112 3.2, RFC 9113 8.3.1), a target form its method allows
//! (RFC 9112 3.2), transfer codings the proxy can pass on (RFC 9112 6.1); and which headers
//! belong to one connection (RFC 9110 7.6.1). Pure functions over the head.

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode, Version};

/// Why a request is refused: the status to answer and a short reason (for logs). The
/// connection closes after the answer: what follows on it cannot be trusted to start a
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({status})")]
pub struct Refusal {
    /// 400 or 501.
    pub status: StatusCode,
    /// What rule the request breaks.
    pub reason: &'static str,
}

/// A [`Refusal`].
const fn refuse(status: StatusCode, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// Checks a request hyper parsed and returns the host to forward: the target's authority
/// (absolute-form, or HTTP/2's `:authority`), else the `Host` header, else none.
pub fn check(parts: &Parts) -> Result<Option<HeaderValue>, Refusal> {
    if parts.method == Method::CONNECT {
        // A reverse proxy opens no tunnels (RFC 9110 9.3.6).
        return Err(refuse(
            StatusCode::NOT_IMPLEMENTED,
            "CONNECT is not supported",
        ));
    }
    check_codings(&parts.headers)?;
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(refuse(StatusCode::BAD_REQUEST, "more than one Host"));
    }
    if let Some(host) = host
        && !is_valid_host(host.as_bytes())
    {
        return Err(refuse(StatusCode::BAD_REQUEST, "invalid Host"));
    }
    let uri = &parts.uri;
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse(StatusCode::BAD_REQUEST, "invalid request target"));
    }
    if target == "*" && parts.method != Method::OPTIONS {
        // The asterisk-form is OPTIONS's only (RFC 9112 3.2.4).
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "the target * is for OPTIONS only",
        ));
    }
    let authority = match (uri.scheme(), uri.authority()) {
        // Authority-form is CONNECT's only (RFC 9112 3.2.3).
        (None, Some(_)) if parts.version != Version::HTTP_2 => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "an authority-form target is for CONNECT only",
            ));
        }
        (_, Some(authority)) => Some(authority.as_str()),
        (_, None) => None,
    };
    let Some(authority) = authority else {
        // RFC 9112 3.2: an HTTP/1.1 request without a Host is refused; HTTP/1.0 and HTTP/2
        // need not carry one.
        if host.is_none() && parts.version == Version::HTTP_11 {
            return Err(refuse(StatusCode::BAD_REQUEST, "no Host"));
        }
        return Ok(host.cloned());
    };
    // userinfo is deprecated and an error here (RFC 9110 4.2.4, RFC 9113 8.3.1).
    if authority.contains('@') || !is_valid_host(authority.as_bytes()) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid authority in the target",
        ));
    }
    if parts.version == Version::HTTP_2
        && let Some(host) = host
        && !host.as_bytes().eq_ignore_ascii_case(authority.as_bytes())
    {
        // RFC 9113 8.3.1: a Host naming another entity than :authority is malformed.
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Host differs from :authority",
        ));
    }
    // An absolute-form target's authority replaces any Host (RFC 9112 3.2.2).
    HeaderValue::from_str(authority)
        .map(Some)
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "invalid authority"))
}

/// The request's transfer codings: `chunked` alone (hyper decodes it and the proxy frames the
/// body itself), or none. Another coding would reach the instance undecoded and unlabelled, so
/// it is refused with 501 (RFC 9112 6.1); `chunked` twice is invalid framing (400).
fn check_codings(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut chunked = 0;
    for coding in codings(
        headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .map(|v| v.as_bytes()),
    ) {
        if !coding.eq_ignore_ascii_case(b"chunked") {
            return Err(refuse(
                StatusCode::NOT_IMPLEMENTED,
                "a transfer coding other than chunked",
            ));
        }
        chunked += 1;
    }
    if chunked > 1 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "chunked applied more than once",
        ));
    }
    Ok(())
}

/// The codings of `Transfer-Encoding` values, in order, empty list elements skipped (RFC 9110
/// 5.6.1).
pub fn codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
}

/// Whether `value` is a `Host` value: `uri-host [ ":" port ]` (RFC 9112 3.2, RFC 3986 3.2.2);
/// empty is allowed (a target without authority).
pub fn is_valid_host(value: &[u8]) -> bool {
    // unreserved, pct-encoded and sub-delims: a reg-name's characters.
    let reg_name = |b: &u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    };
    let (host_ok, port) = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|b| *b == b']') else {
            return false;
        };
        let inside = &literal[..end];
        (
            !inside.is_empty() && inside.iter().all(|b| reg_name(b) || *b == b':'),
            &literal[end + 1..],
        )
    } else {
        let end = value.iter().position(|b| *b == b':').unwrap_or(value.len());
        (value[..end].iter().all(reg_name), &value[end..])
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

/// Whether `name` (any case) is a header that belongs to one connection (RFC 9110 7.6.1):
/// the ones the proxy removes, besides those a `Connection` header names.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    let proxy = name.len() > 6 && name[..6].eq_ignore_ascii_case(b"proxy-");
    proxy
        || match name.len() {
            2 => is("te"),
            7 => is("trailer") || is("upgrade"),
            10 => is("connection") || is("keep-alive"),
            17 => is("transfer-encoding"),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: http::request::Builder) -> Parts {
        request.body(()).unwrap().into_parts().0
    }

    fn status(request: http::request::Builder) -> Option<u16> {
        check(&parts(request)).err().map(|e| e.status.as_u16())
    }

    #[test]
    fn hosts() {
        for good in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:80",
            "[::1]:3000",
            "[::1]",
            "",
            "a-b.c_d~e%41",
            "host:",
        ] {
            assert!(is_valid_host(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "a b/c@d",
            "a b",
            "a/b",
            "user@host",
            "host:80a",
            "[::1",
            "[]",
            "a:1:2",
            "h\tx",
            "caf\u{e9}",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn targets_and_hosts_of_http_1_1() {
        let get = |target: &str| http::Request::get(target).header("host", "t");
        assert_eq!(status(get("/a?b")), None);
        assert_eq!(status(get("*")), Some(400));
        assert_eq!(
            status(http::Request::options("*").header("host", "t")),
            None
        );
        assert_eq!(status(get("evil.example:80")), Some(400));
        assert_eq!(
            status(http::Request::connect("evil.example:80").header("host", "t")),
            Some(501)
        );
        assert_eq!(status(http::Request::get("/")), Some(400));
        assert_eq!(
            status(http::Request::get("/").version(Version::HTTP_10)),
            None
        );
        assert_eq!(status(get("/").header("host", "t")), Some(400), "two hosts");
        assert_eq!(
            status(http::Request::get("/").header("host", "a b/c@d")),
            Some(400)
        );
        assert_eq!(status(get("http://user:pw@evil.example/abs")), Some(400));
        let absolute = check(&parts(get("http://other.example:81/abs?q=1"))).unwrap();
        assert_eq!(absolute.unwrap(), "other.example:81");
        assert_eq!(check(&parts(get("/"))).unwrap().unwrap(), "t");
    }

    #[test]
    fn authority_of_http_2() {
        let h2 = |host: Option<&str>| {
            let mut request = http::Request::get("http://a.example/x").version(Version::HTTP_2);
            if let Some(host) = host {
                request = request.header("host", host);
            }
            check(&parts(request)).map_err(|e| e.status.as_u16())
        };
        assert_eq!(h2(None).unwrap().unwrap(), "a.example");
        assert_eq!(h2(Some("A.example")).unwrap().unwrap(), "a.example");
        assert_eq!(h2(Some("b.example")).unwrap_err(), 400);
        let no_authority = http::Request::get("/x").version(Version::HTTP_2);
        assert_eq!(check(&parts(no_authority)).unwrap(), None);
    }

    #[test]
    fn transfer_codings() {
        let te = |values: &[&str]| {
            let mut request = http::Request::post("/").header("host", "t");
            for v in values {
                request = request.header("transfer-encoding", *v);
            }
            status(request)
        };
        assert_eq!(te(&["chunked"]), None);
        assert_eq!(te(&[", chunked"]), None);
        assert_eq!(te(&["gzip, chunked"]), Some(501));
        assert_eq!(te(&["identity", "chunked"]), Some(501));
        assert_eq!(te(&["chunked, chunked"]), Some(400));
        assert_eq!(te(&["chunked", "chunked"]), Some(400));
    }

    #[test]
    fn hop_by_hop_names_of_every_length() {
        for name in [
            "TE",
            "trailer",
            "Upgrade",
            "connection",
            "Keep-Alive",
            "transfer-encoding",
            "proxy-a",
            "Proxy-Auth",
            "proxy-connection",
            "proxy-authorization",
        ] {
            assert!(is_hop_by_hop(name.as_bytes()), "{name}");
        }
        for name in [
            "host",
            "proxy",
            "proxy-",
            "x-proxy-a",
            "content-length",
            "tee",
        ] {
            assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
        }
    }
}
