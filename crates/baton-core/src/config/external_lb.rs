//! `[apps.<name>.external_lb]`: a load balancer Baton does not run (ELB, HAProxy, nginx) in
//! front of the hosts' `host_port` listeners, and the handshake with it
//! (docs/design-notes.md, "Many hosts and containers").
//!
//! Baton talks to such a load balancer only through each host's health endpoint: the agent
//! answers on `address:health_port`, any path, 200 while the host should get traffic and 503
//! while not. The other keys describe the load balancer's own health check, from which Baton
//! derives how long the load balancer may take to notice a change: they must match its
//! settings (the defaults: the shortest interval and timeout AWS load balancers allow, with
//! HAProxy's `fall` and `rise`; an AWS target group's own defaults are slower: 30 s, 5 s,
//! 2 failures, 5 passes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::AppConfig;
use crate::duration::Duration;

/// The load balancer's check interval unless told otherwise (the shortest ELB allows).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The load balancer's check timeout unless told otherwise (the shortest ELB allows).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed checks before the load balancer takes a host out (HAProxy's default `fall`).
pub const DEFAULT_FALL: u32 = 3;
/// Passed checks before the load balancer sends a host traffic again (HAProxy's default).
pub const DEFAULT_RISE: u32 = 2;
/// No new request on a host for this long: the load balancer has stopped sending to it.
pub const DEFAULT_QUIET: Duration = Duration::from_secs(2);

/// `[apps.<name>.external_lb]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalLbConfig {
    /// Each host's health endpoint for the load balancer: this port on the host's address.
    pub health_port: u16,
    /// The load balancer's check interval.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// The load balancer's check timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Failed checks before the load balancer takes a host out.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Passed checks before the load balancer sends to a host again.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// No new request on a host for this long means the load balancer stopped sending to it.
    #[serde(default = "default_quiet")]
    pub quiet: Duration,
    /// The longest wait for the load balancer to stop sending to a host whose endpoint
    /// fails (default: `interval` x `fall` + `timeout`).
    #[serde(default)]
    pub settle: Option<Duration>,
}

fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_fall() -> u32 {
    DEFAULT_FALL
}
fn default_rise() -> u32 {
    DEFAULT_RISE
}
fn default_quiet() -> Duration {
    DEFAULT_QUIET
}

impl ExternalLbConfig {
    /// The longest the load balancer takes to stop sending to a host whose endpoint fails:
    /// `settle`, else `fall` checks one `interval` apart, the first up to an `interval` after
    /// the change, the last answered within `timeout`.
    pub fn settle(&self) -> Duration {
        self.settle.unwrap_or_else(|| {
            Duration::from_millis(
                self.interval
                    .as_millis()
                    .saturating_mul(u64::from(self.fall))
                    .saturating_add(self.timeout.as_millis()),
            )
        })
    }

    /// The longest the load balancer takes to send to a host again after its endpoint
    /// passes: `rise` checks, the same way.
    pub fn rise_time(&self) -> Duration {
        Duration::from_millis(
            self.interval
                .as_millis()
                .saturating_mul(u64::from(self.rise))
                .saturating_add(self.timeout.as_millis()),
        )
    }

    /// The first problem with these settings, as (key, what to do).
    pub(super) fn problem(&self) -> Option<(&'static str, String)> {
        if self.health_port == 0 {
            return Some((
                "health_port",
                "0 is not a port: every host answers on the same one, e.g. 9901".into(),
            ));
        }
        if self.fall == 0 || self.rise == 0 {
            let key = if self.fall == 0 { "fall" } else { "rise" };
            return Some((
                key,
                "must be at least 1: copy it from your load balancer's health check".into(),
            ));
        }
        if self.interval.as_millis() == 0 || self.timeout.as_millis() == 0 {
            let key = if self.interval.as_millis() == 0 {
                "interval"
            } else {
                "timeout"
            };
            return Some((
                key,
                "must be more than 0: copy it from your load balancer's health check".into(),
            ));
        }
        if self.quiet.as_millis() < 1000 {
            return Some((
                "quiet",
                format!(
                    "{} is too short to observe (hosts report their traffic every second): use at least 1s",
                    self.quiet
                ),
            ));
        }
        if self.settle().as_millis() < self.quiet.as_millis() {
            return Some((
                "settle",
                format!(
                    "{} is shorter than quiet ({}): the load balancer could never be seen to stop; raise it or lower quiet",
                    self.settle(),
                    self.quiet
                ),
            ));
        }
        None
    }
}

/// Checks app `name`'s `external_lb` against the app and the apps before it: the first
/// problem as (key under `external_lb`, what to do).
pub(super) fn check(
    apps: &BTreeMap<String, AppConfig>,
    name: &str,
    app: &AppConfig,
    lb: &ExternalLbConfig,
) -> Option<(&'static str, String)> {
    if app.host_port.is_none() {
        return Some((
            "health_port",
            "needs host_port: the load balancer sends to every host's host_port and checks this endpoint beside it".into(),
        ));
    }
    if app.host_port == Some(lb.health_port) {
        return Some((
            "health_port",
            format!(
                "{} is the app's host_port: the health endpoint is never on the app's listener; pick another port",
                lb.health_port
            ),
        ));
    }
    if let Some(problem) = lb.problem() {
        return Some(problem);
    }
    let hosts = app.host_names();
    for (other, o) in apps {
        if other == name || !o.host_names().iter().any(|h| hosts.contains(h)) {
            continue;
        }
        if o.host_port == Some(lb.health_port) {
            return Some((
                "health_port",
                format!(
                    "{} is apps.{other}.host_port on a host they share: pick another port",
                    lb.health_port
                ),
            ));
        }
        let before = apps.keys().take_while(|k| *k != name).any(|k| k == other);
        if before && o.external_lb.as_ref().map(|x| x.health_port) == Some(lb.health_port) {
            return Some((
                "health_port",
                format!(
                    "{} is already apps.{other}.external_lb.health_port on a host they share: give each app its own",
                    lb.health_port
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(toml_text: &str) -> ExternalLbConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn settle_is_the_load_balancers_time_to_notice_unless_set() {
        let elb = lb("health_port = 9901");
        assert_eq!(elb.settle(), Duration::from_secs(17));
        assert_eq!(elb.rise_time(), Duration::from_secs(12));
        let fast = lb("health_port = 9901\ninterval = \"1s\"\nfall = 2\ntimeout = \"500ms\"");
        assert_eq!(fast.settle(), Duration::from_millis(2500));
        assert_eq!(
            lb("health_port = 9901\nsettle = \"40s\"").settle(),
            Duration::from_secs(40)
        );
    }

    #[test]
    fn settings_that_could_never_work_are_refused_at_their_key() {
        let cases = [
            ("health_port = 0", "health_port"),
            ("health_port = 1\nfall = 0", "fall"),
            ("health_port = 1\nrise = 0", "rise"),
            ("health_port = 1\ninterval = \"0s\"", "interval"),
            ("health_port = 1\nquiet = \"100ms\"", "quiet"),
            ("health_port = 1\nsettle = \"1s\"", "settle"),
        ];
        for (text, key) in cases {
            assert_eq!(lb(text).problem().map(|(k, _)| k), Some(key), "{text}");
        }
        assert_eq!(lb("health_port = 1").problem(), None);
    }
}
