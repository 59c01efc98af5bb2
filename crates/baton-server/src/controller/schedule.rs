//! Which apps the controller ticks in a round. The planner is level-triggered, so ticking an
//! app that nothing happened to changes nothing; skipping it is what keeps an idle controller
//! cheap (bench/idle.sh, docs/benchmarks.md). An app is due when a deployment is in progress,
//! an instance of it changed health or exited, a deadline of its came, the API woke the
//! controller, or its idle resync came (a safety net: every state the controller reads is in
//! the store or the proxy, so a missed trigger costs at most this long). Idle resyncs fall on
//! a grid common to all apps, so that one round ticks every idle app and publishes the split
//! once for all of them, instead of a few apps and a publish in every round.

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

/// The first point of the idle resync grid after `now`: at most [`IDLE_RESYNC_MS`] away.
fn next_resync(now: Millis) -> Millis {
    (now.div_euclid(IDLE_RESYNC_MS) + 1).saturating_mul(IDLE_RESYNC_MS)
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
        let resync = next_resync(now);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Ticked {
        Ticked {
            ends: None,
            drains: Vec::new(),
            busy: false,
            wake_at: None,
        }
    }

    #[test]
    fn idle_resyncs_of_apps_ticked_apart_come_due_together() {
        let health = HealthSignatures::new();
        let mut schedule = Schedule::default();
        schedule.ticked("a", 10_020, &idle(), &health);
        schedule.ticked("b", 10_730, &idle(), &health);
        for now in [10_731, 10_999] {
            assert!(!schedule.is_due("a", now, &health));
            assert!(!schedule.is_due("b", now, &health));
        }
        assert!(schedule.is_due("a", 11_000, &health));
        assert!(schedule.is_due("b", 11_000, &health));
    }

    #[test]
    fn an_earlier_deadline_still_wins() {
        let health = HealthSignatures::new();
        let mut schedule = Schedule::default();
        let t = Ticked {
            wake_at: Some(10_300),
            ..idle()
        };
        schedule.ticked("a", 10_020, &t, &health);
        assert!(!schedule.is_due("a", 10_299, &health));
        assert!(schedule.is_due("a", 10_300, &health));
    }

    #[test]
    fn the_resync_is_never_further_than_its_period() {
        for now in [0, 1, 999, 1_000, 1_001, 123_456_789] {
            let next = next_resync(now);
            assert!(
                next > now && next - now <= IDLE_RESYNC_MS,
                "{now} -> {next}"
            );
            assert_eq!(next % IDLE_RESYNC_MS, 0);
        }
    }
}
