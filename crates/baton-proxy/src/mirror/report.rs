//! What a dark launch has seen so far: counters, the noise learned per route, and the
//! differences per route with a few samples. Bounded: [`MAX_ROUTES`] routes (the rest share
//! one), [`MAX_SAMPLES`] samples and [`MAX_NOISE`] noisy fields each.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::compare::Answer;

/// Routes tracked one by one; later ones are filed under [`OTHER_ROUTE`].
pub const MAX_ROUTES: usize = 100;
/// Samples of differences kept per route.
pub const MAX_SAMPLES: usize = 3;
/// Noisy fields learned per route.
pub const MAX_NOISE: usize = 64;
/// Body bytes shown in a sample.
pub const SAMPLE_BODY: usize = 2048;
/// Where routes beyond [`MAX_ROUTES`] are counted.
pub const OTHER_ROUTE: &str = "(other routes)";

/// Counters of one dark launch; every copy is counted once in `copied` or a `skipped_*`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) copied: AtomicU64,
    pub(crate) skipped_method: AtomicU64,
    pub(crate) skipped_body: AtomicU64,
    pub(crate) skipped_unready: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_failed: AtomicU64,
    pub(crate) answered: AtomicU64,
}

/// One route's record.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteRecord {
    /// Copies whose answers were compared with production's.
    pub compared: u64,
    /// Compared copies that differed beyond the learned noise.
    pub differing: u64,
    /// Copies answered but not compared (a write in dark-write mode, or no stable reference).
    pub not_compared: u64,
    /// How often each field differed.
    pub fields: BTreeMap<String, u64>,
    /// Fields that differ between two stable answers (ignored).
    pub noise: BTreeSet<String>,
    /// A few differing exchanges.
    pub samples: Vec<Sample>,
}

/// One differing exchange.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Method and target as the client sent them.
    pub request: String,
    /// Production's answer.
    pub production: SampleAnswer,
    /// The dark release's answer.
    pub dark: SampleAnswer,
    /// The fields that differed.
    pub fields: Vec<String>,
}

/// An answer as shown in a sample (body cut to [`SAMPLE_BODY`] bytes, lossy UTF-8).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleAnswer {
    /// The status code.
    pub status: u16,
    /// The compared headers.
    pub headers: BTreeMap<String, String>,
    /// The start of the body; none when it was too large to keep.
    pub body: Option<String>,
}

impl SampleAnswer {
    fn of(a: &Answer) -> SampleAnswer {
        SampleAnswer {
            status: a.status.as_u16(),
            headers: a.headers.clone(),
            body: a
                .body
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(SAMPLE_BODY)]).into_owned()),
        }
    }
}

/// A dark launch's report: what `baton dark` shows and the judge reads.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct DarkReport {
    /// Requests copied to the dark release (queued).
    pub copied: u64,
    /// Requests not copied because of their method (dark read).
    pub skipped_method: u64,
    /// Requests not copied because their body was streamed, not held whole.
    pub skipped_body: u64,
    /// Requests not copied because no dark instance could take them yet (it is starting, or
    /// failed its health checks).
    #[serde(default)]
    pub skipped_unready: u64,
    /// Copies dropped because the queue was full (the dark release is slow or down).
    pub dropped_queue_full: u64,
    /// Copies the dark release did not answer in time or at all.
    pub dropped_failed: u64,
    /// Copies the dark release answered.
    pub answered: u64,
    /// Copies compared, over every route.
    pub compared: u64,
    /// Compared copies that differed, over every route.
    pub differing: u64,
    /// Per route (`METHOD /path/:id`).
    pub routes: BTreeMap<String, RouteRecord>,
}

impl DarkReport {
    /// Differing / compared, 0 when nothing was compared.
    pub fn diff_rate(&self) -> f64 {
        if self.compared == 0 {
            0.0
        } else {
            self.differing as f64 / self.compared as f64
        }
    }
}

/// The routes' records, behind one lock taken off the request path (by the comparing tasks).
#[derive(Debug, Default)]
pub(crate) struct Routes(Mutex<BTreeMap<String, RouteRecord>>);

