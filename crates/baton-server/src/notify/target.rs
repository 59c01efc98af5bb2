//! A webhook's address: parsed once at construction, redacted wherever it is shown.

use std::fmt;

use hyper::Uri;
use hyper::header::HeaderValue;

use super::NotifyError;

/// Where one webhook's events go, ready to connect to and to build requests for.
#[derive(Clone)]
pub(super) struct Target {
    /// Host name or address to connect to (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 for http, 443 for https, unless given).
    pub port: u16,
    /// Whether the URL is `https://`: connections are TLS.
    pub https: bool,
    /// The `host` header: the authority without its userinfo.
    pub authority: HeaderValue,
    /// The request target: path and query.
    pub path: Uri,
    /// `Basic` credentials from the URL's userinfo, if any.
    pub authorization: Option<HeaderValue>,
    /// The URL without userinfo, query or fragment: the only form ever logged.
    redacted: String,
}

impl Target {
    /// Parses an `http://` or `https://` URL; refuses anything else with a clear error.
    pub fn parse(url: &str) -> Result<Target, NotifyError> {
        let redacted = redact(url);
        let invalid = |reason: &'static str| NotifyError::InvalidUrl {
            url: redacted.clone(),
            reason,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(
                "it has no scheme; write it as http://host:port/path or https://host/path",
            ));
        };
        let https = scheme.eq_ignore_ascii_case("https");
        if !https && !scheme.eq_ignore_ascii_case("http") {
            return Err(invalid("only http:// and https:// webhooks are supported"));
        }
        if url
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(invalid(
                "it contains spaces or control characters; percent-encode them",
            ));
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let default_port = if https { 443 } else { 80 };
        let (host, port) = split_host_port(hostport, default_port)
            .ok_or_else(|| invalid("its host or port is malformed"))?;
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        let path =
            Uri::try_from(path).map_err(|_| invalid("its path is not a valid request target"))?;
        let authority = HeaderValue::from_str(hostport)
            .map_err(|_| invalid("its host is not a valid header value"))?;
        let authorization = userinfo
            .map(basic_auth)
            .transpose()
            .map_err(|()| invalid("its userinfo is malformed"))?;
        Ok(Target {
            host,
            port,
            https,
            authority,
            path,
            authorization,
            redacted,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Target").field(&self.redacted).finish()
    }
}

/// The URL without userinfo, query or fragment, for logs and errors: those may hold secrets.
pub(super) fn redact(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let hostport = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hostport)| hostport);
    match scheme {
        Some(scheme) => format!("{scheme}://{hostport}{path}"),
        None => format!("{hostport}{path}"),
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to `default_port`.
fn split_host_port(hostport: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            after => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
    };
    Some((host.to_owned(), port))
}

/// `Basic base64(user:password)` from percent-encoded userinfo.
fn basic_auth(userinfo: &str) -> Result<HeaderValue, ()> {
    let decoded = percent_decode(userinfo)?;
    let mut value = HeaderValue::try_from(format!("Basic {}", base64(&decoded))).map_err(|_| ())?;
    value.set_sensitive(true);
    Ok(value)
}

fn percent_decode(s: &str) -> Result<Vec<u8>, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Standard base64 with padding; a dependency for twenty lines would not earn its place.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_path() {
        let t = Target::parse("http://127.0.0.1:9000/hooks/baton?token=s3cret#frag").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 9000));
        assert_eq!(t.authority, "127.0.0.1:9000");
        assert_eq!(t.path, "/hooks/baton?token=s3cret");
        assert!(t.authorization.is_none());
        assert_eq!(t.to_string(), "http://127.0.0.1:9000/hooks/baton");
    }

    #[test]
    fn defaults_port_and_path_and_accepts_ipv6() {
        let t = Target::parse("HTTP://example.com").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.to_string().as_str()),
            ("example.com", 80, "/")
        );
        let t = Target::parse("http://[::1]:8080?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.to_string().as_str()),
            ("::1", 8080, "/?x=1")
        );
        assert_eq!(t.authority, "[::1]:8080");
    }

    #[test]
    fn userinfo_becomes_basic_auth_and_is_never_shown() {
        let t = Target::parse("http://user:p%40ss@hooks.local:81/x").unwrap();
        // base64("user:p@ss")
        assert_eq!(t.authorization.as_ref().unwrap(), "Basic dXNlcjpwQHNz");
        assert_eq!(t.authority, "hooks.local:81");
        assert_eq!(t.to_string(), "http://hooks.local:81/x");
        assert!(!format!("{t:?}").contains("p%40ss"));
    }

    #[test]
    fn https_defaults_to_port_443_and_keeps_userinfo_out_of_sight() {
        let t = Target::parse("HTTPS://bob:hunter2@hooks.example/x?key=abc").unwrap();
        assert!(t.https);
        assert_eq!((t.host.as_str(), t.port), ("hooks.example", 443));
        assert_eq!(t.authority, "hooks.example");
        assert_eq!(t.to_string(), "HTTPS://hooks.example/x");
        let shown = format!("{t} {t:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("abc"),
            "{shown}"
        );
        let t = Target::parse("https://[::1]:8443/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.https), ("::1", 8443, true));
        assert!(!Target::parse("http://h/").unwrap().https);
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "hooks.example/x",
            "ftp://h/x",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "http://[::1/",
            "http://h/a b",
            "http://%zz@h/",
        ] {
            let err = Target::parse(url).unwrap_err();
            assert!(
                matches!(err, NotifyError::InvalidUrl { .. }),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn redact_strips_userinfo_query_and_fragment() {
        assert_eq!(redact("http://a:b@h:1/p?q=1#f"), "http://h:1/p");
        assert_eq!(redact("h/p?secret"), "h/p");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
