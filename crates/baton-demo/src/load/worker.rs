//! One load worker: a loop of GETs over a kept-alive or a fresh connection, paced and bounded.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::request::{self, Conn};
use super::{Sample, Shared};

/// Pause after a failed request when unpaced, so a dead target is not hammered in a hot loop
/// that fills memory with millions of identical failure samples.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Runs until cancelled or a bound is reached; returns the worker's samples.
pub(super) async fn run(shared: Arc<Shared>, id: usize, keepalive: bool) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut conn: Option<Conn> = None;
    let mut pacer = shared
        .cfg
        .rate_per_worker
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|rate| {
            let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
    loop {
        if let Some(pacer) = &mut pacer {
            tokio::select! {
                _ = pacer.tick() => {}
                () = shared.cancel.cancelled() => break,
                () = tokio::time::sleep_until(shared.deadline) => break,
            }
        }
        // Read the clock once so no sample can start after `max_duration`.
        let now = Instant::now();
        if shared.cancel.is_cancelled() || now >= shared.deadline || !shared.claim() {
            break;
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
        let started = now.duration_since(shared.started);
        let sample = one(&shared, id, keepalive, &mut conn, started).await;
        shared.record(&sample);
        let failed = sample.error.is_some();
        samples.push(sample);
        if failed && pacer.is_none() {
            tokio::select! {
                () = tokio::time::sleep(ERROR_BACKOFF) => {}
                () = shared.cancel.cancelled() => break,
            }
        }
    }
    samples
}

/// Makes one request, reusing `conn` for keep-alive workers and dropping it after an error.
async fn one(
    shared: &Shared,
    id: usize,
    keepalive: bool,
    conn: &mut Option<Conn>,
    started: Duration,
) -> Sample {
    let cfg = &shared.cfg;
    let attempt = async {
        let reusable = match conn.take() {
            Some(mut c) => c.ready().await.is_ok().then_some(c),
            None => None,
        };
        let mut c = match reusable {
            Some(c) => c,
            // The server closed the idle connection before we sent anything: a client pool
            // would simply open another one, so that is not a failed request.
            None => request::connect(cfg.target).await?,
        };
        let answer = request::get(&mut c, cfg.target, &cfg.path, id, !keepalive).await?;
        if keepalive {
            *conn = Some(c);
        }
        Ok::<_, String>(answer)
    };
    let result = tokio::time::timeout(cfg.request_timeout, attempt).await;
    let finished = shared.started.elapsed();
    let (status, version, error) = match result {
        Ok(Ok(a)) => (Some(a.status), a.version, None),
        Ok(Err(e)) => (None, None, Some(e)),
        Err(_) => {
            let msg = format!("timeout after {} ms", cfg.request_timeout.as_millis());
            (None, None, Some(msg))
        }
    };
    Sample {
        started,
        finished,
        status,
        version,
        error,
        keepalive,
    }
}
