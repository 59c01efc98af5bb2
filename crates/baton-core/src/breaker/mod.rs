//! Circuit breakers: the state machine of one breaker (closed, open, half-open) and the
//! judgement of its sliding window, as resilience4j and Envoy users know them.
//!
//! Closed, every request passes and is counted; when the window holds `min_requests` and its
//! error rate or p99 crosses a threshold, the breaker opens. Open, requests are refused (the
//! proxy answers the fallback) until `cooldown` has passed; then it is half-open and admits
//! `probes` requests: all of them succeeding closes it, one failing opens it again. Pure: the
//! caller passes `now` and the outcome of each request.

pub mod outlier;
mod window;

pub use window::{BUCKETS, Figures, Window};

use crate::config::BreakerConfig;
use crate::model::Millis;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Requests pass and are judged.
    Closed,
    /// Requests are refused until the cooldown has passed.
    Open,
    /// A few probe requests pass; the rest are refused.
    HalfOpen,
}

impl State {
    /// The stable name shown and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it; report its outcome with `probe: false`.
    Pass,
    /// Send it as a probe; report its outcome with `probe: true` (or release it).
    Probe,
    /// Do not send it: answer the fallback.
    Reject,
}

/// The thresholds of one breaker, in the units the state machine counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Length of the sliding window.
    pub window_ms: u64,
    /// Fewest requests in the window before it is judged.
    pub min_requests: u64,
    /// Opens above this fraction of errors.
    pub max_error_rate: Option<f64>,
    /// Opens when the p99 latency is above this.
    pub max_p99_ms: Option<u64>,
    /// How long it stays open before probing.
    pub cooldown_ms: i64,
    /// Probe requests admitted while half-open; all must succeed to close.
    pub probes: u32,
    /// Driven from outside (an app metric): it opens and closes only by [`Breaker::force`],
    /// never by its window or probes.
    pub driven: bool,
}

impl From<&BreakerConfig> for Thresholds {
    fn from(c: &BreakerConfig) -> Self {
        Thresholds {
            window_ms: c.window.as_millis(),
            min_requests: u64::from(c.min_requests),
            max_error_rate: c.max_error_rate,
            max_p99_ms: c.max_p99.map(|d| d.as_millis()),
            cooldown_ms: c.cooldown.as_millis_i64(),
            probes: c.probes,
            driven: c.metric.is_some(),
        }
    }
}

/// A change of state, with the figures that caused it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// When.
    pub at: Millis,
    /// Why, in one line with the numbers.
    pub reason: String,
    /// The window (or, for a probe's verdict, the probes) when it happened.
    pub figures: Figures,
}

/// One breaker's state machine.
#[derive(Debug, Clone)]
pub struct Breaker {
    thresholds: Thresholds,
    state: State,
    since: Millis,
    window: Window,
    /// Probes admitted in this half-open round, and how many of them succeeded.
    probes_sent: u32,
    probes_ok: u32,
    /// The figures of the last transition.
    last: Figures,
}

impl Breaker {
    /// A closed breaker with an empty window.
    pub fn new(thresholds: Thresholds, now: Millis) -> Breaker {
        Breaker {
            window: Window::new(thresholds.window_ms, now),
            thresholds,
            state: State::Closed,
            since: now,
            probes_sent: 0,
            probes_ok: 0,
            last: Figures::default(),
        }
    }

    /// The state now (see [`Breaker::poll`] to let a cooldown end without a request).
    pub fn state(&self) -> State {
        self.state
    }

    /// When the current state began.
    pub fn since(&self) -> Millis {
        self.since
    }

    /// The figures of the last transition.
    pub fn last_figures(&self) -> Figures {
        self.last
    }

    /// The thresholds it judges by.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The window's figures now.
    pub fn figures(&mut self, now: Millis) -> Figures {
        self.window.figures(now)
    }

    /// Opens or closes a driven breaker (see [`Thresholds::driven`]) by what its driver
    /// measured; `None` when it is in that state already. A driven breaker closes only once
    /// its cooldown is over, so a metric that flaps does not flap the route.
    pub fn force(
        &mut self,
        open: bool,
        now: Millis,
        reason: String,
        figures: Figures,
    ) -> Option<Transition> {
        if !self.thresholds.driven {
            return None;
        }
        match (self.state, open) {
            (State::Closed, true) => Some(self.enter(State::Open, now, reason, figures)),
            (State::Open | State::HalfOpen, false)
                if now >= self.since + self.thresholds.cooldown_ms =>
            {
                Some(self.enter(State::Closed, now, reason, figures))
            }
            _ => None,
        }
    }

