//! `[apps.<name>.canary]` and `[apps.<name>.analysis]`: canary steps, stickiness, targeting
//! rules, and the criteria the analysis judges a canary by.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::duration::{Duration, DurationError};

/// `[apps.<name>.canary]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The steps, in order; the last one must reach weight 100.
    #[serde(default = "default_steps")]
    pub steps: Vec<CanaryStep>,
    /// Same user -> same release.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// Requests matching any rule always go to the canary.
    #[serde(default, rename = "match")]
    pub matches: Vec<MatchRule>,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            steps: default_steps(),
            sticky: None,
            matches: Vec::new(),
        }
    }
}

/// The default canary: 5 % -> 25 % -> 50 % -> 100 %, 30 s, 30 s and 1 m apart.
pub fn default_steps() -> Vec<CanaryStep> {
    vec![
        CanaryStep {
            weight: Some(5),
            pause: Some(Pause::For(Duration::from_secs(30))),
        },
        CanaryStep {
            weight: Some(25),
            pause: Some(Pause::For(Duration::from_secs(30))),
        },
        CanaryStep {
            weight: Some(50),
            pause: Some(Pause::For(Duration::from_secs(60))),
        },
        CanaryStep {
            weight: Some(100),
            pause: None,
        },
    ]
}

/// One canary step: a weight, a pause, or both (`{ weight = 5, pause = "30s" }`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CanaryStep {
    /// Percent of requests for the canary from this step on (keeps the previous when absent).
    #[serde(default)]
    pub weight: Option<u32>,
    /// How long to hold before the next step (analysis must pass), or `"forever"`: until
    /// `baton promote`.
    #[serde(default)]
    pub pause: Option<Pause>,
}

/// A step's hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Hold this long.
    For(Duration),
    /// Hold until an operator promotes.
    Forever,
}

impl Serialize for Pause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pause::For(d) => d.serialize(s),
            Pause::Forever => s.serialize_str("forever"),
        }
    }
}

impl<'de> Deserialize<'de> for Pause {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Pause;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"30s\" or \"forever\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Pause, E> {
                if v == "forever" {
                    return Ok(Pause::Forever);
                }
                v.parse().map(Pause::For).map_err(|e| match e {
                    DurationError::TooLong { .. } => E::custom(e),
                    DurationError::Syntax { .. } => E::custom(format!(
                        "invalid pause {v:?}: expected a duration like \"30s\" or \"forever\""
                    )),
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// `sticky = { header = "x-user-id", cookie = "baton-bucket" }`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// The header holding the user key, when the app's clients send one.
    #[serde(default)]
    pub header: Option<String>,
    /// The cookie holding the key; the proxy sets it on a first visit without one.
    #[serde(default)]
    pub cookie: Option<String>,
}

/// `{ header = "x-canary", equals = "always" }` or `{ cookie = "region", prefix = "eu-" }`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// Match on this request header.
    #[serde(default)]
    pub header: Option<String>,
    /// Or on this cookie.
    #[serde(default)]
    pub cookie: Option<String>,
    /// The value equals this.
    #[serde(default)]
    pub equals: Option<String>,
    /// Or starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// What happens when a step's pause ends without enough data for a verdict.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// Wait for more data (an operator may promote or abort).
    #[default]
    Hold,
    /// Treat as a failure: roll back.
    Fail,
    /// Treat as a pass: go on.
    Pass,
}

/// `[apps.<name>.analysis]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Time between verdicts.
    pub interval: Duration,
    /// Requests per release per window before anything is judged.
    pub min_requests: u64,
    /// Absolute ceiling for the canary's error rate (5xx, failed connections, timeouts).
    pub max_error_rate: Option<f64>,
    /// Absolute ceiling for the canary's p99 latency.
    pub max_p99: Option<Duration>,
    /// Compare the canary with the stable release over the same window.
    pub compare: bool,
    /// Confidence for every statistical test (0.999: a 0.1 % chance of a false alarm per test).
    pub confidence: f64,
    /// Smallest latency slowdown the comparison fails on (canary median / stable median).
    pub min_latency_ratio: f64,
    /// Smallest latency slowdown in time the comparison fails on (canary typical latency minus
    /// the stable's); both this and `min_latency_ratio` must be exceeded.
    pub min_latency_increase: Duration,
    /// Smallest error-rate difference (absolute) the comparison fails on.
    pub min_error_diff: f64,
    /// What a step that ends without a verdict does.
    pub on_inconclusive: OnInconclusive,
    /// The apps' own metrics, scraped from each canary instance.
    pub metric: Vec<MetricConfig>,
    /// Where the apps serve their metrics.
    pub metrics_path: String,
    /// Latency is judged only from this long after a step starts: new instances are cold (and
    /// on a busy host, starved) for their first requests. Errors count from the first request.
    pub warmup: Duration,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            min_requests: 50,
            max_error_rate: Some(0.02),
            max_p99: None,
            compare: true,
            confidence: 0.999,
            min_latency_ratio: 1.5,
            min_latency_increase: Duration::from_millis(1),
            min_error_diff: 0.01,
            on_inconclusive: OnInconclusive::Hold,
            metric: Vec::new(),
            metrics_path: "/metrics".to_string(),
            warmup: Duration::from_secs(2),
        }
    }
}

