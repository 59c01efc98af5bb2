//! What a step's analysis asks of the canary: thresholds, confidence and minimum effects.

use serde::{Deserialize, Serialize};

/// Requests the canary needs in the window before any check is judged.
pub const DEFAULT_MIN_REQUESTS: u64 = 50;
/// Confidence of every statistical test: a check fails only when `p < 1 - confidence`.
/// Strict on purpose: the controller judges every interval, and each judgement runs several
/// tests, so a looser level would add up to false rollbacks over a rollout.
pub const DEFAULT_CONFIDENCE: f64 = 0.999;
/// Minimum latency effect for the comparison: canary typical latency 50 % above the stable's.
pub const DEFAULT_MIN_LATENCY_RATIO: f64 = 1.5;
/// Default smallest latency increase (microseconds) the comparison fails on.
pub const DEFAULT_MIN_LATENCY_INCREASE_US: u64 = 1_000;
/// Minimum error-rate effect for the comparison: one percentage point above the stable's.
pub const DEFAULT_MIN_ERROR_DIFF: f64 = 0.01;

/// Whether an app metric is a counter read as a rate or a gauge read as is. The judge treats
/// both alike; the controller uses the kind to turn counters into rates (delta / seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A counter, judged as its rate per second over the window.
    Rate,
    /// A gauge, judged as its value at the end of the window.
    Gauge,
}

/// A range an app metric of the canary must stay in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRule {
    /// Metric name as the app exposes it on `/metrics` (summed over label sets).
    pub name: String,
    /// Counter (rate) or gauge.
    pub kind: MetricKind,
    /// Lowest acceptable value, if any.
    pub min: Option<f64>,
    /// Highest acceptable value, if any.
    pub max: Option<f64>,
}

/// The criteria of one step's analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Criteria {
    /// Requests (or latency samples) a release needs in the window before it is judged.
    pub min_requests: u64,
    /// Highest acceptable canary error rate (0..=1), if checked.
    pub max_error_rate: Option<f64>,
    /// Highest acceptable canary p99 latency in microseconds, if checked.
    pub max_p99_us: Option<u64>,
    /// Whether to compare the canary with the stable release over the same window.
    pub compare: bool,
    /// Ranges the canary's app metrics must stay in.
    pub metrics: Vec<MetricRule>,
    /// Confidence of the statistical tests, e.g. `0.999`: fail only when `p < 1 - confidence`.
    pub confidence: f64,
    /// Minimum latency effect for the comparison to fail: the canary's typical latency over
    /// the stable's, e.g. `1.5` for 50 % slower. Typical latency is the geometric mean (see
    /// [`Window::typical_us`](super::Window::typical_us)), the median for log-normal latency.
    pub min_latency_ratio: f64,
    /// Minimum absolute latency effect, in microseconds: the canary's typical latency must
    /// also be this much above the stable's. A cold canary process on a busy host is often
    /// 1.5-2x slower than warm stable ones for a sub-millisecond service; that is not what a
    /// user feels, and not a reason to roll back.
    pub min_latency_increase_us: u64,
    /// Minimum absolute error-rate difference (canary - stable) for the comparison to fail,
    /// e.g. `0.01`.
    pub min_error_diff: f64,
}

/// Why a set of criteria was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CriteriaError {
    /// `confidence` outside (0.5, 1).
    #[error("confidence {0} is out of range: use a value above 0.5 and below 1, e.g. 0.999")]
    Confidence(f64),
    /// `max_error_rate` outside [0, 1].
    #[error("max_error_rate {0} is out of range: use a share between 0 and 1, e.g. 0.05 for 5 %")]
    MaxErrorRate(f64),
    /// `min_latency_ratio` below 1 or not finite.
    #[error("min_latency_ratio {0} is out of range: use 1 or more, e.g. 1.5 for 50 % slower")]
    MinLatencyRatio(f64),
    /// `min_error_diff` outside [0, 1].
    #[error("min_error_diff {0} is out of range: use a share between 0 and 1, e.g. 0.01")]
    MinErrorDiff(f64),
    /// A metric rule without bounds, with a non-finite bound, or with `min > max`.
    #[error("metric {name:?}: {problem}")]
    MetricRule {
        /// The rule's metric name.
        name: String,
        /// What is wrong and how to fix it.
        problem: &'static str,
    },
}

// === impl Criteria ===

