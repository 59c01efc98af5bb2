//! Circuit breakers in the data plane: each request on a watched route asks its breaker
//! whether it may go (closed: yes; open: the fallback; half-open: only the probes), and reports
//! its outcome when the response head is in. Transitions are sent on a channel the daemon
//! drains into events and webhooks.
//!
//! The breakers of a listener's app sit behind one `ArcSwap` the listener took at start, so a
//! request on an app without breakers pays one atomic load; one on a watched route takes its
//! breaker's mutex twice (admit, outcome), for a few counters each time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use baton_core::breaker::{Admit, Breaker, Figures, State, Thresholds, Transition};
use baton_core::config::BreakerConfig;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use tokio::sync::mpsc;

use crate::error::ProxyError;
use crate::router::Router;

/// A breaker's change of state, for the daemon to record, notify, and (with `flag`) to turn
/// the flag off while the breaker is not closed.
#[derive(Debug, Clone)]
pub struct BreakerTransition {
    /// The app's unit key (`app` or `app@env`), as the routing table names it.
    pub app: String,
    /// The breaker's name.
    pub breaker: String,
    /// The flag the breaker drives, if any.
    pub flag: Option<String>,
    /// From, to, when, why and the figures.
    pub transition: Transition,
}

/// A breaker as read by the API.
#[derive(Debug, Clone)]
pub struct BreakerStatus {
    /// Its config.
    pub config: BreakerConfig,
    /// Its state now.
    pub state: State,
    /// Since when.
    pub since: i64,
    /// Its window now (closed), empty otherwise.
    pub window: Figures,
    /// The figures of its last transition.
    pub last: Figures,
}

/// What the proxy answers on a route whose breaker refuses a request.
#[derive(Debug)]
pub struct Fallback {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    pub(crate) content_type: &'static str,
    pub(crate) retry_after: Option<HeaderValue>,
}

impl Fallback {
    fn of(config: &BreakerConfig) -> Fallback {
        let Some(f) = &config.fallback else {
            return Fallback {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: Bytes::from(format!("circuit breaker {} is open\n", config.name)),
                content_type: "text/plain; charset=utf-8",
                retry_after: None,
            };
        };
        let json = f.body.trim_start().starts_with(['{', '[']);
        Fallback {
            status: StatusCode::from_u16(f.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            body: Bytes::from(f.body.clone()),
            content_type: if json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            },
            retry_after: f.retry_after.map(|d| HeaderValue::from(d.std().as_secs())),
        }
    }
}

/// One breaker on one app's route.
#[derive(Debug)]
pub(crate) struct RouteBreaker {
    app: String,
    config: BreakerConfig,
    fallback: Arc<Fallback>,
    machine: Mutex<Breaker>,
    transitions: mpsc::UnboundedSender<BreakerTransition>,
}

impl RouteBreaker {
    fn machine(&self) -> MutexGuard<'_, Breaker> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, transition: Option<Transition>) {
        let Some(transition) = transition else { return };
        tracing::info!(app = %self.app, breaker = %self.config.name, from = transition.from.as_str(), to = transition.to.as_str(), reason = %transition.reason, "breaker");
        // The daemon may be gone while a listener finishes; the transition is then moot.
        let _ = self.transitions.send(BreakerTransition {
            app: self.app.clone(),
            breaker: self.config.name.clone(),
            flag: self.config.flag.clone(),
            transition,
        });
    }
}

/// The breakers of one app, as a listener holds them.
pub(crate) type AppBreakers = Arc<ArcSwap<Vec<Arc<RouteBreaker>>>>;

/// Every app's breakers, kept across routing-table changes and config reloads.
#[derive(Debug)]
pub(crate) struct Registry {
    apps: Mutex<HashMap<String, AppBreakers>>,
    tx: mpsc::UnboundedSender<BreakerTransition>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<BreakerTransition>>>,
}

impl Default for Registry {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Registry {
            apps: Mutex::default(),
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Registry {
    fn apps(&self) -> MutexGuard<'_, HashMap<String, AppBreakers>> {
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `app`'s breakers, made empty on first use (a listener takes them once).
    pub(crate) fn of(&self, app: &str) -> AppBreakers {
        self.apps().entry(app.to_string()).or_default().clone()
    }
}

impl Router {
    /// Puts `configs` in force as `app`'s breakers. A breaker whose config is unchanged keeps
    /// its state and window; a new or changed one starts closed.
    pub fn set_breakers(&self, app: &str, configs: &[BreakerConfig]) {
        let slot = self.breakers.of(app);
        let current = slot.load();
        let same = current.len() == configs.len()
            && current.iter().zip(configs).all(|(b, c)| b.config == *c);
        if same {
            return;
        }
        let now = now_ms();
        // A breaker the reload changes or removes while it is not closed ends closed: its
        // flag must not stay held off by a breaker that is gone.
        for old in current.iter().filter(|b| !configs.contains(&b.config)) {
            let retired = old.machine().retire(now);
            old.report(retired);
        }
        let next = configs
            .iter()
            .map(|c| match current.iter().find(|b| b.config == *c) {
                Some(kept) => kept.clone(),
                None => Arc::new(RouteBreaker {
                    app: app.to_string(),
                    config: c.clone(),
                    fallback: Arc::new(Fallback::of(c)),
                    machine: Mutex::new(Breaker::new(Thresholds::from(c), now)),
                    transitions: self.breakers.tx.clone(),
                }),
            })
            .collect();
        slot.store(Arc::new(next));
    }