/// `[[apps.<name>.analysis.metric]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// The metric name as the app exposes it.
    pub name: String,
    /// `rate` (a counter, judged per second) or `gauge`.
    #[serde(default)]
    pub kind: MetricKindConfig,
    /// Lowest acceptable value.
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest acceptable value.
    #[serde(default)]
    pub max: Option<f64>,
}

/// How a metric is read.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MetricKindConfig {
    /// A counter, judged as its rate per second over the window.
    #[default]
    Rate,
    /// A gauge, judged by its value.
    Gauge,
}

/// Checks a canary section; returns the key and message of the first problem.
pub fn validate_canary(c: &CanaryConfig) -> Result<(), (&'static str, String)> {
    if c.steps.is_empty() {
        return Err((
            "steps",
            "needs at least one step, e.g. [{ weight = 5, pause = \"30s\" }, { weight = 100 }]"
                .into(),
        ));
    }
    let mut last = 0;
    for (i, s) in c.steps.iter().enumerate() {
        if s.weight.is_none() && s.pause.is_none() {
            return Err((
                "steps",
                format!("step {} has neither weight nor pause", i + 1),
            ));
        }
        if let Some(w) = s.weight {
            if w == 0 || w > 100 {
                return Err((
                    "steps",
                    format!("step {} weight {w} is out of range: use 1 to 100", i + 1),
                ));
            }
            if w < last {
                return Err((
                    "steps",
                    format!(
                        "step {} weight {w} is below the previous {last}: weights only go up",
                        i + 1
                    ),
                ));
            }
            last = w;
        }
    }
    if last != 100 {
        return Err((
            "steps",
            format!("the last weight is {last}: the steps must reach {{ weight = 100 }}"),
        ));
    }
    if let Some(s) = &c.sticky
        && s.header.is_none()
        && s.cookie.is_none()
    {
        return Err(("sticky", "name a header, a cookie or both".into()));
    }
    for (i, m) in c.matches.iter().enumerate() {
        if m.header.is_some() == m.cookie.is_some() {
            return Err((
                "match",
                format!("rule {} must name exactly one of header or cookie", i + 1),
            ));
        }
        if m.equals.is_some() == m.prefix.is_some() {
            return Err((
                "match",
                format!("rule {} must give exactly one of equals or prefix", i + 1),
            ));
        }
    }
    Ok(())
}

/// Checks an analysis section; returns the key and message of the first problem.
pub fn validate_analysis(a: &AnalysisConfig) -> Result<(), (&'static str, String)> {
    if a.interval.as_millis() < 100 {
        return Err(("interval", "must be at least 100ms".into()));
    }
    if let Some(r) = a.max_error_rate
        && !(0.0..=1.0).contains(&r)
    {
        return Err((
            "max_error_rate",
            format!("{r} is not a fraction between 0 and 1"),
        ));
    }
    if !(0.5..1.0).contains(&a.confidence) {
        return Err((
            "confidence",
            format!(
                "{} must be at least 0.5 and below 1 (e.g. 0.99)",
                a.confidence
            ),
        ));
    }
    // NaN compares false with everything: every range below is written so that it fails.
    if !(a.min_latency_ratio >= 1.0 && a.min_latency_ratio.is_finite()) {
        return Err((
            "min_latency_ratio",
            format!("{} must be a number of at least 1.0", a.min_latency_ratio),
        ));
    }
    if !(0.0..=1.0).contains(&a.min_error_diff) {
        return Err((
            "min_error_diff",
            format!("{} is not a fraction between 0 and 1", a.min_error_diff),
        ));
    }
    if !a.metrics_path.starts_with('/') {
        return Err(("metrics_path", "must start with '/'".into()));
    }
    for m in &a.metric {
        check_metric(m).map_err(|problem| ("metric", problem))?;
    }
    Ok(())
}

/// What is wrong with a metric rule (`[[apps.<name>.analysis.metric]]`, a breaker's `metric`),
/// if anything.
pub(crate) fn check_metric(m: &MetricConfig) -> Result<(), String> {
    if m.name.is_empty() {
        return Err("a metric needs a name".into());
    }
    if m.name.chars().any(char::is_control) {
        return Err(format!(
            "{:?}: no metric name holds a control character, so it could never be found; remove it",
            m.name
        ));
    }
    if m.min.is_none() && m.max.is_none() {
        return Err(format!("{}: give min, max or both", m.name));
    }
    if m.min.iter().chain(&m.max).any(|v| !v.is_finite()) {
        return Err(format!("{:?}: min and max must be finite numbers", m.name));
    }
    if let (Some(min), Some(max)) = (m.min, m.max)
        && min > max
    {
        return Err(format!(
            "{:?}: min {min} is above max {max}, so no value could pass",
            m.name
        ));
    }
    Ok(())
}
