//! The split snapshot: the whole routing table in one `ArcSwap` (docs/DESIGN.md I6).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::backend::Backend;

/// Every app's split. Immutable once published.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    /// The split of each app, by app name.
    pub apps: HashMap<String, AppRoute>,
}

/// One app's split: the releases that take its traffic.
#[derive(Debug, Clone, Default)]
pub struct AppRoute {
    /// The releases and their weights.
    pub releases: Vec<ReleaseRoute>,
    /// A canary's stickiness and targeting; none: each request by weight.
    pub affinity: Option<crate::affinity::Affinity>,
    /// A dark launch's target: copies of requests go there (none: nothing is copied).
    pub mirror: Option<crate::mirror::MirrorRoute>,
}

/// One release's share of an app's traffic.
#[derive(Debug, Clone)]
pub struct ReleaseRoute {
    /// The release version.
    pub release: String,
    /// Relative weight among the app's releases that have an eligible backend; 0 takes nothing.
    pub weight: u32,
    /// The release's instances in the split.
    pub backends: Vec<Arc<Backend>>,
}

/// Holds the routing table. A request loads it once and keeps it to its end, so a
/// [`Router::publish`] is atomic for every new request and never disturbs one in flight.
#[derive(Debug)]
pub struct Router {
    table: ArcSwap<RoutingTable>,
    /// Requests received per app on the listeners [`crate::serve`] runs with this router,
    /// routed or not (a host's traffic, which the external-LB handshake watches).
    requests: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Every app's feature flags, for the `X-Baton-Flags` header (`flags.rs`).
    flags: ArcSwap<crate::flags::FlagTable>,
    /// Every app's circuit breakers (`breaker.rs`).
    pub(crate) breakers: crate::breaker::Registry,
    /// Every app's outlier ejection config (`outlier.rs`).
    pub(crate) outliers: crate::outlier::Registry,
}

impl Router {
    /// A router with an empty table (every request gets 503).
    pub fn new() -> Arc<Router> {
        Arc::new(Router {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            requests: Mutex::default(),
            flags: ArcSwap::default(),
            breakers: Default::default(),
            outliers: Default::default(),
        })
    }

    /// Replaces the table: every request that starts after this returns uses `table`.
    pub fn publish(&self, table: RoutingTable) {
        self.table.store(Arc::new(table));
    }

    /// The table new requests use now.
    pub fn current(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Drops every backend's pooled connections of an older dialer epoch (a host's agent
    /// restarted: its old tunnel waits for the edge to close them).
    pub fn close_stale_connections(&self) {
        let table = self.current();
        for route in table.apps.values() {
            for backend in route.releases.iter().flat_map(|r| r.backends.iter()) {
                backend.close_stale_connections();
            }
        }
    }

    /// Replaces every app's flags: requests that start after this see them.
    pub fn publish_flags(&self, flags: crate::flags::FlagTable) {
        self.flags.store(Arc::new(flags));
    }

    /// The flags new requests use now.
    pub fn flags(&self) -> Arc<crate::flags::FlagTable> {
        self.flags.load_full()
    }

    /// The counter of `app`'s requests, made on first use (a listener takes it once).
    pub(crate) fn request_counter(&self, app: &str) -> Arc<AtomicU64> {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.entry(app.to_string()).or_default().clone()
    }

    /// How many requests `app`'s listeners have received since they started.
    pub fn requests(&self, app: &str) -> u64 {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.get(app).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}
