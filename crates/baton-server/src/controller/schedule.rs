//! Which apps the controller ticks in a round. The planner is level-triggered, so ticking an
//! app that nothing happened to changes nothing; skipping it is what keeps an idle controller
//! cheap (bench/idle.sh, docs/benchmarks.md). An app is due when a deployment is in progress,
//! an instance of it changed health or exited, a deadline of its came, the API woke the
//! controller, or its idle resync came (a safety net: every state the controller reads is in
//! the store or the proxy, so a missed trigger costs at most this long).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use baton_core::model::Millis;

use super::Ticked;
use crate::shared::Shared;

/// How often an app that nothing happened to is ticked anyway.
const IDLE_RESYNC_MS: Millis = 1_000;

/// A fingerprint of the health of an app's live instances, to notice a change without a
/// database read.
pub type HealthSignatures = HashMap<String, u64>;

/// Reads every live instance's health from the proxy's backends: one pass over memory.
pub fn health_signatures(shared: &Shared) -> HealthSignatures {
    let mut out = HealthSignatures::new();
    for (id, live) in shared.live().iter() {
        let mut h = DefaultHasher::new();
        (id, live.backend.health() as u8, live.stopping).hash(&mut h);
        // Order-independent: the live map has no order.
        let sig = out.entry(live.app.clone()).or_default();
        *sig = sig.wrapping_add(h.finish());
    }
    out
}

#[derive(Default)]
struct AppSchedule {
    busy: bool,
    next: Millis,
    health: u64,
    woken: bool,
}

/// The controller's memory of when each app is next due.
#[derive(Default)]
pub struct Schedule {
    apps: HashMap<String, AppSchedule>,
}

impl Schedule {
    /// Whether `app` must be ticked this round.
    pub fn is_due(&self, app: &str, now: Millis, health: &HealthSignatures) -> bool {
        let Some(s) = self.apps.get(app) else {
            return true;
        };
        s.busy
            || s.woken
            || now >= s.next
            || s.health != health.get(app).copied().unwrap_or_default()
    }

    /// Records a tick of `app` and when it is next due.
    pub fn ticked(&mut self, app: &str, now: Millis, t: &Ticked, health: &HealthSignatures) {
        let resync = now.saturating_add(IDLE_RESYNC_MS);
        let s = self.apps.entry(app.to_string()).or_default();
        s.busy = t.busy;
        s.woken = false;
        s.next = t.wake_at.map_or(resync, |at| at.min(resync));
        s.health = health.get(app).copied().unwrap_or_default();
    }

    /// A failed tick is retried next round.
    pub fn failed(&mut self, app: &str, now: Millis) {
        let s = self.apps.entry(app.to_string()).or_default();
        s.next = now;
    }

    /// Something happened to `app` (an exit): tick it next round.
    pub fn wake(&mut self, app: &str) {
        self.apps.entry(app.to_string()).or_default().woken = true;
    }
}
