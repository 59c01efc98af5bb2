//! Dark launches: copies of live requests sent to a release that takes no user traffic, its
//! answers compared with production's. The request path only offers a copy to a bounded
//! queue (never waits); the queue's worker sends it, off the request path, to the dark release
//! and to a stable instance (and, for a sample, to a second stable instance to learn which
//! fields are noise, as Diffy does), and files the differences per route.

mod compare;
mod report;
mod send;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use baton_h1::RequestBody;
use bytes::Bytes;
use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{Semaphore, mpsc};

use crate::backend::Backend;
use crate::router::AppRoute;

pub use compare::{Answer, MAX_BODY, differences, route_template};
pub use report::{
    DarkReport, MAX_NOISE, MAX_ROUTES, MAX_SAMPLES, OTHER_ROUTE, RouteRecord, Sample, SampleAnswer,
};

/// Copies waiting to be sent; beyond it a copy is dropped and counted.
pub const QUEUE: usize = 256;
/// Copies being sent at once.
pub const IN_FLIGHT: usize = 32;
/// The first copies of each route always get a second stable answer, to learn its noise.
pub const NOISE_FIRST: u64 = 20;

/// How a dark launch copies and compares (`[apps.X.dark]`).
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Fraction of eligible requests copied, in `[0, 1]`.
    pub fraction: f64,
    /// The header every copy carries, with value `1`.
    pub header: HeaderName,
    /// Copy every method (dark write), not only GET, HEAD and OPTIONS.
    pub write: bool,
    /// Response headers compared besides status and body.
    pub compare_headers: Vec<HeaderName>,
    /// Longest wait for a copy's answer; later it is dropped and counted.
    pub timeout: Duration,
    /// Fraction of copies (after the first [`NOISE_FIRST`] of a route) also sent to a second
    /// stable instance to learn noise.
    pub noise_sample: f64,
}

/// One app's dark launch: its queue, counters and records. Lives as long as the deployment,
/// across routing table publishes.
#[derive(Debug)]
pub struct Mirror {
    inner: Arc<Inner>,
    queue: mpsc::Sender<Copy>,
}

#[derive(Debug)]
struct Inner {
    config: ArcSwap<MirrorConfig>,
    counters: report::Counters,
    routes: report::Routes,
}

/// The mirror target of a split: where an app's copies go, published with the split.
#[derive(Debug, Clone)]
pub struct MirrorRoute {
    /// The dark launch.
    pub mirror: Arc<Mirror>,
    /// The dark release's instances.
    pub dark: Vec<Arc<Backend>>,
}

/// A copy of one request.
#[derive(Debug)]
struct Copy {
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Bytes,
    dark: Arc<Backend>,
    /// Stable instances to compare with (none for a write).
    stable: Vec<Arc<Backend>>,
}

impl Mirror {
    /// Starts a dark launch's worker on the current tokio runtime. It ends with the mirror.
    pub fn new(config: MirrorConfig) -> Arc<Mirror> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let inner = Arc::new(Inner {
            config: ArcSwap::from_pointee(config),
            counters: report::Counters::default(),
            routes: report::Routes::default(),
        });
        tokio::spawn(work(rx, inner.clone()));
        Arc::new(Mirror { inner, queue })
    }

    /// Applies a reloaded config to the copies offered from now on.
    pub fn set_config(&self, config: MirrorConfig) {
        self.inner.config.store(Arc::new(config));
    }

    /// What the launch has seen so far.
    pub fn report(&self) -> DarkReport {
        self.inner.routes.report(&self.inner.counters)
    }
}

/// GET, HEAD and OPTIONS: what dark read copies.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Offers a copy of a request to `route`'s dark release, if it has one and the request is
/// drawn: never waits, drops and counts when the queue is full. `headers` builds the request's
/// end-to-end headers and is called only for a drawn request.
pub(crate) fn offer(
    route: &AppRoute,
    method: &Method,
    target: &str,
    headers: impl FnOnce() -> HeaderMap,
    body: &RequestBody,
    rng: &mut fastrand::Rng,
) {
    let Some(m) = &route.mirror else { return };
    let inner = &m.mirror.inner;
    let config = inner.config.load();
    if config.fraction <= 0.0 || (config.fraction < 1.0 && rng.f64() >= config.fraction) {
        return;
    }
    let c = &inner.counters;
    let safe = is_safe(method);
    if !safe && !config.write {
        c.skipped_method.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let body = match body {
        RequestBody::Inline(b) => b.clone(),
        b if http_body::Body::is_end_stream(b) => Bytes::new(),
        _ => {
            c.skipped_body.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let eligible: Vec<&Arc<Backend>> = m.dark.iter().filter(|b| b.is_eligible()).collect();
    let Some(dark) = (!eligible.is_empty()).then(|| eligible[rng.usize(..eligible.len())]) else {
        c.skipped_unready.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let stable = if safe {
        route
            .releases
            .iter()
            .filter(|r| r.weight > 0)
            .flat_map(|r| r.backends.iter())
            .filter(|b| b.is_eligible())
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let mut headers = headers();
    headers.insert(config.header.clone(), HeaderValue::from_static("1"));
    let copy = Copy {
        method: method.clone(),
        target: target.to_string(),
        headers,
        body,
        dark: dark.clone(),
        stable,
    };
    match m.mirror.queue.try_send(copy) {
        Ok(()) => c.copied.fetch_add(1, Ordering::Relaxed),
        Err(_) => c.dropped_queue_full.fetch_add(1, Ordering::Relaxed),
    };
}

/// Sends the queued copies, at most [`IN_FLIGHT`] at once.
async fn work(mut rx: mpsc::Receiver<Copy>, inner: Arc<Inner>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(copy) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            compare_copy(&inner, copy).await;
            drop(permit);
        });
    }
}

/// Sends one copy to the dark release and, once it answered, for a read to one or two stable
/// instances at the same time; learns noise from the two stable answers, then files the
/// differences.
async fn compare_copy(inner: &Inner, copy: Copy) {
    let config = inner.config.load_full();
    let route = route_template(copy.method.as_str(), &copy.target);
    let mut rng = fastrand::Rng::new();
    let primary = (!copy.stable.is_empty()).then(|| rng.usize(..copy.stable.len()));
    let learn = primary.is_some()
        && (inner.routes.compared(&route) < NOISE_FIRST || rng.f64() < config.noise_sample);
    let secondary = primary.filter(|_| learn).map(|p| {
        let n = copy.stable.len();
        if n > 1 {
            (p + 1 + rng.usize(..n - 1)) % n
        } else {
            p
        }
    });
    let send = |backend: Option<usize>| {
        let backend = backend.map(|i| copy.stable[i].clone());
        let (copy, config) = (&copy, &config);
        async move {
            match backend {
                Some(b) => send::send(&b, copy, config).await,
                None => None,
            }
        }
    };
    // The dark release first: one that is slow or down then costs the stable set nothing
    // (replays in bursts, as timed-out copies free their slots, slowed the users' p99).
    let c = &inner.counters;
    let Some(dark) = send::send(&copy.dark, &copy, &config).await else {
        c.dropped_failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    c.answered.fetch_add(1, Ordering::Relaxed);
    let (production, second) = tokio::join!(send(primary), send(secondary));
    let Some(production) = production else {
        inner.routes.not_compared(&route);
        return;
    };
    if let Some(second) = second {
        inner
            .routes
            .learn_noise(&route, differences(&production, &second));
    }
    let request = format!("{} {}", copy.method, copy.target);
    let fields = differences(&production, &dark);
    inner
        .routes
        .record(&route, &request, &production, &dark, fields);
}
