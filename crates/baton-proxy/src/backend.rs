//! One instance as the proxy sees it: health, drain, in-flight count, its connection pool and
//! its metrics. Long-lived, shared by every routing table that includes it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::sync::Notify;

use crate::metrics::{Metrics, MetricsSnapshot};
use baton_h1::{Conn, Dial, Pool};

/// Longest wait for a TCP connection to a backend. Backends are local, so anything slower means
/// the instance is in trouble and another one should take the request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an idle keep-alive connection to a backend is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle keep-alive connections kept to one backend by each data plane worker (as nginx's
/// `keepalive`); past it the one idle the longest is closed. Well above the connections a
/// worker keeps busy at once under the benchmarks' load, so it only bounds what a burst leaves.
pub const POOL_MAX_IDLE: usize = 128;

/// Whether a backend passes its health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Started, has not yet passed `healthy_threshold` checks: takes no traffic.
    Starting,
    /// Passing: may take traffic (unless draining).
    Healthy,
    /// Failed `unhealthy_threshold` checks or `passive_threshold` connect errors: takes no traffic.
    Unhealthy,
}

impl Health {
    /// The name used in logs, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }

    fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Starting,
            1 => Health::Healthy,
            _ => Health::Unhealthy,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Health::Starting => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance as the proxy sees it.
pub struct Backend {
    instance: String,
    release: String,
    addr: SocketAddr,
    /// How its connections are opened, when not by a TCP connect to `addr` (an instance on
    /// another host: through the host's tunnel).
    dial: Option<Arc<dyn Dial>>,
    /// `Host` for a request that came without one.
    host: HeaderValue,
    health: AtomicU8,
    draining: AtomicBool,
    idle: Notify,
    passive_threshold: u32,
    connect_errors_in_a_row: AtomicU32,
    /// Its errors in a row and its ejection (`outlier.rs`).
    pub(crate) outlier: crate::outlier::OutlierState,
    /// One per data plane worker (see [`crate::workers`]): what a request changes is on its
    /// own worker's shard, so two cores never write the same cache line per request.
    shards: Box<[Shard]>,
}

/// What one worker keeps of a backend: its requests in flight, its connection pool (a
/// connection is only used by the thread whose runtime drives it) and its counters.
/// Aligned so that two shards never share a cache line (128: adjacent-line prefetch).
#[repr(align(128))]
pub(crate) struct Shard {
    in_flight: AtomicU64,
    pub(crate) pool: Arc<Pool>,
    pub(crate) metrics: Metrics,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("instance", &self.instance)
            .field("release", &self.release)
            .field("addr", &self.addr)
            .field("health", &self.health())
            .field("draining", &self.is_draining())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Backend {
    /// A backend for `instance` of `release` listening on `addr`, in [`Health::Starting`].
    /// `passive_threshold` consecutive connect errors mark it unhealthy (0 disables that).
    pub fn new(
        instance: String,
        release: String,
        addr: SocketAddr,
        passive_threshold: u32,
    ) -> Arc<Backend> {
        Backend::dialed(instance, release, addr, None, passive_threshold)
    }

    /// [`Backend::new`] whose connections (user traffic and health checks) `dial` opens, when
    /// given: `addr` is then only its name in `Host` and logs.
    pub fn dialed(
        instance: String,
        release: String,
        addr: SocketAddr,
        dial: Option<Arc<dyn Dial>>,
        passive_threshold: u32,
    ) -> Arc<Backend> {
        let host = HeaderValue::try_from(addr.to_string())
            .expect("a socket address is a valid header value");
        Arc::new(Backend {
            instance,
            release,
            addr,
            dial: dial.clone(),
            host,
            health: AtomicU8::new(Health::Starting.as_u8()),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
            passive_threshold,
            connect_errors_in_a_row: AtomicU32::new(0),
            outlier: Default::default(),
            shards: (0..crate::workers::slots())
                .map(|slot| Shard {
                    in_flight: AtomicU64::new(0),
                    pool: Pool::dialed(
                        addr,
                        dial.clone(),
                        slot,
                        CONNECT_TIMEOUT,
                        POOL_IDLE_TIMEOUT,
                        POOL_MAX_IDLE,
                    ),
                    metrics: Metrics::new(),
                })
                .collect(),
        })
    }

    /// The instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The release version the instance runs.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// Where the instance listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How its connections are opened, when not by a TCP connect to [`Backend::addr`].
    pub fn dial(&self) -> Option<Arc<dyn Dial>> {
        self.dial.clone()
    }

    pub(crate) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Its current health.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Relaxed))
    }

    /// Sets its health (re-adoption starts an instance `Healthy`; the checkers move it).
    pub fn set_health(&self, h: Health) {
        let old = Health::from_u8(self.health.swap(h.as_u8(), SeqCst));
        if h == Health::Healthy {
            // A fresh start: old connect errors say nothing about the instance now.
            self.connect_errors_in_a_row.store(0, Relaxed);
        }
        if old != h {
            tracing::info!(instance = %self.instance, release = %self.release, from = ?old, to = ?h, "backend health changed");
        }
    }

    /// Requests (and upgraded connections) currently being served by it.
    pub fn in_flight(&self) -> u64 {
        self.shards.iter().map(|s| s.in_flight.load(SeqCst)).sum()
    }

    /// Requests in flight on it from the calling worker: what that worker balances on, as each
    /// nginx worker balances its own connections, without reading the other cores' counters.
    pub(crate) fn local_in_flight(&self) -> u64 {
        self.local().in_flight.load(Relaxed)
    }

    /// The calling worker's shard.
    pub(crate) fn local(&self) -> &Shard {
        &self.shards[crate::workers::current_slot()]
    }

    /// Stops every new request from reaching it, even from a routing table loaded before.
    pub fn start_drain(&self) {
        self.draining.store(true, SeqCst);
    }

    /// Whether [`Backend::start_drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    /// Healthy and not draining: may be sent a new request (docs/DESIGN.md I1).
    pub fn is_eligible(&self) -> bool {
        self.health() == Health::Healthy && !self.draining.load(Relaxed)
    }

    /// Waits until nothing is in flight. After [`Backend::start_drain`], `true` means no request
    /// is or ever will be in flight on it; `false` means `timeout` passed first.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the check and the await is seen.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    /// Drops the pooled idle keep-alive connections to it. Connections in use finish their
    /// exchange and are then closed instead of being pooled.
    pub fn close_idle_connections(&self) {
        for shard in &self.shards {
            shard.pool.close_idle();
        }
    }

    /// Drops the pooled idle connections opened under an older epoch of its dialer (see
    /// `Dial::epoch`): a restarted agent's old tunnel then sees them closed at once.
    pub fn close_stale_connections(&self) {
        for shard in &self.shards {
            shard.pool.close_stale();
        }
    }

    /// Returns a connection to the pool it was taken from.
    pub(crate) fn put_conn(&self, conn: Conn) {
        self.shards[conn.slot()].pool.put(conn);
    }

    /// A copy of its counters: the sum of every worker's.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut sum = self.shards[0].metrics.snapshot();
        for shard in &self.shards[1..] {
            sum.merge(&shard.metrics.snapshot());
        }
        sum
    }

    /// A connect error: counts toward `passive_threshold`.
    pub(crate) fn note_connect_error(&self) {
        self.local().metrics.connect_error();
        let in_a_row = self.connect_errors_in_a_row.fetch_add(1, Relaxed) + 1;
        if self.passive_threshold > 0
            && in_a_row >= self.passive_threshold
            && self.health() == Health::Healthy
        {
            tracing::warn!(instance = %self.instance, in_a_row, "backend refused connections; marking unhealthy");
            self.set_health(Health::Unhealthy);
        }
    }

    /// A response arrived: the run of connect errors is over.
    pub(crate) fn note_reachable(&self) {
        // Read first so the common case does not write a line every core shares.
        if self.connect_errors_in_a_row.load(Relaxed) != 0 {
            self.connect_errors_in_a_row.store(0, Relaxed);
        }
    }

    /// Ends one request counted on shard `slot`. A drain waiting for the total to reach zero
    /// is told whenever a shard does, and sums them again.
    fn release_one(&self, slot: usize) {
        if self.shards[slot].in_flight.fetch_sub(1, SeqCst) == 1 && self.draining.load(SeqCst) {
            self.idle.notify_waiters();
        }
    }
}

