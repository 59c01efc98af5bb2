//! What a load run observed: live counters, one sample per request, and questions asked of them.

use std::collections::BTreeMap;
use std::time::Duration;

/// Counters of a load run, readable while it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Requests started (including those still in flight).
    pub sent: u64,
    /// Requests answered with a 2xx status.
    pub ok: u64,
    /// Requests that failed: connection errors, timeouts and non-2xx answers.
    pub failed: u64,
    /// Responses per `"version"` found in the JSON body, whatever their status.
    pub by_version: BTreeMap<String, u64>,
}

/// One request as the client saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When the request started (including connecting), since the load started.
    pub started: Duration,
    /// When the response body was fully read or the request failed, since the load started.
    pub finished: Duration,
    /// The response status, if a response arrived.
    pub status: Option<u16>,
    /// The `"version"` of the JSON response body, if there was one.
    pub version: Option<String>,
    /// What went wrong before a complete response arrived (connect, send, body, timeout).
    pub error: Option<String>,
    /// Whether the request went over a reused keep-alive connection worker.
    pub keepalive: bool,
}

impl Sample {
    /// True for a complete 2xx response.
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// How long the request took from the client's point of view.
    pub fn latency(&self) -> Duration {
        self.finished.saturating_sub(self.started)
    }
}

/// Everything a finished load run observed.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// Final counters.
    pub stats: LoadStats,
    /// Every request, ordered by start time.
    pub samples: Vec<Sample>,
    /// Time from start to the moment every worker had stopped.
    pub elapsed: Duration,
}

impl LoadReport {
    /// The samples that failed: connection errors, timeouts and non-2xx responses.
    pub fn failures(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| !s.is_ok()).collect()
    }

    /// Blue-green atomicity: the samples that STARTED after the first sample that FINISHED with
    /// `new` and yet got another version. Empty means the switch was atomic for clients.
    ///
    /// Samples without a version (failures) are not counted here; see [`Self::failures`].
    pub fn served_old_after_new(&self, new: &str) -> Vec<&Sample> {
        let first_new = self
            .samples
            .iter()
            .filter(|s| s.version.as_deref() == Some(new))
            .map(|s| s.finished)
            .min();
        let Some(first_new) = first_new else {
            return Vec::new();
        };
        self.samples
            .iter()
            .filter(|s| s.started > first_new)
            .filter(|s| s.version.as_deref().is_some_and(|v| v != new))
            .collect()
    }

    /// The `q`-quantile (nearest rank, `q` in `[0, 1]`) of the latency of requests that got a
    /// response; `None` if there were none or `q` is out of range.
    pub fn latency_percentile(&self, q: f64) -> Option<Duration> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let mut latencies: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| s.status.is_some())
            .map(Sample::latency)
            .collect();
        if latencies.is_empty() {
            return None;
        }
        latencies.sort_unstable();
        let rank = (q * latencies.len() as f64).ceil() as usize;
        Some(latencies[rank.clamp(1, latencies.len()) - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(started: u64, finished: u64, version: Option<&str>) -> Sample {
        Sample {
            started: ms(started),
            finished: ms(finished),
            status: version.map(|_| 200),
            version: version.map(str::to_string),
            error: version.is_none().then(|| "connect: refused".to_string()),
            keepalive: true,
        }
    }

    fn report(samples: Vec<Sample>) -> LoadReport {
        LoadReport {
            stats: LoadStats::default(),
            samples,
            elapsed: ms(100),
        }
    }

    #[test]
    fn atomic_switch_has_no_old_after_new() {
        let r = report(vec![
            sample(0, 10, Some("1")),
            // Overlaps the first "2" response: started before it finished, so allowed.
            sample(5, 30, Some("1")),
            sample(8, 20, Some("2")),
            sample(21, 25, Some("2")),
        ]);
        assert!(r.served_old_after_new("2").is_empty());
    }

    #[test]
    fn old_version_started_after_first_new_is_reported() {
        let r = report(vec![
            sample(0, 10, Some("1")),
            sample(8, 20, Some("2")),
            sample(20, 24, Some("1")), // starts exactly when "2" finished: not after
            sample(21, 25, Some("1")),
            sample(22, 26, None), // a failure, not a version mix-up
            sample(23, 27, Some("2")),
        ]);
        let bad = r.served_old_after_new("2");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].started, ms(21));
    }

    #[test]
    fn no_new_version_means_nothing_to_report() {
        let r = report(vec![sample(0, 10, Some("1")), sample(11, 12, Some("1"))]);
        assert!(r.served_old_after_new("2").is_empty());
    }

    #[test]
    fn failures_include_errors_and_non_2xx() {
        let mut server_error = sample(0, 1, Some("1"));
        server_error.status = Some(503);
        let r = report(vec![
            sample(0, 1, Some("1")),
            sample(0, 1, None),
            server_error,
        ]);
        let failures = r.failures();
        assert_eq!(failures.len(), 2);
        assert!(failures.iter().any(|s| s.status == Some(503)));
        assert!(failures.iter().any(|s| s.status.is_none()));
    }

    #[test]
    fn percentiles_use_nearest_rank_over_responses() {
        let samples = (1..=100)
            .map(|i| sample(0, i, Some("1")))
            .chain([sample(0, 5000, None)]);
        let r = report(samples.collect());
        assert_eq!(r.latency_percentile(0.5), Some(ms(50)));
        assert_eq!(r.latency_percentile(0.99), Some(ms(99)));
        assert_eq!(r.latency_percentile(1.0), Some(ms(100)));
        assert_eq!(r.latency_percentile(0.0), Some(ms(1)));
        assert_eq!(r.latency_percentile(1.5), None);
        assert_eq!(report(vec![]).latency_percentile(0.5), None);
    }
}