impl Routes {
    fn with<R>(&self, route: &str, f: impl FnOnce(&mut RouteRecord) -> R) -> R {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = if map.contains_key(route) || map.len() < MAX_ROUTES {
            route
        } else {
            OTHER_ROUTE
        };
        f(map.entry(key.to_string()).or_default())
    }

    /// Learns the fields in which two stable answers differ as noise.
    pub(crate) fn learn_noise(&self, route: &str, fields: Vec<String>) {
        self.with(route, |r| {
            for f in fields {
                if r.noise.len() < MAX_NOISE {
                    r.noise.insert(f);
                }
            }
        });
    }

    /// Records a compared copy; `fields` are all that differed, noise included.
    pub(crate) fn record(
        &self,
        route: &str,
        request: &str,
        production: &Answer,
        dark: &Answer,
        fields: Vec<String>,
    ) {
        self.with(route, |r| {
            r.compared += 1;
            let fields: Vec<String> = fields
                .into_iter()
                .filter(|f| !r.noise.contains(f))
                .collect();
            if fields.is_empty() {
                return;
            }
            r.differing += 1;
            for f in &fields {
                if r.fields.len() < MAX_NOISE || r.fields.contains_key(f) {
                    *r.fields.entry(f.clone()).or_default() += 1;
                }
            }
            if r.samples.len() < MAX_SAMPLES {
                r.samples.push(Sample {
                    request: request.chars().take(512).collect(),
                    production: SampleAnswer::of(production),
                    dark: SampleAnswer::of(dark),
                    fields,
                });
            }
        });
    }

    /// Records a copy answered but not compared.
    pub(crate) fn not_compared(&self, route: &str) {
        self.with(route, |r| r.not_compared += 1);
    }

    /// Whether the route has learned from fewer than `n` stable pairs' worth of noise samples.
    pub(crate) fn compared(&self, route: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(route).map_or(0, |r| r.compared)
    }

    pub(crate) fn report(&self, c: &Counters) -> DarkReport {
        let routes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DarkReport {
            copied: load(&c.copied),
            skipped_method: load(&c.skipped_method),
            skipped_body: load(&c.skipped_body),
            skipped_unready: load(&c.skipped_unready),
            dropped_queue_full: load(&c.dropped_queue_full),
            dropped_failed: load(&c.dropped_failed),
            answered: load(&c.answered),
            compared: routes.values().map(|r| r.compared).sum(),
            differing: routes.values().map(|r| r.differing).sum(),
            routes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;

    fn answer(body: &str) -> Answer {
        Answer {
            status: StatusCode::OK,
            headers: BTreeMap::new(),
            body: Some(Bytes::from(body.to_string())),
        }
    }

    #[test]
    fn noise_is_ignored_and_samples_are_bounded() {
        let routes = Routes::default();
        routes.learn_noise("GET /a", vec!["body.request_id".into()]);
        for _ in 0..10 {
            routes.record(
                "GET /a",
                "GET /a",
                &answer("{}"),
                &answer("{}"),
                vec!["body.request_id".into()],
            );
            routes.record(
                "GET /a",
                "GET /a",
                &answer("{}"),
                &answer("{}"),
                vec!["body.price".into(), "body.request_id".into()],
            );
        }
        let r = routes.report(&Counters::default());
        let a = &r.routes["GET /a"];
        assert_eq!((a.compared, a.differing), (20, 10));
        assert_eq!(a.samples.len(), MAX_SAMPLES);
        assert_eq!(a.samples[0].fields, vec!["body.price"]);
        assert_eq!(a.fields.len(), 1);
        assert_eq!(r.diff_rate(), 0.5);
    }

    #[test]
    fn routes_beyond_the_cap_share_one_record() {
        let routes = Routes::default();
        for i in 0..MAX_ROUTES + 10 {
            routes.not_compared(&format!("GET /r{i}"));
        }
        let r = routes.report(&Counters::default());
        assert_eq!(r.routes.len(), MAX_ROUTES + 1);
        assert_eq!(r.routes[OTHER_ROUTE].not_compared, 10);
    }
}
