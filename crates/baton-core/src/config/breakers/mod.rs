//! `[[apps.<name>.breakers]]`: circuit breakers on an app's routes, and
//! `[apps.<name>.outlier]`: ejection of instances that keep failing; their defaults and checks.

use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// A breaker's window unless told otherwise.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Fewest requests in the window before it is judged, unless told otherwise.
pub const DEFAULT_MIN_REQUESTS: u32 = 20;
/// How long a breaker stays open before probing, unless told otherwise.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
/// Probe requests admitted while half-open, unless told otherwise.
pub const DEFAULT_PROBES: u32 = 5;
/// The fallback's status unless told otherwise.
pub const DEFAULT_FALLBACK_STATUS: u16 = 503;
/// Largest fallback body: it is held in memory and sent on every refused request.
pub const MAX_FALLBACK_BODY: usize = 64 * 1024;
/// Most breakers per app: each request compares its path with every one of them.
pub const MAX_BREAKERS: usize = 64;

/// Consecutive errors of an instance before it is ejected, unless told otherwise.
pub const DEFAULT_CONSECUTIVE_ERRORS: u32 = 5;
/// The first ejection's length unless told otherwise (each next one is longer by as much).
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
/// The longest ejection unless told otherwise.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
/// The most of a release's instances ejected at once, in percent, unless told otherwise.
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;

/// `[apps.<name>.outlier]`: instances that keep failing leave the split for a while.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Errors in a row (5xx answers, timeouts, failed exchanges) that eject an instance.
    pub consecutive_errors: u32,
    /// The first ejection's length; the n-th lasts n times as long.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// The most of a release's instances ejected at once (never all of them).
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_errors: DEFAULT_CONSECUTIVE_ERRORS,
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
        }
    }
}

impl OutlierConfig {
    /// The key that is wrong and why, if any.
    pub(in crate::config) fn problem(&self) -> Option<(&'static str, String)> {
        if self.consecutive_errors == 0 {
            return Some(("consecutive_errors", "must be at least 1".into()));
        }
        if self.base_ejection.as_millis() == 0 {
            return Some(("base_ejection", "must be more than 0, e.g. \"30s\"".into()));
        }
        if self.max_ejection < self.base_ejection {
            return Some((
                "max_ejection",
                format!(
                    "{} is shorter than base_ejection {}",
                    self.max_ejection, self.base_ejection
                ),
            ));
        }
        if !(1..=100).contains(&self.max_ejection_percent) {
            return Some((
                "max_ejection_percent",
                format!(
                    "{} is out of range: use 1 to 100",
                    self.max_ejection_percent
                ),
            ));
        }
        None
    }
}

/// `[[apps.<name>.breakers]]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Its name, unique in the app (a-z, 0-9, '-', '_').
    pub name: String,
    /// The route it watches: a path prefix that matches whole segments (`/api` matches `/api`,
    /// `/api/x` and `/api?q`, not `/apis`). Empty (left out) only with `metric`: then it
    /// answers no request itself and only holds its flag off.
    #[serde(default)]
    pub path: String,
    /// An app metric it watches instead of the route's errors and latency: scraped from the
    /// unit's instances every second, it opens the breaker while out of `[min, max]`.
    #[serde(default)]
    pub metric: Option<crate::config::MetricConfig>,
    /// The sliding window judged.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Fewest requests in the window before it is judged.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// Opens when the window's error rate (5xx or no answer) is above this fraction.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Opens when the window's p99 latency (to the response head) is above this.
    #[serde(default)]
    pub max_p99: Option<Duration>,
    /// How long it stays open before probing.
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
    /// Probe requests admitted while half-open; all must succeed to close it.
    #[serde(default = "default_probes")]
    pub probes: u32,
    /// A flag that evaluates `off` while the breaker is not closed.
    #[serde(default)]
    pub flag: Option<String>,
    /// What the proxy answers itself while the breaker refuses a request; without it, 503.
    #[serde(default)]
    pub fallback: Option<FallbackConfig>,
}

