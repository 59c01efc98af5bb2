//! Active health checks of one backend: `GET path` on a connection of their own, thresholds
//! of consecutive passes and failures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::backend::{Backend, Health};

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
        loop {
            ticker.tick().await;
            let pass = probe(backend.addr(), &check.path, check.timeout).await;
            tracing::trace!(instance = %backend.instance(), pass, "health check");
            if let Some(health) = tally.observe(backend.health(), pass, &check) {
                backend.set_health(health);
            }
        }
    })
}

/// One check on a fresh connection, never the user traffic pool: a pooled connection could
/// pass while the instance refuses new ones.
async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        let request = Request::get(path)
            .header(header::HOST, addr.to_string())
            .header(header::USER_AGENT, "baton-health")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request);
        tokio::pin!(conn, response);
        let response = tokio::select! {
            response = &mut response => response,
            // With `Connection: close` the connection can end in the same poll that delivers
            // the response; the response is then ready (or failed) already.
            _ = &mut conn => response.await,
        };
        Some(response.ok()?.status().is_success())
    };
    matches!(
        tokio::time::timeout(timeout, exchange).await,
        Ok(Some(true))
    )
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
