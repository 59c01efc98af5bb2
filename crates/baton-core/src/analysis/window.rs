//! The judges' inputs: one release's traffic over a window and the canary's app metric readings.

use serde::{Deserialize, Serialize};

/// One latency histogram bucket: `count` requests took between `low_us` (inclusive) and
/// `high_us` (exclusive) microseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Lower bound in microseconds, inclusive.
    pub low_us: u64,
    /// Upper bound in microseconds, exclusive.
    pub high_us: u64,
    /// Requests whose latency fell in `[low_us, high_us)`.
    pub count: u64,
}

/// One release's traffic over a window.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Window {
    /// Requests routed to the release in the window.
    pub requests: u64,
    /// Failed requests among them: 5xx responses, connect errors and timeouts.
    pub errors: u64,
    /// Latency histogram, buckets ascending and non-overlapping. Both releases of one
    /// judgement should use the same bucket bounds: equal bounds are what makes two samples a
    /// tie in the comparison.
    pub latency: Vec<Bucket>,
}

/// A reading of one app metric for the canary over the window. The controller turns a
/// counter into a rate (delta / seconds) before handing it over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricReading {
    /// Metric name, as in the rule that asks for it.
    pub name: String,
    /// The value, or `None` when the app does not expose it or there is no data.
    pub value: Option<f64>,
}

// === impl Window ===

impl Window {
    /// Errors, never more than the requests (counters read a moment apart may disagree).
    pub fn error_count(&self) -> u64 {
        self.errors.min(self.requests)
    }

    /// Share of requests that failed, or `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.error_count() as f64 / self.requests as f64)
    }

    /// Number of latency samples in the histogram.
    pub fn samples(&self) -> u64 {
        self.latency.iter().map(|b| b.count).sum()
    }

    /// Samples in buckets that start at or above `threshold_us`: the ones certainly no faster
    /// than the threshold. A bucket that straddles it is not counted, so this never overstates.
    pub fn samples_at_or_above(&self, threshold_us: u64) -> u64 {
        self.latency
            .iter()
            .filter(|b| b.low_us >= threshold_us)
            .map(|b| b.count)
            .sum()
    }

    /// The typical latency in microseconds: the geometric mean of the histogram (bucket
    /// midpoints, the open top bucket at its lower bound, nothing below 1 µs); `None` without
    /// samples. It equals the median for log-normal latency, and unlike a quantile it moves
    /// smoothly when many samples share a bucket or the distribution has several modes.
    pub fn typical_us(&self) -> Option<f64> {
        let total = self.samples();
        if total == 0 {
            return None;
        }
        let log_sum: f64 = self
            .latency
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| {
                let mid = if b.high_us == u64::MAX || b.high_us <= b.low_us {
                    b.low_us as f64
                } else {
                    (b.low_us as f64 + b.high_us as f64) / 2.0
                };
                b.count as f64 * mid.max(1.0).ln()
            })
            .sum();
        Some((log_sum / total as f64).exp())
    }

    /// The `q` quantile of latency in microseconds (`0.99` for p99), interpolated linearly
    /// inside its bucket; `None` without samples. The open top bucket (`high_us == u64::MAX`)
    /// reads as its lower bound.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let total = self.samples();
        if total == 0 {
            return None;
        }
        let mut buckets: Vec<&Bucket> = self.latency.iter().filter(|b| b.count > 0).collect();
        buckets.sort_by_key(|b| (b.low_us, b.high_us));
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0.0;
        for b in &buckets {
            let count = b.count as f64;
            if seen + count >= rank {
                if b.high_us == u64::MAX || b.high_us <= b.low_us {
                    return Some(b.low_us as f64);
                }
                let frac = ((rank - seen) / count).clamp(0.0, 1.0);
                return Some(b.low_us as f64 + frac * (b.high_us - b.low_us) as f64);
            }
            seen += count;
        }
        buckets.last().map(|b| b.low_us as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(buckets: &[(u64, u64, u64)]) -> Window {
        let latency = buckets
            .iter()
            .map(|&(low_us, high_us, count)| Bucket {
                low_us,
                high_us,
                count,
            })
            .collect();
        Window {
            requests: 0,
            errors: 0,
            latency,
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let w = window(&[(0, 100, 50), (100, 200, 50)]);
        assert_eq!(w.samples(), 100);
        assert_eq!(w.quantile_us(0.5), Some(100.0));
        assert_eq!(w.quantile_us(0.25), Some(50.0));
        assert_eq!(w.quantile_us(0.99), Some(198.0));
        assert_eq!(w.quantile_us(1.0), Some(200.0));
        assert_eq!(Window::default().quantile_us(0.5), None);
    }

    #[test]
    fn quantiles_ignore_bucket_order_and_read_the_open_top_as_its_floor() {
        let w = window(&[(1_000, u64::MAX, 10), (0, 10, 90)]);
        let median = w.quantile_us(0.5).unwrap();
        assert!((median - 500.0 / 90.0).abs() < 1e-9, "{median}");
        assert_eq!(w.quantile_us(0.99), Some(1_000.0));
    }

    #[test]
    fn the_typical_latency_is_the_geometric_mean_of_midpoints() {
        let w = window(&[
            (0, 2, 1),
            (90, 110, 1),
            (9_000, 11_000, 1),
            (20_000, u64::MAX, 0),
        ]);
        let typical = w.typical_us().unwrap();
        // Midpoints 1, 100 and 10 000: geometric mean 100.
        assert!((typical - 100.0).abs() < 1e-9, "{typical}");
        let top = window(&[(1_000, u64::MAX, 4)]);
        assert!((top.typical_us().unwrap() - 1_000.0).abs() < 1e-6);
        assert_eq!(Window::default().typical_us(), None);
    }

    #[test]
    fn exceedances_count_only_buckets_wholly_at_or_above() {
        let w = window(&[(0, 100, 5), (100, 200, 3), (200, 300, 2)]);
        assert_eq!(w.samples_at_or_above(100), 5);
        assert_eq!(w.samples_at_or_above(150), 2);
        assert_eq!(w.samples_at_or_above(301), 0);
    }

    #[test]
    fn error_rate_clamps_errors_to_requests() {
        let w = Window {
            requests: 10,
            errors: 12,
            latency: vec![],
        };
        assert_eq!(w.error_count(), 10);
        assert_eq!(w.error_rate(), Some(1.0));
        assert_eq!(Window::default().error_rate(), None);
    }
}