    /// Closes a breaker that is being replaced or removed (a config reload), if it is not
    /// closed, so what it held (its flag) is let go.
    pub fn retire(&mut self, now: Millis) -> Option<Transition> {
        (self.state != State::Closed).then(|| {
            self.enter(
                State::Closed,
                now,
                "changed or removed by a config reload".into(),
                Figures::default(),
            )
        })
    }

    /// Ends the cooldown of an open breaker if it is over: open -> half-open. A driven
    /// breaker stays open until its driver closes it.
    pub fn poll(&mut self, now: Millis) -> Option<Transition> {
        if self.thresholds.driven {
            return None;
        }
        if self.state == State::Open && now >= self.since + self.thresholds.cooldown_ms {
            let reason = format!(
                "cooldown of {} ms over: admitting {} probe request(s)",
                self.thresholds.cooldown_ms, self.thresholds.probes
            );
            return Some(self.enter(State::HalfOpen, now, reason, Figures::default()));
        }
        None
    }

    /// Decides whether a request that starts at `now` is sent.
    pub fn admit(&mut self, now: Millis) -> (Admit, Option<Transition>) {
        let moved = self.poll(now);
        let admit = match self.state {
            State::Closed => Admit::Pass,
            State::Open => Admit::Reject,
            State::HalfOpen if self.probes_sent < self.thresholds.probes => {
                self.probes_sent += 1;
                Admit::Probe
            }
            // Probes that never reported (their clients went away) do not hold it half-open
            // for ever: after another cooldown a new round begins.
            State::HalfOpen if now >= self.since + self.thresholds.cooldown_ms => {
                self.since = now;
                self.probes_sent = 1;
                self.probes_ok = 0;
                Admit::Probe
            }
            State::HalfOpen => Admit::Reject,
        };
        (admit, moved)
    }

    /// Counts the outcome of a request admitted earlier, which ended at `now`.
    pub fn record(
        &mut self,
        now: Millis,
        probe: bool,
        error: bool,
        latency_ms: u64,
    ) -> Option<Transition> {
        let slow = self
            .thresholds
            .max_p99_ms
            .is_some_and(|max| latency_ms > max);
        match self.state {
            State::Closed => {
                self.window.record(now, error, slow, latency_ms);
                let figures = self.window.figures(now);
                let reason = self.tripped(&figures)?;
                Some(self.enter(State::Open, now, reason, figures))
            }
            State::HalfOpen if probe => {
                let probes = Figures {
                    requests: u64::from(self.probes_ok) + 1,
                    errors: u64::from(error),
                    slow: u64::from(slow),
                    error_rate: if error { 1.0 } else { 0.0 },
                    p99_ms: Some(latency_ms),
                };
                if error || slow {
                    let what = if error { "failed" } else { "was slow" };
                    let reason = format!("a probe {what} ({latency_ms} ms): open again");
                    return Some(self.enter(State::Open, now, reason, probes));
                }
                self.probes_ok += 1;
                if self.probes_ok < self.thresholds.probes {
                    return None;
                }
                let reason = format!("{} probe(s) succeeded", self.probes_ok);
                Some(self.enter(State::Closed, now, reason, probes))
            }
            // Answers to requests admitted before the breaker opened: already judged.
            State::HalfOpen | State::Open => None,
        }
    }

    /// A probe that ended without a verdict (the client went away, or its request was bad):
    /// its place goes to the next request.
    pub fn release(&mut self, probe: bool) {
        if probe && self.state == State::HalfOpen {
            self.probes_sent = self.probes_sent.saturating_sub(1);
        }
    }

    /// Why the window opens the breaker, if it does.
    fn tripped(&self, f: &Figures) -> Option<String> {
        let t = &self.thresholds;
        if f.requests < t.min_requests.max(1) {
            return None;
        }
        let window = format!("{} requests in the last {} ms", f.requests, t.window_ms);
        if let Some(max) = t.max_error_rate
            && f.error_rate > max
        {
            return Some(format!(
                "error rate {:.1}% > {:.1}% ({} errors of {window})",
                f.error_rate * 100.0,
                max * 100.0,
                f.errors
            ));
        }
        // p99 > max exactly when more than 1 % of the requests were slower than max.
        if let Some(max) = t.max_p99_ms
            && f.slow * 100 > f.requests
        {
            return Some(format!("p99 > {max} ms ({} slower of {window})", f.slow));
        }
        None
    }

    fn enter(&mut self, to: State, now: Millis, reason: String, figures: Figures) -> Transition {
        let from = self.state;
        self.state = to;
        self.since = now;
        self.probes_sent = 0;
        self.probes_ok = 0;
        self.last = figures;
        // A closed breaker judges only what happened after it closed; an open one nothing.
        self.window.clear(now);
        Transition {
            from,
            to,
            at: now,
            reason,
            figures,
        }
    }
}

#[cfg(test)]
mod tests;
