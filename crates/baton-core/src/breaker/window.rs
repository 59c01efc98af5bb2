//! The sliding window a breaker judges: requests, errors and slow answers over the last
//! `window`, kept in ten buckets that rotate as time passes (no per-request allocation).

use crate::model::Millis;

/// Buckets per window: a request leaves the window at most a tenth of it late.
pub const BUCKETS: usize = 10;

/// Upper bounds (ms) of the latency histogram used to report a p99; the last is open.
const LATENCY_BOUNDS: [u64; 24] = [
    1,
    2,
    5,
    10,
    20,
    30,
    50,
    75,
    100,
    150,
    200,
    300,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    7_500,
    10_000,
    20_000,
    60_000,
    u64::MAX,
];

/// What the open last bucket of the histogram is reported as.
const OPEN_BUCKET_MS: u64 = 120_000;

/// One bucket's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    requests: u64,
    errors: u64,
    /// Answers slower than the breaker's `max_p99`.
    slow: u64,
    latency: [u32; LATENCY_BOUNDS.len()],
}

/// What the window holds now: the figures a transition reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Figures {
    /// Requests that ended in the window.
    pub requests: u64,
    /// Of those, errors (5xx, or no answer from an instance).
    pub errors: u64,
    /// Of those, answers slower than `max_p99`.
    pub slow: u64,
    /// `errors / requests` (0 without requests).
    pub error_rate: f64,
    /// The 99th percentile latency in ms, as the upper bound of its histogram bucket.
    pub p99_ms: Option<u64>,
}

/// Counts over the last `span` ms in [`BUCKETS`] buckets.
#[derive(Debug, Clone)]
pub struct Window {
    bucket_ms: i64,
    buckets: [Bucket; BUCKETS],
    /// Start of the bucket `head` counts into.
    head_start: Millis,
    head: usize,
}

impl Window {
    /// An empty window over `span_ms` (at least [`BUCKETS`] ms), starting at `now`.
    pub fn new(span_ms: u64, now: Millis) -> Window {
        let bucket_ms = (span_ms / BUCKETS as u64).max(1) as i64;
        Window {
            bucket_ms,
            buckets: [Bucket::default(); BUCKETS],
            head_start: now,
            head: 0,
        }
    }

    /// Forgets everything counted (after a breaker closes or opens).
    pub fn clear(&mut self, now: Millis) {
        self.buckets = [Bucket::default(); BUCKETS];
        self.head_start = now;
        self.head = 0;
    }

    /// Moves the head to the bucket holding `now`, emptying the buckets that left the window.
    /// A clock that went back counts into the head bucket.
    fn advance(&mut self, now: Millis) {
        let steps = (now - self.head_start).div_euclid(self.bucket_ms);
        if steps <= 0 {
            return;
        }
        if steps as usize >= BUCKETS {
            self.clear(now - (now - self.head_start).rem_euclid(self.bucket_ms));
            return;
        }
        for _ in 0..steps {
            self.head = (self.head + 1) % BUCKETS;
            self.buckets[self.head] = Bucket::default();
        }
        self.head_start += steps * self.bucket_ms;
    }

    /// Counts one request that ended at `now`.
    pub fn record(&mut self, now: Millis, error: bool, slow: bool, latency_ms: u64) {
        self.advance(now);
        let b = &mut self.buckets[self.head];
        b.requests += 1;
        b.errors += u64::from(error);
        b.slow += u64::from(slow);
        let i = LATENCY_BOUNDS
            .iter()
            .position(|&bound| latency_ms <= bound)
            .unwrap_or(LATENCY_BOUNDS.len() - 1);
        b.latency[i] = b.latency[i].saturating_add(1);
    }

    /// The figures of the window that ends at `now`.
    pub fn figures(&mut self, now: Millis) -> Figures {
        self.advance(now);
        let mut total = Bucket::default();
        for b in &self.buckets {
            total.requests += b.requests;
            total.errors += b.errors;
            total.slow += b.slow;
            for (t, n) in total.latency.iter_mut().zip(b.latency) {
                *t = t.saturating_add(n);
            }
        }
        Figures {
            requests: total.requests,
            errors: total.errors,
            slow: total.slow,
            error_rate: ratio(total.errors, total.requests),
            p99_ms: p99(&total.latency, total.requests),
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn p99(latency: &[u32], requests: u64) -> Option<u64> {
    if requests == 0 {
        return None;
    }
    // The smallest bucket bound below which at least 99 % of requests ended.
    let need = requests - requests / 100;
    let mut seen = 0u64;
    for (i, &n) in latency.iter().enumerate() {
        seen += u64::from(n);
        if seen >= need {
            // Beyond the last finite bound: reported as twice it.
            return Some(LATENCY_BOUNDS[i].min(OPEN_BUCKET_MS));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_leave_the_window_as_time_passes() {
        let mut w = Window::new(10_000, 0);
        w.record(0, true, false, 5);
        w.record(4_999, false, false, 5);
        let f = w.figures(5_000);
        assert_eq!((f.requests, f.errors), (2, 1));
        assert_eq!(f.error_rate, 0.5);
        // The first bucket (0..1000) left at 10 000; the one of 4 999 stays until 14 000.
        let f = w.figures(10_500);
        assert_eq!((f.requests, f.errors), (1, 0));
        assert_eq!(w.figures(14_000).requests, 0);
    }

    #[test]
    fn a_long_gap_empties_the_window() {
        let mut w = Window::new(1_000, 0);
        w.record(50, true, false, 1);
        assert_eq!(w.figures(1_000_000).requests, 0);
        w.record(1_000_010, true, false, 1);
        assert_eq!(w.figures(1_000_020).errors, 1);
    }

    #[test]
    fn a_clock_that_goes_back_counts_in_the_head() {
        let mut w = Window::new(1_000, 5_000);
        w.record(4_000, true, false, 1);
        assert_eq!(w.figures(5_000).errors, 1);
    }

    #[test]
    fn p99_is_the_bucket_bound_of_the_99th_percentile() {
        let mut w = Window::new(10_000, 0);
        for _ in 0..99 {
            w.record(1, false, false, 8);
        }
        w.record(1, false, true, 900);
        assert_eq!(w.figures(2).p99_ms, Some(10));
        w.record(1, false, true, 900);
        assert_eq!(w.figures(2).p99_ms, Some(1_000));
        assert_eq!(Window::new(1, 0).figures(0).p99_ms, None);
    }
}