impl Default for Criteria {
    fn default() -> Self {
        Self {
            min_requests: DEFAULT_MIN_REQUESTS,
            max_error_rate: None,
            max_p99_us: None,
            compare: true,
            metrics: Vec::new(),
            confidence: DEFAULT_CONFIDENCE,
            min_latency_ratio: DEFAULT_MIN_LATENCY_RATIO,
            min_latency_increase_us: DEFAULT_MIN_LATENCY_INCREASE_US,
            min_error_diff: DEFAULT_MIN_ERROR_DIFF,
        }
    }
}

impl Criteria {
    /// The significance level every test uses: `1 - confidence`, or the default's when
    /// `confidence` is unusable (so a bad value never turns into a hair-trigger).
    pub fn alpha(&self) -> f64 {
        let c = if self.confidence > 0.5 && self.confidence < 1.0 {
            self.confidence
        } else {
            DEFAULT_CONFIDENCE
        };
        1.0 - c
    }

    /// Checks that every field is usable; the first problem found is returned.
    pub fn validate(&self) -> Result<(), CriteriaError> {
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return Err(CriteriaError::Confidence(self.confidence));
        }
        if let Some(max) = self.max_error_rate.filter(|max| !(0.0..=1.0).contains(max)) {
            return Err(CriteriaError::MaxErrorRate(max));
        }
        if !(self.min_latency_ratio >= 1.0 && self.min_latency_ratio.is_finite()) {
            return Err(CriteriaError::MinLatencyRatio(self.min_latency_ratio));
        }
        if !(0.0..=1.0).contains(&self.min_error_diff) {
            return Err(CriteriaError::MinErrorDiff(self.min_error_diff));
        }
        for rule in &self.metrics {
            let problem = match (rule.min, rule.max) {
                (None, None) => Some("no bounds: give min, max or both"),
                (min, max) if min.into_iter().chain(max).any(|v| !v.is_finite()) => {
                    Some("bounds must be finite numbers")
                }
                (Some(min), Some(max)) if min > max => Some("min is above max: swap them"),
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(CriteriaError::MetricRule {
                    name: rule.name.clone(),
                    problem,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_strict() {
        let c = Criteria::default();
        assert_eq!(c.validate(), Ok(()));
        assert!((c.alpha() - 0.001).abs() < 1e-12);
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let bad = |f: fn(&mut Criteria)| {
            let mut c = Criteria::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.confidence = 1.0), CriteriaError::Confidence(1.0));
        assert!(matches!(
            bad(|c| c.confidence = f64::NAN),
            CriteriaError::Confidence(_)
        ));
        assert_eq!(
            bad(|c| c.max_error_rate = Some(5.0)),
            CriteriaError::MaxErrorRate(5.0)
        );
        assert_eq!(
            bad(|c| c.min_latency_ratio = 0.5),
            CriteriaError::MinLatencyRatio(0.5)
        );
        assert_eq!(
            bad(|c| c.min_error_diff = -0.1),
            CriteriaError::MinErrorDiff(-0.1)
        );
        let rule = |min, max| MetricRule {
            name: "q".into(),
            kind: MetricKind::Gauge,
            min,
            max,
        };
        let mut c = Criteria {
            metrics: vec![rule(Some(2.0), Some(1.0))],
            ..Criteria::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("swap"));
        c.metrics = vec![rule(None, None)];
        assert!(c.validate().unwrap_err().to_string().contains("no bounds"));
        c.metrics = vec![rule(None, Some(f64::INFINITY))];
        assert!(c.validate().unwrap_err().to_string().contains("finite"));
        c.metrics = vec![rule(Some(0.0), None)];
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn an_unusable_confidence_falls_back_to_the_default_alpha() {
        let c = Criteria {
            confidence: 2.0,
            ..Criteria::default()
        };
        assert!((c.alpha() - 0.001).abs() < 1e-12);
        let c = Criteria {
            confidence: 0.99,
            ..Criteria::default()
        };
        assert!((c.alpha() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn criteria_round_trip_through_json_and_fill_defaults() {
        let c: Criteria = serde_json::from_str(r#"{"max_error_rate":0.05}"#).unwrap();
        assert_eq!(c.max_error_rate, Some(0.05));
        assert_eq!(c.min_requests, DEFAULT_MIN_REQUESTS);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Criteria>(&json).unwrap(), c);
    }
}