    /// The receiver of every breaker transition; `None` after the first call.
    pub fn breaker_transitions(&self) -> Option<mpsc::UnboundedReceiver<BreakerTransition>> {
        self.breakers
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// `app`'s breakers now. An open breaker whose cooldown is over turns half-open here
    /// (reported as a transition), so what is shown is never stale.
    pub fn breakers(&self, app: &str) -> Vec<BreakerStatus> {
        let now = now_ms();
        let slot = self.breakers.of(app);
        let list = slot.load();
        list.iter()
            .map(|b| {
                let (status, moved) = {
                    let mut m = b.machine();
                    let moved = m.poll(now);
                    let status = BreakerStatus {
                        config: b.config.clone(),
                        state: m.state(),
                        since: m.since(),
                        window: m.figures(now),
                        last: m.last_figures(),
                    };
                    (status, moved)
                };
                b.report(moved);
                status
            })
            .collect()
    }

    /// Opens (`open`) or closes `app`'s driven breaker of `config` (an app metric's, see
    /// `Breaker::force`); the transition, if any, is reported like the proxy's own. A breaker
    /// a reload changed since `config` was read is left alone.
    pub fn drive_breaker(&self, app: &str, config: &BreakerConfig, open: bool, reason: String) {
        let slot = self.breakers.of(app);
        let list = slot.load();
        let Some(b) = list.iter().find(|b| b.config == *config) else {
            return;
        };
        let moved = b
            .machine()
            .force(open, now_ms(), reason, Figures::default());
        b.report(moved);
    }
}

/// A request a breaker admitted: its outcome goes back to the breaker. Dropped unfinished (the
/// client went away), a probe's place is freed.
pub(crate) struct Ticket {
    breaker: Option<Arc<RouteBreaker>>,
    probe: bool,
    started: Instant,
}

/// Asks the breaker of `path`'s route, if any, whether the request may go.
pub(crate) fn gate(breakers: &AppBreakers, path: &[u8]) -> Result<Option<Ticket>, ProxyError> {
    let list = breakers.load();
    if list.is_empty() {
        return Ok(None);
    }
    // An absolute-form target (`http://host/path`): its path.
    let path = match path.iter().position(|&c| c == b'/') {
        Some(0) | None => path,
        Some(_) => path
            .windows(3)
            .position(|w| w == b"://")
            .and_then(|i| {
                path[i + 3..]
                    .iter()
                    .position(|&c| c == b'/')
                    .map(|j| &path[i + 3 + j..])
            })
            .unwrap_or(b"/"),
    };
    // A metric breaker open on this route refuses it whatever the route breaker says; the
    // first route (not metric) breaker that matches judges the request.
    let now = now_ms();
    let mut route = None;
    for b in list.iter().filter(|b| b.config.matches(path)) {
        if b.config.metric.is_none() {
            route = route.or(Some(b));
        } else if b.machine().admit(now).0 == Admit::Reject {
            return Err(ProxyError::Fallback(b.fallback.clone()));
        }
    }
    let Some(b) = route else {
        return Ok(None);
    };
    let started = Instant::now();
    let (admit, moved) = b.machine().admit(now);
    b.report(moved);
    match admit {
        Admit::Reject => Err(ProxyError::Fallback(b.fallback.clone())),
        Admit::Pass | Admit::Probe => Ok(Some(Ticket {
            breaker: Some(b.clone()),
            probe: admit == Admit::Probe,
            started,
        })),
    }
}

impl Ticket {
    /// Reports the outcome: the response status, or the error that stood for one. A client's
    /// fault says nothing about the route.
    pub(crate) fn finish(mut self, outcome: Result<StatusCode, &ProxyError>) {
        let Some(b) = self.breaker.take() else { return };
        let error = match outcome {
            Ok(status) => status.is_server_error(),
            Err(e) if e.kind() == crate::error::ErrorKind::Client => {
                b.machine().release(self.probe);
                return;
            }
            Err(_) => true,
        };
        let latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let moved = b.machine().record(now_ms(), self.probe, error, latency_ms);
        b.report(moved);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take() {
            b.machine().release(self.probe);
        }
    }
}

/// Reports the outcome of an exchange to `ticket`'s breaker, if the request had one.
pub(crate) fn finish<T>(
    ticket: Option<Ticket>,
    result: &Result<T, ProxyError>,
    status: impl FnOnce(&T) -> StatusCode,
) {
    if let Some(ticket) = ticket {
        ticket.finish(result.as_ref().map(status));
    }
}

/// Wall-clock unix milliseconds: transitions are shown and stored with it.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_error_rate: f64) -> BreakerConfig {
        let text = format!(
            "name = \"orders\"\npath = \"/orders\"\nmin_requests = 2\nmax_error_rate = {max_error_rate}\n\n[fallback]\nstatus = 429\nbody = \"later\"\nretry_after = \"7s\"\n"
        );
        toml_config(&text)
    }

