//! Circuit breakers on the daemon's side: puts each unit's `[[apps.<name>.breakers]]` in force
//! in the proxy, records every transition the proxy reports as an event (which the webhooks
//! get), says what a transition means for the breaker's flag, and drives the breakers that
//! watch an app metric (`drive_metrics`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;

use baton_core::config::{MetricConfig, MetricKindConfig};

use baton_core::breaker::{Figures, State};
use baton_core::config::split_key;
use baton_core::model::{EventKind, InstanceState};
use baton_proxy::{BreakerStatus, BreakerTransition};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::scrape::{self, Scrape, ScrapeTarget};
use crate::shared::{ConfigSnapshot, Shared};

/// How often the breakers on app metrics read them.
const METRIC_EVERY: Duration = Duration::from_secs(1);
/// Longest one scrape of an instance may take.
const METRIC_TIMEOUT: Duration = Duration::from_millis(800);

/// Readings out of range in a row that open a metric breaker: one odd scrape does not.
const OUT_READINGS: u32 = 2;
/// Missing readings in a row after which an open metric breaker closes: it does not hold a
/// route and a flag on a metric nobody can read (logged).
const MISSING_READINGS: u32 = 10;

/// Every second, scrapes the serving instances of each unit with a breaker on an app metric
/// (healthy and in the split: not a dark release, not one still starting; `metrics_path`,
/// summed over the instances as the canary analysis does) and opens a breaker once its metric
/// is out of range in [`OUT_READINGS`] readings in a row, closes it once back in range after
/// its cooldown. A scrape that did not reach every instance is no reading. Ends with the
/// daemon.
pub async fn drive_metrics(shared: Weak<Shared>) {
    let mut last: HashMap<String, Scrape> = HashMap::new();
    // Per unit and breaker name: readings out of range, and missing, in a row.
    let mut runs: HashMap<(String, String), (u32, u32)> = HashMap::new();
    let mut tick = tokio::time::interval(METRIC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let snapshot = shared.config();
        let units: Vec<_> = snapshot
            .apps
            .iter()
            .filter(|(_, a)| a.breakers.iter().any(|b| b.metric.is_some()))
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        last.retain(|k, _| units.iter().any(|(u, _)| u == k));
        runs.retain(|(k, _), _| units.iter().any(|(u, _)| u == k));
        for (key, app) in units {
            let targets = match live_targets(&shared, &key) {
                Ok(t) => t,
                Err(error) => {
                    tracing::warn!(app = %key, %error, "breakers: cannot list the instances");
                    continue;
                }
            };
            let s = scrape::scrape_all(&targets, &app.analysis.metrics_path, METRIC_TIMEOUT).await;
            let complete = !targets.is_empty() && s.per_instance.len() == targets.len();
            for b in &app.breakers {
                let Some(m) = &b.metric else { continue };
                let value = match m.kind {
                    _ if !complete => None,
                    MetricKindConfig::Rate => last
                        .get(&key)
                        .and_then(|prev| scrape::counter_rate(prev, &s, &m.name)),
                    MetricKindConfig::Gauge => scrape::gauge(&s, &m.name),
                };
                let run = runs.entry((key.clone(), b.name.clone())).or_default();
                let Some(value) = value.filter(|v| v.is_finite()) else {
                    run.1 += 1;
                    if run.1 >= MISSING_READINGS {
                        let reason = format!(
                            "metric {} unread for {} s ({} of {} instances answered {}): not holding the breaker on it",
                            m.name,
                            run.1,
                            s.per_instance.len(),
                            targets.len(),
                            app.analysis.metrics_path
                        );
                        if run.1 == MISSING_READINGS {
                            tracing::warn!(app = %key, breaker = %b.name, "{reason}");
                        }
                        shared.router.drive_breaker(&key, b, false, reason);
                    }
                    continue;
                };
                let (out, reason) = judge_metric(m, value, s.per_instance.len());
                run.0 = if out { run.0 + 1 } else { 0 };
                run.1 = 0;
                if !out || run.0 >= OUT_READINGS {
                    shared.router.drive_breaker(&key, b, out, reason);
                }
            }
            last.insert(key, s);
        }
    }
}

/// Whether `value` of `m` is out of range, and the reason a transition would give.
pub fn judge_metric(m: &MetricConfig, value: f64, instances: usize) -> (bool, String) {
    let what = match m.kind {
        MetricKindConfig::Rate => "per second",
        MetricKindConfig::Gauge => "gauge",
    };
    let read = format!(
        "metric {} = {value:.3} ({what}, {instances} instance{})",
        m.name,
        if instances == 1 { "" } else { "s" }
    );
    if let Some(lo) = m.min.filter(|lo| value < *lo) {
        return (true, format!("{read} < min {lo}"));
    }
    if let Some(hi) = m.max.filter(|hi| value > *hi) {
        return (true, format!("{read} > max {hi}"));
    }
    let range = match (m.min, m.max) {
        (Some(lo), Some(hi)) => format!("[{lo}, {hi}]"),
        (Some(lo), None) => format!(">= {lo}"),
        (None, Some(hi)) => format!("<= {hi}"),
        (None, None) => "range".into(),
    };
    (false, format!("{read} back within {range}"))
}

