//! The load generator: workers that send GETs at a target and record every response.
//!
//! Used by the demo, the end-to-end tests and the benchmarks to prove "zero failed requests"
//! during deploys. It runs on the caller's tokio runtime.

mod report;
mod request;
mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use report::{LoadReport, LoadStats, Sample};
pub use request::wait_until_serving;

/// What load to generate and for how long.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The address requests go to.
    pub target: SocketAddr,
    /// Path (and query) of every request, e.g. `/`.
    pub path: String,
    /// Workers that each reuse one keep-alive connection (reconnecting after an error).
    pub keepalive_workers: usize,
    /// Workers that open a new TCP connection for each request.
    pub fresh_conn_workers: usize,
    /// Requests per second per worker; `None` sends as fast as responses come back.
    pub rate_per_worker: Option<f64>,
    /// The run stops starting requests after this long.
    pub max_duration: Duration,
    /// The run stops after this many requests in total, over all workers.
    pub max_requests: u64,
    /// A request (connect included) that takes longer fails as a timeout.
    pub request_timeout: Duration,
}

impl LoadConfig {
    /// `GET /` from 4 keep-alive workers as fast as possible, for at most a minute, with a
    /// 5 s request timeout.
    pub fn new(target: SocketAddr) -> Self {
        LoadConfig {
            target,
            path: "/".into(),
            keepalive_workers: 4,
            fresh_conn_workers: 0,
            rate_per_worker: None,
            max_duration: Duration::from_secs(60),
            max_requests: u64::MAX,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A running load; stop it with [`Load::stop`] or wait for its bounds with [`Load::wait`].
///
/// Dropping it without stopping stops the workers too (their samples are lost).
#[derive(Debug)]
pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<Vec<Sample>>>,
}

/// State every worker reads and bumps.
#[derive(Debug)]
struct Shared {
    cfg: LoadConfig,
    started: Instant,
    deadline: Instant,
    cancel: CancellationToken,
    claimed: AtomicU64,
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    by_version: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    /// Takes one request from the `max_requests` budget; false when it is spent.
    fn claim(&self) -> bool {
        self.claimed.fetch_add(1, Ordering::Relaxed) < self.cfg.max_requests
    }

    fn record(&self, sample: &Sample) {
        let counter = if sample.is_ok() {
            &self.ok
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(v) = &sample.version {
            let mut by_version = self.by_version.lock().unwrap_or_else(|p| p.into_inner());
            *by_version.entry(v.clone()).or_insert(0) += 1;
        }
    }

    fn stats(&self) -> LoadStats {
        LoadStats {
            sent: self.sent.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            by_version: self
                .by_version
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

impl Load {
    /// Spawns the workers on the current tokio runtime. Panics outside a runtime.
    pub fn start(cfg: LoadConfig) -> Load {
        let started = Instant::now();
        let shared = Arc::new(Shared {
            deadline: started + cfg.max_duration,
            started,
            cancel: CancellationToken::new(),
            claimed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            by_version: Mutex::new(BTreeMap::new()),
            cfg,
        });
        let keepalive = (0..shared.cfg.keepalive_workers).map(|_| true);
        let fresh = (0..shared.cfg.fresh_conn_workers).map(|_| false);
        let workers = keepalive
            .chain(fresh)
            .enumerate()
            .map(|(id, keepalive)| tokio::spawn(worker::run(Arc::clone(&shared), id, keepalive)))
            .collect();
        Load { shared, workers }
    }

    /// Live counters while the load runs.
    pub fn snapshot(&self) -> LoadStats {
        self.shared.stats()
    }

    /// True once every worker has stopped (bounds reached or stopped).
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(JoinHandle::is_finished)
    }

    /// Stops the workers (requests in flight finish) and returns everything observed.
    pub async fn stop(self) -> LoadReport {
        self.shared.cancel.cancel();
        self.wait().await
    }

    /// Waits until the workers reach `max_duration` or `max_requests`, then reports.
    pub async fn wait(mut self) -> LoadReport {
        let mut samples = Vec::new();
        for handle in std::mem::take(&mut self.workers) {
            // A worker only ends by returning its samples; a panic would be a bug in it.
            if let Ok(mut s) = handle.await {
                samples.append(&mut s);
            }
        }
        samples.sort_by_key(|s| s.started);
        LoadReport {
            stats: self.shared.stats(),
            samples,
            elapsed: self.shared.started.elapsed(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}
