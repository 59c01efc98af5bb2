//! Per-backend counters and the latency histogram: lock-free on the hot path, snapshot to read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use http::StatusCode;

/// Latencies below this many microseconds get a bucket each; above, every power of two is split
/// into this many log-spaced buckets, so a bucket is at most 1/16 (6.25 %) wide and a percentile
/// read from its midpoint is within ~3 % of the truth.
const SUB_BUCKETS: u64 = 16;
const SUB_BITS: u32 = 4;
/// Octaves above the linear range: the top bucket starts at 2^36 µs (~19 h), beyond any request.
const OCTAVES: usize = 33;
/// Number of latency buckets.
pub const BUCKETS: usize = (OCTAVES + 1) * SUB_BUCKETS as usize;

/// The bucket that counts a latency of `micros`.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    let msb = 63 - micros.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (micros >> shift) & (SUB_BUCKETS - 1);
    let idx = (shift as usize + 1) * SUB_BUCKETS as usize + sub as usize;
    idx.min(BUCKETS - 1)
}

/// The half-open range `[low, high)` of microseconds counted by bucket `idx`.
fn bucket_range(idx: usize) -> (u64, u64) {
    let idx = idx as u64;
    if idx < SUB_BUCKETS {
        return (idx, idx + 1);
    }
    let shift = idx / SUB_BUCKETS - 1;
    let sub = idx % SUB_BUCKETS;
    (
        (SUB_BUCKETS + sub) << shift,
        (SUB_BUCKETS + sub + 1) << shift,
    )
}

