//! The service's own counters and their Prometheus text rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Request counters by route and status, plus the business counter for signups.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    // Keyed by the route's label, not the raw path, so random 404 paths cannot grow the map.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    signups: AtomicU64,
    in_flight: AtomicU64,
    /// Requests that carried `X-Baton-Shadow` (a dark launch's copies).
    shadow: AtomicU64,
}

/// Counts one request as in flight until dropped, even if the client goes away mid-handler.
pub(crate) struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub(crate) fn record(&self, route: &'static str, code: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((route, code)).or_insert(0) += 1;
    }

    /// Marks a request as being handled (the response body may still stream afterwards).
    pub(crate) fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    pub(crate) fn shadow(&self) {
        self.shadow.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn signup(&self) {
        self.signups.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP demo_requests_total Requests answered, by route and status code.\n");
        out.push_str("# TYPE demo_requests_total counter\n");
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for ((path, code), n) in requests {
            let _ = writeln!(
                out,
                "demo_requests_total{{path=\"{path}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP demo_signups_total Signups accepted by POST /signup.\n");
        out.push_str("# TYPE demo_signups_total counter\n");
        let _ = writeln!(
            out,
            "demo_signups_total {}",
            self.signups.load(Ordering::Relaxed)
        );
        out.push_str("# HELP demo_shadow_requests_total Requests that carried X-Baton-Shadow.\n");
        out.push_str("# TYPE demo_shadow_requests_total counter\n");
        let _ = writeln!(
            out,
            "demo_shadow_requests_total {}",
            self.shadow.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP demo_requests_in_flight Requests being handled, this scrape included.\n",
        );
        out.push_str("# TYPE demo_requests_in_flight gauge\n");
        let _ = writeln!(
            out,
            "demo_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_per_route_and_code() {
        let m = Metrics::default();
        m.record("/", 200);
        m.record("/", 200);
        m.record("/", 500);
        m.signup();
        let guard = m.begin();
        let text = m.render();
        assert!(text.contains("demo_requests_in_flight 1\n"), "{text}");
        drop(guard);
        assert!(m.render().contains("demo_requests_in_flight 0\n"));
        assert!(
            text.contains("demo_requests_total{path=\"/\",code=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("demo_requests_total{path=\"/\",code=\"500\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("demo_signups_total 1\n"), "{text}");
    }
}