/// The unit's instances that serve users now (the ones to scrape).
fn live_targets(shared: &Shared, unit: &str) -> anyhow::Result<Vec<ScrapeTarget>> {
    Ok(shared
        .store
        .instances(Some(unit), false)?
        .into_iter()
        .filter(|i| i.pid.is_some() && i.in_split && i.state == InstanceState::Healthy)
        .map(|i| ScrapeTarget {
            id: i.id.clone(),
            addr: SocketAddr::new(shared.host_address(&i.host), i.port),
            dial: shared.dial(&i.host, i.port),
        })
        .collect())
}

/// Puts every unit's breakers and outlier ejection of `snapshot` in force; unchanged
/// breakers keep their state.
pub fn sync(shared: &Shared, snapshot: &ConfigSnapshot) {
    for (key, app) in &snapshot.apps {
        shared.router.set_breakers(key, &app.breakers);
        shared.router.set_outlier(key, app.outlier.as_ref());
    }
}

/// Records each transition as an event until the daemon is gone. Holds the daemon weakly: the
/// channel's sender lives in the daemon's router, so the channel ends with it.
pub async fn record(
    shared: Weak<Shared>,
    mut transitions: mpsc::UnboundedReceiver<BreakerTransition>,
) {
    while let Some(t) = transitions.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        record_one(&shared, &t);
        match flag_action(&t) {
            Some(FlagAction::ForceOff {
                app,
                env,
                flag,
                reason,
            }) => shared.flags.force_off(&app, &env, &flag, Some(&reason)),
            Some(FlagAction::Clear { app, env, flag }) => {
                shared.flags.force_off(&app, &env, &flag, None)
            }
            None => {}
        }
    }
}

fn record_one(shared: &Shared, t: &BreakerTransition) {
    record_event(shared, t, &message(t));
}

fn record_event(shared: &Shared, t: &BreakerTransition, message: &str) {
    let kind = match t.transition.to {
        State::Open => EventKind::BreakerOpened,
        State::HalfOpen => EventKind::BreakerHalfOpen,
        State::Closed => EventKind::BreakerClosed,
    };
    if let Err(error) = shared.event(t.transition.at, &t.app, None, kind, message) {
        tracing::warn!(app = %t.app, breaker = %t.breaker, %error, "breaker transition not recorded");
    }
}

/// Records a transition of a breaker on host `host`'s `host_port` listener as an event of the
/// unit (the webhooks get it), its message saying which host. It drives no flag: a flag
/// follows the breaker of the controller's own listener. A report for a unit that has no
/// `host_port` on that host, or no such breaker, is dropped (logged).
pub fn record_host(shared: &Shared, host: &str, b: &baton_cluster::HostBreaker) {
    let snapshot = shared.config();
    let known = snapshot.units.get(&b.app).is_some_and(|u| {
        u.config.host_port.is_some()
            && u.config.host_names().iter().any(|h| h == host)
            && u.config
                .breakers
                .iter()
                .any(|c| c.name == b.breaker && c.metric.is_none())
    });
    if !known {
        tracing::warn!(host, app = %b.app.escape_debug(), breaker = %b.breaker.escape_debug(), "a host reported a breaker it does not run; ignored");
        return;
    }
    // The controller's clock, not the host's, dates its event log.
    let mut transition = b.transition.clone();
    transition.at = crate::clock::now();
    let t = BreakerTransition {
        app: b.app.clone(),
        breaker: b.breaker.clone(),
        flag: None,
        transition,
    };
    // The reason is the host's text: one line, bounded.
    let line: String = message(&t)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_HOST_MESSAGE_CHARS)
        .collect();
    record_event(shared, &t, &format!("on host {host}: {line}"));
}

/// The longest message a host's breaker report may put in the event log.
const MAX_HOST_MESSAGE_CHARS: usize = 1024;

/// The event's one line: which breaker, from and to, why, and the figures.
pub fn message(t: &BreakerTransition) -> String {
    let tr = &t.transition;
    let mut line = format!(
        "breaker {}: {} -> {}: {}; {}",
        t.breaker,
        tr.from.as_str(),
        tr.to.as_str(),
        tr.reason,
        figures(&tr.figures)
    );
    if let Some(flag) = &t.flag {
        line.push_str(&format!("; flag {flag}"));
    }
    line
}

fn figures(f: &Figures) -> String {
    let p99 = f.p99_ms.map_or("-".to_string(), |ms| format!("{ms}ms"));
    format!(
        "requests={} errors={} error_rate={:.3} slow={} p99={p99}",
        f.requests, f.errors, f.error_rate, f.slow
    )
}