    fn toml_config(text: &str) -> BreakerConfig {
        // The schema's own parser: a breaker is a table of `[[apps.x.breakers]]`.
        let full = format!(
            "[apps.x]\nlisten = \"127.0.0.1:1\"\ncommand = [\"x\"]\n[[apps.x.breakers]]\n{}",
            text.replace("[fallback]", "[apps.x.breakers.fallback]")
        );
        let c = baton_core::config::Config::parse(&full, std::path::Path::new("t.toml")).unwrap();
        c.apps["x"].breakers[0].clone()
    }

    fn fail_twice(slot: &AppBreakers) {
        for _ in 0..2 {
            let ticket = gate(slot, b"/orders/1").unwrap().expect("watched");
            ticket.finish(Ok(StatusCode::INTERNAL_SERVER_ERROR));
        }
    }

    #[test]
    fn a_breaker_opens_serves_its_fallback_and_keeps_its_state_across_an_unchanged_reload() {
        let router = Router::new();
        let mut transitions = router.breaker_transitions().unwrap();
        assert!(router.breaker_transitions().is_none(), "taken once");
        router.set_breakers("web", &[config(0.5)]);
        let slot = router.breakers.of("web");
        assert!(
            gate(&slot, b"/other").unwrap().is_none(),
            "other routes are not watched"
        );
        fail_twice(&slot);
        let Err(ProxyError::Fallback(f)) = gate(&slot, b"http://h/orders?x") else {
            panic!("open: the fallback");
        };
        assert_eq!((f.status.as_u16(), &f.body[..]), (429, &b"later"[..]));
        assert_eq!(f.retry_after.as_ref().unwrap(), "7");
        let t = transitions.try_recv().unwrap();
        assert_eq!((t.app.as_str(), t.transition.to), ("web", State::Open));
        // The same config again keeps it open; a changed one starts closed.
        router.set_breakers("web", &[config(0.5)]);
        assert_eq!(router.breakers("web")[0].state, State::Open);
        router.set_breakers("web", &[config(0.9)]);
        assert_eq!(router.breakers("web")[0].state, State::Closed);
        // The open one it replaced was closed on its way out (its flag is let go).
        let t = transitions.try_recv().unwrap();
        assert_eq!(
            (t.transition.from, t.transition.to),
            (State::Open, State::Closed)
        );
        assert!(t.transition.reason.contains("config reload"), "{t:?}");
        assert!(gate(&slot, b"/orders").unwrap().is_some());
        router.set_breakers("web", &[]);
        assert!(gate(&slot, b"/orders").unwrap().is_none());
    }

    #[test]
    fn an_open_metric_breaker_refuses_its_route_and_the_route_breaker_still_judges() {
        let router = Router::new();
        let mut transitions = router.breaker_transitions().unwrap();
        let metric = toml_config(
            "name = \"saturated\"\npath = \"/orders\"\nmetric = { name = \"q\", max = 1 }\ncooldown = \"1h\"\n\n[fallback]\nbody = \"busy\"\n",
        );
        // The metric breaker first: the route breaker behind it still counts the route.
        router.set_breakers("web", &[metric.clone(), config(0.5)]);
        let slot = router.breakers.of("web");
        fail_twice(&slot);
        assert_eq!(router.breakers("web")[1].state, State::Open);
        router.set_breakers("web", &[metric.clone(), config(0.9)]);
        while transitions.try_recv().is_ok() {}
        // Driven open: the route gets the metric breaker's fallback; a stale config is ignored.
        let mut stale = metric.clone();
        stale.cooldown = baton_core::Duration::from_secs(1);
        router.drive_breaker("web", &stale, true, "old".into());
        assert!(gate(&slot, b"/orders").unwrap().is_some());
        router.drive_breaker("web", &metric, true, "q = 3 > max 1".into());
        let Err(ProxyError::Fallback(f)) = gate(&slot, b"/orders/1") else {
            panic!("the metric breaker's fallback");
        };
        assert_eq!(&f.body[..], b"busy");
        let t = transitions.try_recv().unwrap();
        assert_eq!(
            (t.breaker.as_str(), t.transition.to),
            ("saturated", State::Open)
        );
        // Its cooldown (1 h) is not over: in range again does not close it yet.
        router.drive_breaker("web", &metric, false, "q = 0".into());
        assert_eq!(router.breakers("web")[0].state, State::Open);
    }

    #[test]
    fn a_client_error_or_a_dropped_ticket_is_no_verdict() {
        let router = Router::new();
        router.set_breakers("web", &[config(0.5)]);
        let slot = router.breakers.of("web");
        for _ in 0..5 {
            let ticket = gate(&slot, b"/orders").unwrap().unwrap();
            ticket.finish(Err(&ProxyError::Client("bad")));
            drop(gate(&slot, b"/orders").unwrap());
        }
        assert_eq!(router.breakers("web")[0].window.requests, 0);
        assert_eq!(router.breakers("web")[0].state, State::Closed);
    }
}