/// `[apps.<name>.breakers.fallback]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// Its status.
    #[serde(default = "default_fallback_status")]
    pub status: u16,
    /// Its body (sent as `text/plain`, or `application/json` when it starts with `{` or `[`).
    #[serde(default)]
    pub body: String,
    /// Sent as `Retry-After` (whole seconds).
    #[serde(default)]
    pub retry_after: Option<Duration>,
}

fn default_window() -> Duration {
    DEFAULT_WINDOW
}
fn default_min_requests() -> u32 {
    DEFAULT_MIN_REQUESTS
}
fn default_cooldown() -> Duration {
    DEFAULT_COOLDOWN
}
fn default_probes() -> u32 {
    DEFAULT_PROBES
}
fn default_fallback_status() -> u16 {
    DEFAULT_FALLBACK_STATUS
}

impl BreakerConfig {
    /// Whether `path` (a request target's path, query included or not) is on its route.
    pub fn matches(&self, path: &[u8]) -> bool {
        !self.path.is_empty() && path_matches(self.path.as_bytes(), path)
    }
}

/// Whether the request path `path` is under `prefix`, by whole segments. A segment `*` of the
/// prefix matches any one non-empty segment: `/api/orders/*/items` matches
/// `/api/orders/7/items` and `/api/orders/7/items/3`, not `/api/orders/items`.
pub fn path_matches(prefix: &[u8], path: &[u8]) -> bool {
    if has_wildcard(prefix) {
        return pattern_matches(prefix, path);
    }
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with(b"/") || rest.is_empty() || rest[0] == b'/' || rest[0] == b'?'
}

/// Whether the prefix has `*` segments. On every request of the route: one byte scan (the
/// config allows `*` only as a whole segment).
fn has_wildcard(prefix: &[u8]) -> bool {
    prefix.contains(&b'*')
}

/// [`path_matches`] segment by segment, for a prefix with `*` segments.
fn pattern_matches(prefix: &[u8], path: &[u8]) -> bool {
    let path = path.split(|&b| b == b'?').next().unwrap_or(path);
    // A prefix that ends with '/' needs its segments and a '/' after them.
    let (prefix, slash) = match prefix.strip_suffix(b"/") {
        Some(p) => (p, true),
        None => (prefix, false),
    };
    let mut segments = path.split(|&b| b == b'/');
    let all = prefix.split(|&b| b == b'/').all(|want| {
        segments.next().is_some_and(|got| {
            if want == b"*" {
                !got.is_empty()
            } else {
                got == want
            }
        })
    });
    all && (!slash || segments.next().is_some())
}

/// Checks an app's breakers: the index of the first bad one, its key and what is wrong.
pub(super) fn validate(breakers: &[BreakerConfig]) -> Result<(), (usize, &'static str, String)> {
    if breakers.len() > MAX_BREAKERS {
        return Err((
            MAX_BREAKERS,
            "name",
            format!(
                "{} breakers; at most {MAX_BREAKERS} per app",
                breakers.len()
            ),
        ));
    }
    for (i, b) in breakers.iter().enumerate() {
        check(b).map_err(|(key, message)| (i, key, message))?;
        if breakers[..i].iter().any(|o| o.name == b.name) {
            return Err((
                i,
                "name",
                format!("{:?} appears twice: give each breaker its own name", b.name),
            ));
        }
    }
    Ok(())
}