/// What the flag a breaker drives must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagAction {
    /// Evaluate `off` whatever its rules say (the breaker opened).
    ForceOff {
        /// The app (without environment).
        app: String,
        /// The environment.
        env: String,
        /// The flag.
        flag: String,
        /// The transition's reason.
        reason: String,
    },
    /// Evaluate by its rules again (the breaker closed).
    Clear {
        /// The app (without environment).
        app: String,
        /// The environment.
        env: String,
        /// The flag.
        flag: String,
    },
}

/// The flag's action for `t`: off when the breaker opens, back to its rules when it closes;
/// nothing for a breaker without a flag or while it probes (the flag stays off).
pub fn flag_action(t: &BreakerTransition) -> Option<FlagAction> {
    let flag = t.flag.clone()?;
    let (app, env) = split_key(&t.app);
    let (app, env) = (app.to_string(), env.to_string());
    match t.transition.to {
        State::Open => Some(FlagAction::ForceOff {
            app,
            env,
            flag,
            reason: format!("breaker {}: {}", t.breaker, t.transition.reason),
        }),
        State::Closed => Some(FlagAction::Clear { app, env, flag }),
        State::HalfOpen => None,
    }
}

/// One breaker as `GET /v1/apps/{app}/breakers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakerView {
    /// Its name.
    pub name: String,
    /// The path prefix it watches.
    pub path: String,
    /// `closed`, `open` or `half_open`.
    pub state: State,
    /// Since when (unix ms).
    pub since: i64,
    /// The window now (closed only; empty otherwise).
    pub window: Figures,
    /// The figures of its last transition.
    pub last: Figures,
    /// The flag it drives.
    pub flag: Option<String>,
    /// Its thresholds, as configured.
    pub max_error_rate: Option<f64>,
    /// In ms.
    pub max_p99_ms: Option<u64>,
    /// The window's length in ms.
    pub window_ms: u64,
    /// Fewest requests judged.
    pub min_requests: u32,
    /// The app metric it watches instead, if any.
    #[serde(default)]
    pub metric: Option<String>,
}

/// The breakers of one unit, and its instances ejected now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakersView {
    /// The unit (`app` or `app@env`).
    pub app: String,
    /// Its breakers, in config order.
    pub breakers: Vec<BreakerView>,
    /// Its instances ejected now (`[apps.<name>.outlier]`).
    pub ejected: Vec<EjectedView>,
}

/// An instance ejected now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EjectedView {
    /// The instance.
    pub instance: String,
    /// Its release.
    pub release: String,
    /// When the ejection ends (unix ms).
    pub until: i64,
    /// How many times it has been ejected.
    pub ejections: u32,
}

impl EjectedView {
    /// The view of an ejected instance.
    pub fn of(e: baton_proxy::Ejected) -> EjectedView {
        EjectedView {
            instance: e.instance,
            release: e.release,
            until: e.until,
            ejections: e.ejections,
        }
    }
}

impl BreakerView {
    /// The view of a breaker's status.
    pub fn of(s: BreakerStatus) -> BreakerView {
        BreakerView {
            name: s.config.name,
            path: s.config.path,
            state: s.state,
            since: s.since,
            window: s.window,
            last: s.last,
            flag: s.config.flag,
            max_error_rate: s.config.max_error_rate,
            max_p99_ms: s.config.max_p99.map(|d| d.as_millis()),
            window_ms: s.config.window.as_millis(),
            min_requests: s.config.min_requests,
            metric: s.config.metric.map(|m| m.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::breaker::Transition;

    fn transition(to: State, flag: Option<&str>) -> BreakerTransition {
        BreakerTransition {
            app: "web@staging".into(),
            breaker: "orders".into(),
            flag: flag.map(String::from),
            transition: Transition {
                from: State::Closed,
                to,
                at: 1,
                reason: "error rate 60.0% > 50.0%".into(),
                figures: Figures {
                    requests: 10,
                    errors: 6,
                    slow: 0,
                    error_rate: 0.6,
                    p99_ms: Some(5),
                },
            },
        }
    }

    #[test]
    fn the_flag_is_off_while_open_and_back_once_closed() {
        let off = flag_action(&transition(State::Open, Some("new-checkout")));
        assert!(
            matches!(&off, Some(FlagAction::ForceOff { app, env, flag, .. }) if app == "web" && env == "staging" && flag == "new-checkout"),
            "{off:?}"
        );
        assert_eq!(flag_action(&transition(State::HalfOpen, Some("f"))), None);
        assert!(matches!(
            flag_action(&transition(State::Closed, Some("f"))),
            Some(FlagAction::Clear { .. })
        ));
        assert_eq!(flag_action(&transition(State::Open, None)), None);
    }

    #[test]
    fn the_message_carries_the_figures() {
        let m = message(&transition(State::Open, Some("f")));
        assert_eq!(
            m,
            "breaker orders: closed -> open: error rate 60.0% > 50.0%; requests=10 errors=6 error_rate=0.600 slow=0 p99=5ms; flag f"
        );
    }
}