/// Live counters of one backend. Every method is a relaxed atomic add: they are statistics, and
/// a reader that sees them a moment late loses nothing.
pub(crate) struct Metrics {
    requests: AtomicU64,
    status: [AtomicU64; 5],
    connect_errors: AtomicU64,
    timeouts: AtomicU64,
    latency: Box<[AtomicU64]>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            status: Default::default(),
            connect_errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub(crate) fn status(&self, status: StatusCode) {
        if let Some(class) = status_class(status) {
            self.status[class].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn connect_error(&self) {
        self.connect_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn timeout(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }

    pub(crate) fn latency(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency[bucket_of(micros)].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            requests: self.requests.load(Relaxed),
            status: std::array::from_fn(|i| self.status[i].load(Relaxed)),
            connect_errors: self.connect_errors.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            latency: self.latency.iter().map(|b| b.load(Relaxed)).collect(),
        }
    }
}

/// `0` for 1xx .. `4` for 5xx.
fn status_class(status: StatusCode) -> Option<usize> {
    match status.as_u16() {
        100..=599 => Some(usize::from(status.as_u16() / 100 - 1)),
        _ => None,
    }
}

/// A copy of one backend's counters (or the sum of several, see [`MetricsSnapshot::merge`]).
///
/// Counters only grow, so the figures for a window are `later.since(&earlier)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Requests sent to the backend (a retried request counts on both backends it tried).
    pub requests: u64,
    /// Responses the client saw, by status class: `status[0]` is 1xx .. `status[4]` is 5xx.
    /// Errors the proxy answered for the backend (502 on connect error, 504 on timeout) count as 5xx.
    pub status: [u64; 5],
    /// Attempts that could not reach the backend (refused, connect timeout, closed before sending).
    pub connect_errors: u64,
    /// Requests whose response head did not arrive within the listener's `request_timeout`.
    pub timeouts: u64,
    /// Request latency histogram, [`BUCKETS`] log-spaced buckets in microseconds, from the
    /// request being sent to the response body being fully handed to the client.
    pub latency: Vec<u64>,
}

impl Default for MetricsSnapshot {
    fn default() -> Self {
        Self {
            requests: 0,
            status: [0; 5],
            connect_errors: 0,
            timeouts: 0,
            latency: vec![0; BUCKETS],
        }
    }
}

impl MetricsSnapshot {
    /// The latency histogram's non-empty buckets as `(low µs, high µs, count)`, ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.latency
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| {
                let (low, high) = bucket_range(i);
                (low, high, *c)
            })
    }

    /// Adds `other` into `self`, so the controller can aggregate per release or per app.
    pub fn merge(&mut self, other: &MetricsSnapshot) {
        self.requests += other.requests;
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a += b;
        }
        self.connect_errors += other.connect_errors;
        self.timeouts += other.timeouts;
        self.latency.resize(BUCKETS, 0);
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
    }

    /// What happened between `earlier` and `self` (both from the same backend or the same set).
    pub fn since(&self, earlier: &MetricsSnapshot) -> MetricsSnapshot {
        MetricsSnapshot {
            requests: self.requests.saturating_sub(earlier.requests),
            status: std::array::from_fn(|i| self.status[i].saturating_sub(earlier.status[i])),
            connect_errors: self.connect_errors.saturating_sub(earlier.connect_errors),
            timeouts: self.timeouts.saturating_sub(earlier.timeouts),
            latency: self
                .latency
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(earlier.latency.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// Number of latency samples.
    pub fn samples(&self) -> u64 {
        self.latency.iter().sum()
    }

    /// The `q` quantile of latency (`0.99` for p99), or `None` without samples. Accurate to the
    /// width of one bucket (about 3 % either side).
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        let total = self.samples();
        if total == 0 {
            return None;
        }
        // The sample of rank ceil(q * total), counting from 1.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (idx, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bucket_range(idx);
                return Some(Duration::from_micros(low + (high - low) / 2));
            }
        }
        None
    }

    /// Share of responses that were 5xx, or `None` if there were none at all.
    pub fn error_rate(&self) -> Option<f64> {
        let total: u64 = self.status.iter().sum();
        (total > 0).then(|| self.status[4] as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for v in [
            0,
            1,
            15,
            16,
            17,
            31,
            32,
            100,
            1_000,
            65_535,
            1_000_000,
            u64::MAX,
        ] {
            let b = bucket_of(v);
            assert!(b >= last, "bucket of {v} went backwards");
            last = b;
            let (low, high) = bucket_range(b);
            if b < BUCKETS - 1 {
                assert!(
                    low <= v && v < high,
                    "{v} not in [{low}, {high}) of bucket {b}"
                );
            }
        }
        for idx in 0..BUCKETS - 1 {
            assert_eq!(
                bucket_range(idx).1,
                bucket_range(idx + 1).0,
                "gap after bucket {idx}"
            );
        }
    }

    #[test]
    fn percentiles_are_within_a_few_percent() {
        let m = Metrics::new();
        for micros in 1..=10_000u64 {
            m.latency(Duration::from_micros(micros * 10));
        }
        let s = m.snapshot();
        for (q, want) in [(0.5, 50_000.0), (0.9, 90_000.0), (0.99, 99_000.0)] {
            let got = s.percentile(q).unwrap().as_micros() as f64;
            assert!(
                (got - want).abs() / want < 0.04,
                "p{q}: got {got}, want {want}"
            );
        }
        assert_eq!(MetricsSnapshot::default().percentile(0.5), None);
    }

    #[test]
    fn snapshots_merge_and_subtract() {
        let a = Metrics::new();
        a.request();
        a.status(StatusCode::OK);
        a.latency(Duration::from_millis(1));
        let b = Metrics::new();
        b.request();
        b.status(StatusCode::BAD_GATEWAY);
        b.connect_error();
        b.timeout();
        b.latency(Duration::from_millis(2));
        let mut sum = a.snapshot();
        sum.merge(&b.snapshot());
        assert_eq!(sum.requests, 2);
        assert_eq!(sum.status, [0, 1, 0, 0, 1]);
        assert_eq!((sum.connect_errors, sum.timeouts, sum.samples()), (1, 1, 2));
        assert_eq!(sum.error_rate(), Some(0.5));
        assert_eq!(sum.since(&a.snapshot()), {
            let mut only_b = MetricsSnapshot::default();
            only_b.merge(&b.snapshot());
            only_b
        });
    }
}
