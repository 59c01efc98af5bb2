//! Environments: the promotion order, per-environment overrides of an app's settings, and the
//! resolved *units* (one app in one environment) that the controller runs. Releases belong to
//! the app, never to an environment: every environment runs the same artifact digest with its
//! own config (docs/DESIGN.md I5).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::AppConfig;
use crate::duration::Duration;
use crate::model::Strategy;

/// The environment when none is configured.
pub const DEFAULT_ENVIRONMENT: &str = "production";

/// `[promotion]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PromotionConfig {
    /// How long a release must have run healthy in the previous environment before it may
    /// enter the next one.
    pub soak: Duration,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        Self {
            soak: Duration::from_secs(600),
        }
    }
}

/// `[apps.<name>.environments.<env>]`: what differs in one environment.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentOverride {
    /// Where users of this environment connect.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Instances in this environment.
    #[serde(default)]
    pub instances: Option<u32>,
    /// Environment variables added to (and overriding) the app's `env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The default strategy in this environment.
    #[serde(default)]
    pub strategy: Option<Strategy>,
}

/// `[apps.<name>.migrate]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MigrateConfig {
    /// The expand step: runs once per deployment and environment, before the new instances
    /// start, while the previous release keeps serving.
    pub command: Vec<String>,
    /// The contract step: runs after the deployment succeeded.
    #[serde(default)]
    pub after: Option<Vec<String>>,
    /// Longest a migration step may run.
    #[serde(default = "default_migrate_timeout")]
    pub timeout: Duration,
    /// How long the release must have served after its deployment succeeded before its
    /// contract step runs: until then a rollback (warm with blue-green) stays allowed.
    #[serde(default = "default_contract_delay")]
    pub contract_delay: Duration,
}

fn default_contract_delay() -> Duration {
    super::defaults::CONTRACT_DELAY
}

fn default_migrate_timeout() -> Duration {
    Duration::from_secs(600)
}

/// One app in one environment, with its settings resolved: what the controller runs.
#[derive(Debug, Clone)]
pub struct Unit {
    /// `app@env`: the key of its instances, deployments and events.
    pub key: String,
    /// The app.
    pub app: String,
    /// The environment.
    pub env: String,
    /// The app's settings with this environment's overrides applied (`listen` is set).
    pub config: AppConfig,
    /// The environment this one promotes from (the previous one in which the app runs).
    pub previous: Option<String>,
}

/// The key of `app` in `env`.
pub fn unit_key(app: &str, env: &str) -> String {
    format!("{app}@{env}")
}

/// Splits a unit key into (app, env).
pub fn split_key(key: &str) -> (&str, &str) {
    key.rsplit_once('@').unwrap_or((key, DEFAULT_ENVIRONMENT))
}

/// The listen address of `app` in `env`: the environment's own, else the app's for the last
/// environment of the promotion order (production) only.
pub fn listen_in(app: &AppConfig, env: &str, environments: &[String]) -> Option<SocketAddr> {
    match app.environments.get(env).and_then(|o| o.listen) {
        Some(l) => Some(l),
        None if environments.last().map(String::as_str) == Some(env) => app.listen,
        None => None,
    }
}

/// Resolves every app in every environment it runs in (where it has a listen address).
pub fn units(environments: &[String], apps: &BTreeMap<String, AppConfig>) -> Vec<Unit> {
    let mut out = Vec::new();
    for (name, app) in apps {
        let mut previous = None;
        for env in environments {
            let Some(listen) = listen_in(app, env, environments) else {
                continue;
            };
            let mut config = app.clone();
            config.listen = Some(listen);
            // The hosts' listeners (`host_port`, `external_lb`) serve the last environment
            // (production) only, as `listen` does: two environments cannot share a port.
            if environments.last() != Some(env) {
                config.host_port = None;
                config.external_lb = None;
            }
            if let Some(o) = app.environments.get(env) {
                if let Some(n) = o.instances {
                    config.instances = n;
                }
                if let Some(s) = o.strategy {
                    config.strategy = s;
                }
                config
                    .env
                    .extend(o.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            out.push(Unit {
                key: unit_key(name, env),
                app: name.clone(),
                env: env.clone(),
                config,
                previous: previous.clone(),
            });
            previous = Some(env.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_delay_defaults_to_the_named_default_and_can_be_set() {
        let m: MigrateConfig = toml::from_str(r#"command = ["m"]"#).unwrap();
        assert_eq!(m.contract_delay, super::super::defaults::CONTRACT_DELAY);
        assert_eq!(m.contract_delay.as_millis(), 3_600_000);
        let m: MigrateConfig =
            toml::from_str("command = [\"m\"]\ncontract_delay = \"0s\"").unwrap();
        assert_eq!(m.contract_delay.as_millis(), 0);
    }
}
