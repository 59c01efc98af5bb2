//! Canary affinity: which release a request belongs to. A request matching a targeting rule
//! always gets the canary; a request with a sticky key (header, else cookie) is hashed to a
//! bucket (`baton_core::sticky`), so a user stays on one release and raising the weight only
//! adds users; a request with neither gets a fresh key in a cookie, so its next visits stick.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// A canary split's affinity rules, part of an [`AppRoute`](crate::AppRoute).
#[derive(Debug, Clone)]
pub struct Affinity {
    /// The canary release.
    pub canary: String,
    /// Percent of sticky buckets (and of keyless requests) that go to the canary.
    pub weight: u32,
    /// Salt of the bucket hash, so each deployment picks its own set of users.
    pub salt: String,
    /// The header holding the user key.
    pub header: Option<HeaderName>,
    /// The cookie holding the key; set on a first visit without one.
    pub cookie: Option<String>,
    /// Requests matching any of these always go to the canary.
    pub matches: Vec<Match>,
}

/// A targeting rule.
#[derive(Debug, Clone)]
pub struct Match {
    /// Where the value is read.
    pub source: MatchSource,
    /// How it is compared.
    pub value: MatchValue,
}

/// Where a targeting rule reads its value.
#[derive(Debug, Clone)]
pub enum MatchSource {
    /// A request header.
    Header(HeaderName),
    /// A cookie.
    Cookie(String),
}

/// How a targeting rule compares.
#[derive(Debug, Clone)]
pub enum MatchValue {
    /// The whole value.
    Equals(String),
    /// Its beginning.
    Prefix(String),
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The canary release.
    Canary,
    /// Any other release of the split.
    Stable,
}

/// The decision for one request: where it goes (none: by weight, as without affinity) and the
/// cookie to set on the response, if the request had no key.
#[derive(Debug, Default)]
pub struct Decision {
    /// The release group, when affinity decides.
    pub target: Option<Target>,
    /// A `Set-Cookie` value giving the client its sticky key.
    pub set_cookie: Option<HeaderValue>,
}

/// How long the sticky cookie lives: 30 days.
const COOKIE_MAX_AGE: u32 = 30 * 24 * 3600;

impl Affinity {
    /// Decides where a request with `headers` goes. `fresh_key` makes a new key when needed.
    pub fn decide(&self, headers: &HeaderMap, fresh_key: impl FnOnce() -> String) -> Decision {
        if self.matches.iter().any(|m| m.matches(headers)) {
            return Decision {
                target: Some(Target::Canary),
                set_cookie: None,
            };
        }
        let header_key = self
            .header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        let cookie_key = self.cookie.as_deref().and_then(|c| cookie(headers, c));
        let (key, set_cookie) = match (header_key, cookie_key, &self.cookie) {
            (Some(k), _, _) | (None, Some(k), _) => (k.to_string(), None),
            (None, None, Some(name)) => {
                let k = fresh_key();
                let v = HeaderValue::from_str(&format!(
                    "{name}={k}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax"
                ))
                .ok();
                (k, v)
            }
            (None, None, None) => return Decision::default(),
        };
        let bucket = baton_core::sticky::bucket(&self.salt, &key);
        let target = if baton_core::sticky::in_canary(bucket, f64::from(self.weight)) {
            Target::Canary
        } else {
            Target::Stable
        };
        Decision {
            target: Some(target),
            set_cookie,
        }
    }
}

impl Match {
    fn matches(&self, headers: &HeaderMap) -> bool {
        let value = match &self.source {
            MatchSource::Header(h) => headers
                .get_all(h)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| self.value.accepts(v)),
            MatchSource::Cookie(name) => cookie(headers, name).filter(|v| self.value.accepts(v)),
        };
        value.is_some()
    }
}

impl MatchValue {
    fn accepts(&self, v: &str) -> bool {
        match self {
            MatchValue::Equals(want) => v == want,
            MatchValue::Prefix(p) => v.starts_with(p.as_str()),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity(weight: u32) -> Affinity {
        Affinity {
            canary: "1.1.0".into(),
            weight,
            salt: "web#7".into(),
            header: Some(HeaderName::from_static("x-user-id")),
            cookie: Some("baton-bucket".into()),
            matches: vec![
                Match {
                    source: MatchSource::Header(HeaderName::from_static("x-canary")),
                    value: MatchValue::Equals("always".into()),
                },
                Match {
                    source: MatchSource::Cookie("region".into()),
                    value: MatchValue::Prefix("eu-".into()),
                },
            ],
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn targeting_rules_always_pick_the_canary() {
        let a = affinity(0);
        assert_eq!(
            a.decide(&headers(&[("x-canary", "always")]), || "k".into())
                .target,
            Some(Target::Canary)
        );
        assert_eq!(
            a.decide(&headers(&[("cookie", "a=1; region=eu-west")]), || "k"
                .into())
                .target,
            Some(Target::Canary)
        );
        assert_eq!(
            a.decide(
                &headers(&[("x-canary", "sometimes"), ("x-user-id", "u1")]),
                || "k".into()
            )
            .target,
            Some(Target::Stable)
        );
    }

    #[test]
    fn the_same_key_always_gets_the_same_release_and_raising_the_weight_only_adds_users() {
        let users: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let mut previous: Vec<bool> = vec![false; users.len()];
        for weight in [0, 5, 25, 50, 100] {
            let a = affinity(weight);
            let now: Vec<bool> = users
                .iter()
                .map(|u| {
                    let first = a
                        .decide(&headers(&[("x-user-id", u)]), || unreachable!())
                        .target;
                    let again = a
                        .decide(&headers(&[("x-user-id", u)]), || unreachable!())
                        .target;
                    assert_eq!(first, again);
                    first == Some(Target::Canary)
                })
                .collect();
            for (was, is) in previous.iter().zip(&now) {
                assert!(
                    !was || *is,
                    "a user on the canary stays there when the weight goes up"
                );
            }
            let share = now.iter().filter(|c| **c).count() as f64 / users.len() as f64;
            assert!(
                (share - weight as f64 / 100.0).abs() < 0.04,
                "weight {weight}: share {share}"
            );
            previous = now;
        }
    }

    #[test]
    fn the_header_wins_over_the_cookie_and_a_keyless_request_gets_a_cookie() {
        let a = affinity(50);
        let d = a.decide(&headers(&[]), || "fresh123".into());
        let set = d.set_cookie.unwrap();
        assert!(
            set.to_str()
                .unwrap()
                .starts_with("baton-bucket=fresh123; Path=/;"),
            "{set:?}"
        );
        let by_cookie = a.decide(
            &headers(&[("cookie", "baton-bucket=fresh123")]),
            || unreachable!(),
        );
        assert_eq!(
            by_cookie.target, d.target,
            "the next visit with the cookie lands where the first did"
        );
        assert!(by_cookie.set_cookie.is_none());
        let h = headers(&[("x-user-id", "alice"), ("cookie", "baton-bucket=fresh123")]);
        let by_header = a.decide(&h, || unreachable!());
        assert_eq!(
            by_header.target,
            a.decide(&headers(&[("x-user-id", "alice")]), || unreachable!())
                .target
        );
    }

    #[test]
    fn without_sticky_config_the_weight_decides() {
        let mut a = affinity(50);
        a.header = None;
        a.cookie = None;
        a.matches.clear();
        let d = a.decide(&headers(&[("x-user-id", "bob")]), || unreachable!());
        assert!(d.target.is_none() && d.set_cookie.is_none());
    }
}
