//! Header rewriting between client and backend: hop-by-hop stripping, `X-Forwarded-*`,
//! `X-Request-Id`.

use baton_h1::rules::is_hop_by_hop;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `X-Real-IP`: always the peer's address, whatever the client sent.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `Forwarded` (RFC 7239): a client's is dropped, as its claims cannot be checked.
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// `Proxy`: no such header exists, but CGI-style servers turn it into `HTTP_PROXY`, the proxy
/// their own outgoing requests use ("httpoxy"); dropped, as nginx and HAProxy advise.
static PROXY: HeaderName = HeaderName::from_static("proxy");

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether the request asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Whether a `Connection` header lists `token` (case-insensitive).
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the headers that belong to one connection, not to the message (RFC 9110 7.6.1).
/// With `upgrade`, keeps `Upgrade` and sets `Connection: upgrade` so the switch reaches the
/// other side.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    headers.remove(&PROXY);
    // One pass over the names first: most messages carry none of these, and then there is
    // nothing to look up or remove.
    if !headers.keys().any(|k| is_hop_by_hop(k.as_str().as_bytes())) {
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        // Headers named in Connection are hop-by-hop too. Rare, so allocating here is fine.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(upgrade && n == header::UPGRADE))
            // Naming the message's own framing or host in Connection must not strip them: that
            // is a request-smuggling trick, not a hop-by-hop header.
            .filter(|n| n != header::CONTENT_LENGTH && n != header::HOST)
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
    if headers.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Adds `X-Forwarded-For` (appending `client_ip` to any list the client sent),
/// `X-Forwarded-Proto: proto` (`http` or `https`), `X-Forwarded-Host` (the original host; none without one, even if
/// the client sent one), `X-Real-IP: client_ip`, drops a client's `Forwarded`, and keeps or
/// creates `X-Request-Id`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    headers.remove(&FORWARDED);
    headers.insert(&X_REAL_IP, client_ip.clone());
    match headers.entry(&X_FORWARDED_FOR) {
        Entry::Occupied(mut prior) => {
            // Several X-Forwarded-For lines are one list (RFC 9110 5.3): joined, then ours.
            // Empty lines add nothing to it.
            let mut list = Vec::new();
            for value in prior.iter().map(|v| v.as_bytes().trim_ascii()) {
                if !value.is_empty() {
                    list.extend_from_slice(value);
                    list.extend_from_slice(b", ");
                }
            }
            list.extend_from_slice(client_ip.as_bytes());
            prior.insert(HeaderValue::from_bytes(&list).unwrap_or_else(|_| client_ip.clone()));
        }
        Entry::Vacant(slot) => {
            slot.insert(client_ip.clone());
        }
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(&X_FORWARDED_HOST, host),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    headers.entry(&X_REQUEST_ID).or_insert_with(new_request_id);
}

/// A random 128-bit id as 32 lowercase hex digits.
pub fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&new_request_id_bytes()).expect("hex digits are a valid header value")
}

/// [`new_request_id`]'s digits.
pub(crate) fn new_request_id_bytes() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut out = [0u8; 32];
    for byte in out.iter_mut().rev() {
        *byte = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "basic x"),
            ("proxy-whatever", "y"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
    }

    #[test]
    fn connection_cannot_strip_the_length_or_the_host() {
        let mut h = map(&[
            ("connection", "content-length, host, x-hop"),
            ("content-length", "35"),
            ("host", "example.com"),
            ("x-hop", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["content-length"], "35");
        assert_eq!(h["host"], "example.com");
        assert!(!h.contains_key("x-hop"));
    }

    #[test]
    fn end_to_end_headers_are_left_alone() {
        let pairs = [
            ("host", "example.com"),
            ("accept", "*/*"),
            ("x-proxy", "kept"),
        ];
        let mut h = map(&pairs);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&pairs));
    }

    #[test]
    fn upgrade_keeps_the_switch() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-key"], "k");
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn forwarded_headers_append_and_keep_request_id() {
        let ip = HeaderValue::from_static("127.0.0.1");
        let mut h = map(&[("x-forwarded-for", "10.0.0.1"), ("x-request-id", "abc")]);
        add_forwarded(
            &mut h,
            &ip,
            "http",
            Some(HeaderValue::from_static("example.com")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-request-id"], "abc");

        let mut two_lines = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        add_forwarded(&mut two_lines, &ip, "https", None);
        assert_eq!(
            two_lines
                .get_all("x-forwarded-for")
                .iter()
                .collect::<Vec<_>>(),
            ["10.0.0.1, 10.0.0.2, 127.0.0.1"]
        );
        assert_eq!(two_lines["x-forwarded-proto"], "https");

        let mut empty = map(&[("x-forwarded-for", ""), ("x-forwarded-for", " 10.0.0.3 ")]);
        add_forwarded(&mut empty, &ip, "http", None);
        assert_eq!(empty["x-forwarded-for"], "10.0.0.3, 127.0.0.1");

        let mut fresh = HeaderMap::new();
        add_forwarded(&mut fresh, &ip, "http", None);
        let id = fresh["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(new_request_id(), new_request_id());
    }
}
