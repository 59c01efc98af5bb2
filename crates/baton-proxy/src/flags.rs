//! The `X-Baton-Flags` request header: each app's flags evaluated per request for apps that
//! use no OpenFeature SDK (`X-Baton-Flags: new-checkout=on; search-v2=off`). The targeting key
//! is the app's sticky key (`[apps.<app>.canary] sticky`: the header, else the cookie); a
//! request without one gets percentage flags off. Rules read request headers as the attribute
//! `header:<lower-case name>` and cookies as `cookie:<name>`. A client's own `X-Baton-Flags` is
//! always removed. The flags live in an `ArcSwap` of their own in the [`Router`](crate::Router),
//! published by the server whenever a flag changes.

use std::borrow::Cow;
use std::collections::HashMap;

use baton_core::flags::{Context, FlagSpec, evaluate};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The header's name.
pub const X_BATON_FLAGS: HeaderName = HeaderName::from_static("x-baton-flags");

/// One app's flags as the proxy evaluates them.
#[derive(Debug, Clone, Default)]
pub struct AppFlags {
    /// The header holding the targeting key.
    pub key_header: Option<HeaderName>,
    /// Else the cookie holding it.
    pub key_cookie: Option<String>,
    /// The flags by name (sorted), with a breaker's reason while one holds the flag off.
    pub flags: Vec<(String, FlagSpec, Option<String>)>,
}

/// Every app's flags, by unit key (`app@env`).
pub type FlagTable = HashMap<String, std::sync::Arc<AppFlags>>;

struct RequestContext<'a> {
    headers: &'a HeaderMap,
    key: Option<&'a str>,
}

impl Context for RequestContext<'_> {
    fn targeting_key(&self) -> Option<&str> {
        self.key
    }

    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        if let Some(h) = name.strip_prefix("header:") {
            let v = self.headers.get(h)?.to_str().ok()?;
            return Some(Cow::Borrowed(v));
        }
        if let Some(c) = name.strip_prefix("cookie:") {
            return crate::affinity::cookie(self.headers, c).map(Cow::Borrowed);
        }
        (name == "targetingKey")
            .then_some(self.key?)
            .map(Cow::Borrowed)
    }
}

/// Removes a client-sent `X-Baton-Flags` and adds the one Baton evaluated for this request.
pub(crate) fn add_header(flags: Option<&AppFlags>, headers: &mut HeaderMap) {
    headers.remove(&X_BATON_FLAGS);
    let Some(flags) = flags.filter(|f| !f.flags.is_empty()) else {
        return;
    };
    if let Some(value) = header_value(flags, headers) {
        headers.insert(X_BATON_FLAGS, value);
    }
}

/// The header's value for a request with `headers`.
pub fn header_value(flags: &AppFlags, headers: &HeaderMap) -> Option<HeaderValue> {
    let from_header = flags
        .key_header
        .as_ref()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let key = from_header.or_else(|| {
        let c = flags.key_cookie.as_deref()?;
        crate::affinity::cookie(headers, c)
    });
    let ctx = RequestContext { headers, key };
    let mut out = String::with_capacity(flags.flags.len() * 16);
    for (name, spec, forced) in &flags.flags {
        let on = evaluate(name, spec, forced.as_deref(), &ctx).is_ok_and(|e| e.value);
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(name);
        out.push_str(if on { "=on" } else { "=off" });
    }
    // Flag names are validated to a header-safe alphabet.
    HeaderValue::from_str(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::flags::parse_rule;

    fn flags() -> AppFlags {
        let spec = |percent, rules: Vec<&str>| FlagSpec {
            enabled: true,
            percent,
            rules: rules.into_iter().map(|r| parse_rule(r).unwrap()).collect(),
        };
        AppFlags {
            key_header: Some(HeaderName::from_static("x-user")),
            key_cookie: Some("uid".into()),
            flags: vec![
                ("all".into(), spec(100.0, vec![]), None),
                ("beta".into(), spec(0.0, vec!["header:x-beta=1"]), None),
                ("half".into(), spec(50.0, vec![]), None),
                (
                    "tripped".into(),
                    spec(100.0, vec![]),
                    Some("breaker".into()),
                ),
            ],
        }
    }

    fn value(headers: &[(&str, &str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        add_header(Some(&flags()), &mut h);
        h.get(X_BATON_FLAGS).unwrap().to_str().unwrap().to_string()
    }

    #[test]
    fn the_header_lists_every_flag_and_replaces_the_clients() {
        let v = value(&[("x-baton-flags", "all=off; tripped=on"), ("x-beta", "1")]);
        assert!(v.starts_with("all=on; beta=on; half="), "{v}");
        assert!(v.ends_with("tripped=off"), "{v}");
        assert_eq!(value(&[]), "all=on; beta=off; half=off; tripped=off");
    }

    #[test]
    fn the_sticky_key_comes_from_the_header_or_the_cookie() {
        let mut on = 0;
        for i in 0..200 {
            let k = format!("user-{i}");
            let a = value(&[("x-user", &k)]);
            assert_eq!(a, value(&[("cookie", &format!("a=b; uid={k}"))]));
            on += usize::from(a.contains("half=on"));
        }
        assert!((60..=140).contains(&on), "{on} of 200 at 50%");
    }

    #[test]
    fn an_app_without_flags_only_loses_the_clients_header() {
        let mut h = HeaderMap::new();
        h.insert(X_BATON_FLAGS, HeaderValue::from_static("x=on"));
        add_header(None, &mut h);
        assert!(h.get(X_BATON_FLAGS).is_none());
    }
}