// === impl InFlight ===

/// One request (or upgraded connection) counted in a backend's in-flight total until dropped.
/// On drop it also records the latency since it was started, unless told not to.
#[derive(Debug)]
pub(crate) struct InFlight {
    backend: Arc<Backend>,
    /// The shard it is counted on.
    slot: usize,
    started: Option<Instant>,
}

impl InFlight {
    /// Counts a new request on `backend`, or `None` if it started draining meanwhile: the
    /// increment comes before the check (all SeqCst: `start_drain` stores before `wait_idle`
    /// sums the shards), so either `wait_idle` sees this request or this request sees the drain.
    pub(crate) fn acquire(backend: &Arc<Backend>) -> Option<InFlight> {
        let slot = crate::workers::current_slot();
        backend.shards[slot].in_flight.fetch_add(1, SeqCst);
        if backend.draining.load(SeqCst) {
            backend.release_one(slot);
            return None;
        }
        Some(InFlight {
            backend: backend.clone(),
            slot,
            started: Some(Instant::now()),
        })
    }

    /// The counters of the shard it is counted on.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.backend.shards[self.slot].metrics
    }

    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Records the latency now and not again on drop (failed attempts, upgrades).
    pub(crate) fn record_latency_now(&mut self) {
        if let Some(started) = self.started.take() {
            self.backend.shards[self.slot]
                .metrics
                .latency(started.elapsed());
        }
    }

    /// Drop without recording latency (an attempt that never reached the backend).
    pub(crate) fn skip_latency(&mut self) {
        self.started = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.record_latency_now();
        self.backend.release_one(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> Arc<Backend> {
        Backend::new(
            "web-1".into(),
            "1.0.0".into(),
            "127.0.0.1:9".parse().unwrap(),
            3,
        )
    }

    #[test]
    fn starts_starting_and_only_healthy_undrained_is_eligible() {
        let b = backend();
        assert_eq!(b.health(), Health::Starting);
        assert!(!b.is_eligible());
        b.set_health(Health::Healthy);
        assert!(b.is_eligible());
        b.start_drain();
        assert!(b.is_draining() && !b.is_eligible());
    }

    #[test]
    fn acquire_refuses_after_drain_and_leaves_count_unchanged() {
        let b = backend();
        let guard = InFlight::acquire(&b).unwrap();
        assert_eq!(b.in_flight(), 1);
        b.start_drain();
        assert!(InFlight::acquire(&b).is_none());
        assert_eq!(b.in_flight(), 1);
        drop(guard);
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn passive_threshold_marks_unhealthy_and_success_resets_the_run() {
        let b = backend();
        b.set_health(Health::Healthy);
        b.note_connect_error();
        b.note_connect_error();
        b.note_reachable();
        b.note_connect_error();
        b.note_connect_error();
        assert_eq!(b.health(), Health::Healthy);
        b.note_connect_error();
        assert_eq!(b.health(), Health::Unhealthy);
        assert_eq!(b.metrics().connect_errors, 5);
    }

    #[tokio::test]
    async fn wait_idle_waits_for_the_last_request() {
        let b = backend();
        let guard = InFlight::acquire(&b).unwrap();
        b.start_drain();
        assert!(!b.wait_idle(Duration::from_millis(1)).await);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.wait_idle(Duration::from_secs(60)).await }
        });
        drop(guard);
        assert!(waiter.await.unwrap());
    }
}
