//! Outlier ejection in the data plane: an instance whose answers fail `consecutive_errors`
//! times in a row is skipped by backend selection for a while, as an unhealthy one is, but
//! never more than `max_ejection_percent` of its release's instances at once (Envoy's).
//!
//! A success costs one relaxed load (and a store only after a failure); a failure loads the
//! app's config. An ejection ends by itself: the first selection after its time clears it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use baton_core::breaker::outlier::{ejection_ms, may_eject, remembered_ejections};
use baton_core::config::OutlierConfig;

use crate::backend::Backend;
use crate::router::{AppRoute, Router};

/// One backend's run of errors and its ejection.
#[derive(Debug, Default)]
pub(crate) struct OutlierState {
    in_a_row: AtomicU32,
    ejected: AtomicBool,
    /// Unix ms the ejection ends.
    until: AtomicI64,
    ejections: AtomicU32,
}

impl OutlierState {
    /// Whether selection skips it now; an ejection whose time is over is cleared here.
    pub(crate) fn is_ejected(&self) -> bool {
        if !self.ejected.load(Relaxed) {
            return false;
        }
        if now_ms() < self.until.load(Relaxed) {
            return true;
        }
        self.ejected.store(false, Relaxed);
        false
    }
}

/// An instance ejected now, as the API shows it.
#[derive(Debug, Clone)]
pub struct Ejected {
    /// The instance.
    pub instance: String,
    /// Its release.
    pub release: String,
    /// When its ejection ends (unix ms).
    pub until: i64,
    /// How many of its ejections count (each lasts longer; one is forgotten per
    /// `base_ejection` it serves without one).
    pub ejections: u32,
}

/// One app's outlier config, as a listener holds it.
pub(crate) type AppOutlier = Arc<ArcSwapOption<OutlierConfig>>;

/// Every app's outlier config.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    apps: Mutex<HashMap<String, AppOutlier>>,
}

impl Registry {
    /// `app`'s config slot, made empty on first use.
    pub(crate) fn of(&self, app: &str) -> AppOutlier {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.entry(app.to_string()).or_default().clone()
    }
}

impl Router {
    /// Puts `config` in force for `app` (`None`: no ejection; ejections in course run out).
    pub fn set_outlier(&self, app: &str, config: Option<&OutlierConfig>) {
        let slot = self.outliers.of(app);
        if slot.load().as_deref() != config {
            slot.store(config.cloned().map(Arc::new));
        }
    }

    /// `app`'s instances ejected now.
    pub fn ejected(&self, app: &str) -> Vec<Ejected> {
        let table = self.current();
        let Some(route) = table.apps.get(app) else {
            return Vec::new();
        };
        route
            .releases
            .iter()
            .flat_map(|r| r.backends.iter())
            .filter(|b| b.outlier.is_ejected())
            .map(|b| Ejected {
                instance: b.instance().to_string(),
                release: b.release().to_string(),
                until: b.outlier.until.load(Relaxed),
                ejections: b.outlier.ejections.load(Relaxed),
            })
            .collect()
    }
}

/// Counts one answer of `backend` (in `route`): an error extends its run, and a run as long as
/// the app's `consecutive_errors` ejects it if its release can spare it.
pub(crate) fn note(config: &AppOutlier, route: &AppRoute, backend: &Backend, error: bool) {
    let state = &backend.outlier;
    if !error {
        if state.in_a_row.load(Relaxed) != 0 {
            state.in_a_row.store(0, Relaxed);
        }
        return;
    }
    let Some(config) = config.load_full() else {
        return;
    };
    let in_a_row = state.in_a_row.fetch_add(1, Relaxed) + 1;
    if in_a_row < config.consecutive_errors || state.is_ejected() {
        return;
    }
    let Some(release) = route
        .releases
        .iter()
        .find(|r| r.release == backend.release())
    else {
        return;
    };
    let ejected = release
        .backends
        .iter()
        .filter(|b| b.outlier.is_ejected())
        .count();
    if !may_eject(&config, ejected, release.backends.len()) {
        return;
    }
    let now = now_ms();
    let before = state.ejections.load(Relaxed);
    let ejections = remembered_ejections(&config, before, state.until.load(Relaxed), now) + 1;
    state.ejections.store(ejections, Relaxed);
    let ms = ejection_ms(&config, ejections);
    state.until.store(now.saturating_add(ms as i64), Relaxed);
    state.in_a_row.store(0, Relaxed);
    state.ejected.store(true, Relaxed);
    tracing::warn!(instance = %backend.instance(), in_a_row, ejections, ms, "instance ejected after errors in a row");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