fn check(b: &BreakerConfig) -> Result<(), (&'static str, String)> {
    let valid_name = !b.name.is_empty()
        && b.name.len() <= 64
        && b.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_name {
        return Err(("name", "use 1 to 64 of a-z, 0-9, '-' and '_'".into()));
    }
    let bad_star = b.path.split('/').any(|s| s.contains('*') && s != "*");
    if bad_star {
        return Err((
            "path",
            format!(
                "{:?}: '*' stands for one whole segment (\"/api/orders/*/items\"), not part of one",
                b.path
            ),
        ));
    }
    if b.path.is_empty() && b.metric.is_none() {
        return Err((
            "path",
            "a breaker watches a route (path = \"/api/orders\") or an app metric (metric = { name = \"...\", max = ... })".into(),
        ));
    }
    if let Some(m) = &b.metric {
        if b.max_error_rate.is_some() || b.max_p99.is_some() {
            let key = if b.max_error_rate.is_some() {
                "max_error_rate"
            } else {
                "max_p99"
            };
            return Err((
                key,
                "a metric breaker opens on its metric alone: remove max_error_rate and max_p99, or make a second breaker for the route".into(),
            ));
        }
        crate::config::canary::check_metric(m).map_err(|problem| ("metric", problem))?;
    }
    if !b.path.is_empty() && (!b.path.starts_with('/') || b.path.contains(['?', '#', ' '])) {
        return Err((
            "path",
            format!(
                "{:?} must be a path prefix starting with '/', without '?', '#' or spaces, e.g. \"/api/orders\"",
                b.path
            ),
        ));
    }
    if b.window.as_millis() < 100 {
        return Err(("window", "must be at least 100ms, e.g. \"10s\"".into()));
    }
    if b.min_requests == 0 {
        return Err(("min_requests", "must be at least 1".into()));
    }
    if b.metric.is_none() && b.max_error_rate.is_none() && b.max_p99.is_none() {
        return Err((
            "max_error_rate",
            "a breaker needs max_error_rate (e.g. 0.5), max_p99 (e.g. \"500ms\") or both".into(),
        ));
    }
    if let Some(rate) = b.max_error_rate
        && !(0.0..1.0).contains(&rate)
    {
        return Err((
            "max_error_rate",
            format!(
                "{rate} is out of range: use a fraction from 0 up to (not including) 1, e.g. 0.5"
            ),
        ));
    }
    if b.max_p99.is_some_and(|d| d.as_millis() == 0) {
        return Err(("max_p99", "must be more than 0, e.g. \"500ms\"".into()));
    }
    if b.cooldown.as_millis() == 0 {
        return Err(("cooldown", "must be more than 0, e.g. \"30s\"".into()));
    }
    if b.probes == 0 || b.probes > 1000 {
        return Err((
            "probes",
            format!("{} is out of range: use 1 to 1000", b.probes),
        ));
    }
    if let Some(flag) = &b.flag
        && (flag.is_empty()
            || flag.len() > 128
            || flag.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err((
            "flag",
            "must be a flag name: 1 to 128 characters, no spaces".into(),
        ));
    }
    if let Some(f) = &b.fallback {
        if !(200..=599).contains(&f.status) {
            return Err((
                "status",
                format!(
                    "{} is not a response status: use 200 to 599, e.g. 503",
                    f.status
                ),
            ));
        }
        if f.body.len() > MAX_FALLBACK_BODY {
            return Err((
                "body",
                format!("{} bytes; at most {MAX_FALLBACK_BODY}", f.body.len()),
            ));
        }
    }
    Ok(())
}

/// Where `key` of the `index`-th `[[apps.<app>.breakers]]` table (or of its `.fallback`) is
/// written; `None` when the breakers are not written as such tables.
pub(super) fn locate_entry(
    text: &str,
    app: &str,
    index: usize,
    key: &str,
) -> Option<(usize, usize)> {
    let mut seen = 0;
    let mut header = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let indent = raw.len() - raw.trim_start().len() + 1;
        if line.starts_with('[') {
            let name = line.split('#').next().unwrap_or("").trim();
            let table: String = name
                .chars()
                .filter(|c| !matches!(c, '[' | ']' | '"' | ' '))
                .collect();
            let ours = format!("apps.{app}.breakers");
            if name.starts_with("[[") && table == ours {
                if seen == index {
                    header = Some((i + 1, indent));
                } else if header.is_some() {
                    break;
                }
                seen += 1;
            } else if header.is_some() && table != format!("{ours}.fallback") {
                break;
            }
            continue;
        }
        if header.is_some()
            && line
                .split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        {
            return Some((i + 1, indent));
        }
    }
    header
}

#[cfg(test)]
mod tests;
