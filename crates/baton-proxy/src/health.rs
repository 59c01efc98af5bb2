//! Active health checks of one backend: `GET path` on a connection of the checker's own (never
//! the user traffic pool), thresholds of consecutive passes and failures.
//!
//! While the backend is healthy, its checks reuse one keep-alive connection: a TCP connection
//! and a client handshake per check were most of what an idle controller cost
//! (docs/benchmarks.md). A check still opens a new connection while the backend is not
//! healthy (it becomes healthy only by accepting new connections, as users' requests need),
//! after a failed check, when the backend closed the kept one, and at least every
//! [`CHECKS_PER_CONNECTION`] checks (a backend that stops accepting connections is then seen
//! even without user traffic to trip the passive checks).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use baton_h1::client::{self, BodyFraming, Outgoing};
use baton_h1::{Dial, Pool, RequestBody};
use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderValue};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backend::{Backend, Health};

/// Most checks sent on one connection before the checker opens a new one.
pub const CHECKS_PER_CONNECTION: u32 = 30;

/// How long the checker's kept connection may stay idle before it is closed (checks further
/// apart than this each open a connection).
const KEPT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most bytes of a response body read so that its connection can serve the next check; a
/// longer body closes the connection instead.
const MAX_DRAINED_BODY: usize = 64 * 1024;

/// How to check one backend.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Path to `GET`; a 2xx answer passes.
    pub path: String,
    /// Time between the starts of two checks.
    pub interval: Duration,
    /// Longest wait for one check (connect and response head).
    pub timeout: Duration,
    /// Consecutive passes that make a backend healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a backend unhealthy.
    pub unhealthy_threshold: u32,
}

/// Checks `backend` now and then every `check.interval` until the handle is aborted.
pub fn spawn_health_checker(backend: Arc<Backend>, check: HealthCheck) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(check.interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tally = Tally::new(backend.health());
        let mut probe = Probe::new(backend.addr(), backend.dial(), &check);
        loop {
            ticker.tick().await;
            let pass = probe.check(backend.health() == Health::Healthy).await;
            tracing::trace!(instance = %backend.instance(), pass, "health check");
            if let Some(health) = tally.observe(backend.health(), pass, &check) {
                backend.set_health(health);
            }
        }
    })
}

// === impl Probe ===

/// The checker's connection to one backend and the request it sends, encoded once.
struct Probe {
    /// Holds at most the one kept connection.
    pool: Arc<Pool>,
    request: Bytes,
    timeout: Duration,
    /// Checks sent since the kept connection was last dropped.
    sent: u32,
}

impl Probe {
    fn new(addr: SocketAddr, dial: Option<Arc<dyn Dial>>, check: &HealthCheck) -> Probe {
        let mut headers = HeaderMap::new();
        if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
            headers.insert(header::HOST, host);
        }
        headers.insert(header::USER_AGENT, HeaderValue::from_static("baton-health"));
        let request = client::encode_head(
            &Outgoing {
                method: &Method::GET,
                target: &check.path,
                headers: &headers,
            },
            BodyFraming::None,
        );
        Probe {
            pool: Pool::dialed(addr, dial, 0, check.timeout, KEPT_IDLE_TIMEOUT, 1),
            request,
            timeout: check.timeout,
            sent: 0,
        }
    }

    /// One check: a 2xx response head within the timeout passes. `reuse`: the kept
    /// connection may serve it (the backend is healthy).
    async fn check(&mut self, reuse: bool) -> bool {
        if !reuse || self.sent >= CHECKS_PER_CONNECTION {
            self.pool.close_idle();
            self.sent = 0;
        }
        self.sent += 1;
        let deadline = Instant::now() + self.timeout;
        let mut body = RequestBody::Empty;
        let sent = client::send_encoded(
            &self.pool,
            &self.request,
            &Method::GET,
            BodyFraming::None,
            &mut body,
        );
        let Ok(Ok(mut response)) = tokio::time::timeout_at(deadline, sent).await else {
            return false;
        };
        if !response.head.status.is_success() {
            return false;
        }
        // The verdict is in; the body is read only so that the connection can serve the next
        // check, within what is left of the timeout.
        let drained = tokio::time::timeout_at(deadline, drain(&mut response.body)).await;
        if let (Ok(true), Some(conn)) = (drained, response.body.take_reusable()) {
            self.pool.put(conn);
        }
        true
    }
}

/// Reads `body` to its end; false if it failed or ran past [`MAX_DRAINED_BODY`].
async fn drain(body: &mut baton_h1::UpstreamBody) -> bool {
    let mut read = 0;
    while let Some(data) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
        match data {
            Ok(data) => read += data.len(),
            Err(_) => return false,
        }
        if read > MAX_DRAINED_BODY {
            return false;
        }
    }
    true
}

/// Runs of consecutive results, turned into health changes.
#[derive(Debug)]
struct Tally {
    passes: u32,
    fails: u32,
    /// The health as last seen or set here: if it differs from the backend's, someone else
    /// (passive checks, re-adoption) moved it and the runs start over.
    seen: Health,
}

impl Tally {
    fn new(current: Health) -> Self {
        Self {
            passes: 0,
            fails: 0,
            seen: current,
        }
    }

    /// Records one result; returns the health to set, if it changes.
    fn observe(&mut self, current: Health, pass: bool, check: &HealthCheck) -> Option<Health> {
        if current != self.seen {
            self.passes = 0;
            self.fails = 0;
        }
        let change = if pass {
            self.passes = self.passes.saturating_add(1);
            self.fails = 0;
            (current != Health::Healthy && self.passes >= check.healthy_threshold.max(1))
                .then_some(Health::Healthy)
        } else {
            self.fails = self.fails.saturating_add(1);
            self.passes = 0;
            (current != Health::Unhealthy && self.fails >= check.unhealthy_threshold.max(1))
                .then_some(Health::Unhealthy)
        };
        self.seen = change.unwrap_or(current);
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        HealthCheck {
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    /// Feeds results in order and returns the health after each.
    fn run(start: Health, results: &[bool]) -> Vec<Health> {
        let mut tally = Tally::new(start);
        let mut health = start;
        results
            .iter()
            .map(|&pass| {
                if let Some(h) = tally.observe(health, pass, &check()) {
                    health = h;
                }
                health
            })
            .collect()
    }

    #[test]
    fn thresholds_of_consecutive_results() {
        use Health::*;
        assert_eq!(run(Starting, &[true, true]), [Starting, Healthy]);
        assert_eq!(
            run(Starting, &[true, false, true, true]),
            [Starting, Starting, Starting, Healthy]
        );
        assert_eq!(
            run(Healthy, &[false, false, true, false, false, false]),
            [Healthy, Healthy, Healthy, Healthy, Healthy, Unhealthy]
        );
        assert_eq!(
            run(Unhealthy, &[true, true, false]),
            [Unhealthy, Healthy, Healthy]
        );
    }

    #[test]
    fn a_change_made_elsewhere_restarts_the_count() {
        let mut tally = Tally::new(Health::Healthy);
        let c = check();
        assert_eq!(tally.observe(Health::Healthy, true, &c), None);
        assert_eq!(tally.observe(Health::Healthy, true, &c), None);
        // Passive checks marked it unhealthy: two fresh passes are needed, not one.
        assert_eq!(tally.observe(Health::Unhealthy, true, &c), None);
        assert_eq!(
            tally.observe(Health::Unhealthy, true, &c),
            Some(Health::Healthy)
        );
    }
}
