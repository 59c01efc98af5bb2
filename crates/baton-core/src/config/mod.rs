//! The `baton.toml` schema, its named defaults, and validation with `file:line:col` errors.
//!
//! Parsing is pure: the caller reads the file and hands over its text and path.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::model::Strategy;
use span::{key_at, line_col, locate};

mod artifacts;
mod breakers;
mod canary;
mod cluster;
mod dark;
mod diff;
mod environments;
mod external_lb;
mod flags;
mod listeners;
mod notify;
mod span;
mod text;
mod tls;
#[cfg(test)]
mod unusable_tests;

pub use artifacts::ArtifactsConfig;

pub use breakers::{BreakerConfig, FallbackConfig, OutlierConfig, path_matches};

pub use cluster::{
    CONTROLLER_CERT_NAME, ClusterConfig, DEFAULT_HEARTBEAT_TIMEOUT, HostConfig, LOCAL_HOST,
    MAX_HOST_NAME, valid_host_name,
};

pub use environments::{
    DEFAULT_ENVIRONMENT, EnvironmentOverride, MigrateConfig, PromotionConfig, Unit, listen_in,
    split_key, unit_key, units,
};

pub use diff::{ConfigDiff, RESTART_ONLY, diff, restart_only_change};

pub use dark::{DEFAULT_SHADOW_HEADER, DarkConfig, own_datastore, validate_dark};

pub use external_lb::ExternalLbConfig;

pub use flags::{FlagsConfig, MAX_FLAGS};

pub use listeners::clash;

pub use tls::{CertConfig, TlsConfig};

pub use canary::{
    AnalysisConfig, CanaryConfig, CanaryStep, MatchRule, MetricConfig, MetricKindConfig,
    OnInconclusive, Pause, StickyConfig, default_steps,
};

pub use notify::{NotifyConfig, notify_error};

/// Named defaults, in one place.
pub mod defaults {
    use super::Duration;

    /// Where the API listens unless told otherwise (loopback only).
    pub const API_LISTEN: &str = "127.0.0.1:7070";
    /// Data directory, relative to the config file.
    pub const DATA_DIR: &str = ".baton";
    /// Instances per app.
    pub const INSTANCES: u32 = 1;
    /// Health-check path.
    pub const HEALTH_PATH: &str = "/health";
    /// Time between active health checks.
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
    /// Longest wait for one health check.
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    /// Consecutive passes before an instance takes traffic.
    pub const HEALTHY_THRESHOLD: u32 = 2;
    /// Consecutive failures (or connect errors) before an instance is taken out.
    pub const UNHEALTHY_THRESHOLD: u32 = 3;
    /// Longest wait for a new release to become healthy before the deployment fails.
    pub const HEALTH_DEADLINE: Duration = Duration::from_secs(60);
    /// Longest wait for in-flight requests when draining.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// SIGTERM, then SIGKILL after this.
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
    /// Rolling: extra instances allowed during a rollout.
    pub const MAX_SURGE: u32 = 1;
    /// Rolling: healthy instances that may be missing during a rollout.
    pub const MAX_UNAVAILABLE: u32 = 0;
    /// Blue-green: how long the previous set stays warm.
    pub const KEEP_PREVIOUS: Duration = Duration::from_secs(300);
    /// How long a release serves after its deployment succeeded before its contract
    /// migration runs (`migrate.contract_delay`); a rollback is allowed until then.
    pub const CONTRACT_DELAY: Duration = Duration::from_secs(3600);
    /// Longest wait for an instance's response head (504 after it; bodies may stream longer).
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    /// Largest request head (request line + headers) accepted, in bytes.
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    /// API: longest wait for a request head, also between two requests on one connection.
    pub const API_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// API: longest a request body may send nothing, or an answer may wait for the client.
    pub const API_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// API: most connections served at once (also at most a quarter of the fd limit).
    pub const API_MAX_CONNECTIONS: usize = 128;
}

/// The whole `baton.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where Baton keeps its database, artifacts, logs and token; relative to the config file.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// The apps, by name.
    #[serde(default)]
    pub apps: BTreeMap<String, AppConfig>,
    /// Webhooks that receive every deployment event.
    #[serde(default)]
    pub notify: Vec<NotifyConfig>,
    /// The promotion order: a release enters an environment only after it ran healthy in the
    /// previous one (`[promotion] soak`).
    #[serde(default = "default_environments")]
    pub environments: Vec<String>,
    /// `[promotion]`
    #[serde(default)]
    pub promotion: PromotionConfig,
    /// `[artifacts]`: size limits of release artifacts.
    #[serde(default)]
    pub artifacts: ArtifactsConfig,
    /// `[cluster]`: where other hosts' agents connect; absent, Baton runs on this host only.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// `[hosts.<name>]`: the hosts that may join, by name.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostConfig>,
    /// `[flags]`: the OFREP listener where OpenFeature clients evaluate flags.
    #[serde(default)]
    pub flags: Option<FlagsConfig>,
}

fn default_environments() -> Vec<String> {
    vec![DEFAULT_ENVIRONMENT.to_string()]
}

/// `[api]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address; loopback unless you put it elsewhere on purpose.
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// Longest wait for a request head (and between two requests of one connection).
    #[serde(default = "default_api_header_timeout")]
    pub header_timeout: Duration,
    /// Longest a request body may send nothing, or an answer may wait for the client to read.
    #[serde(default = "default_api_idle_timeout")]
    pub idle_timeout: Duration,
    /// Most connections served at once; more are closed at once.
    #[serde(default = "default_api_max_connections")]
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_api_listen(),
            header_timeout: default_api_header_timeout(),
            idle_timeout: default_api_idle_timeout(),
            max_connections: default_api_max_connections(),
        }
    }
}

fn default_api_header_timeout() -> Duration {
    defaults::API_HEADER_TIMEOUT
}

fn default_api_idle_timeout() -> Duration {
    defaults::API_IDLE_TIMEOUT
}

fn default_api_max_connections() -> usize {
    defaults::API_MAX_CONNECTIONS
}

fn default_api_listen() -> SocketAddr {
    defaults::API_LISTEN.parse().expect("valid default")
}

impl AppConfig {
    /// The hosts its instances run on: `hosts`, or the controller's own.
    pub fn host_names(&self) -> Vec<String> {
        if self.hosts.is_empty() {
            vec![cluster::LOCAL_HOST.to_string()]
        } else {
            self.hosts.clone()
        }
    }
}

/// How an app's instances run (docs/design-notes.md, "Many hosts and containers").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// A child process running the command inside the unpacked artifact.
    #[default]
    Process,
    /// A container of the local Docker Engine, from the image the release recorded.
    Docker,
}

/// `[apps.<name>]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Where users connect: Baton's proxy for this app (in the last environment; the others
    /// set theirs in `[apps.<name>.environments.<env>]`).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// How many instances serve the app.
    #[serde(default = "default_instances")]
    pub instances: u32,
    /// The command that starts one instance; placeholders `{artifact}` `{host}` `{port}` `{version}`
    /// `{instance}`. With `driver = "docker"` it replaces the image's `CMD` and may be left out.
    #[serde(default)]
    pub command: Vec<String>,
    /// The hosts its instances run on, spread evenly (default: the controller's own, `local`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// A listener on every host's address at this port, run by the host's agent and routing
    /// to the host's own instances, for a load balancer in front of the hosts.
    #[serde(default)]
    pub host_port: Option<u16>,
    /// `[apps.<name>.external_lb]`: the health endpoint on every host for a load balancer in
    /// front of `host_port`, and how that load balancer checks it.
    #[serde(default)]
    pub external_lb: Option<ExternalLbConfig>,
    /// `[apps.<name>.tls]`: TLS termination on the app's listeners (every environment's).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// How instances run: `process` (default) or `docker`.
    #[serde(default)]
    pub driver: Driver,
    /// Docker only: the container's root filesystem is read-only (immutable servers).
    #[serde(default)]
    pub read_only: bool,
    /// Environment for every instance (config lives here, never in the artifact).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The default strategy for `baton deploy`.
    #[serde(default)]
    pub strategy: Strategy,
    /// `[apps.<name>.health]`
    #[serde(default)]
    pub health: HealthConfig,
    /// `[apps.<name>.drain]`
    #[serde(default)]
    pub drain: DrainConfig,
    /// `[apps.<name>.rolling]`
    #[serde(default)]
    pub rolling: RollingConfig,
    /// `[apps.<name>.blue_green]`
    #[serde(default)]
    pub blue_green: BlueGreenConfig,
    /// `[apps.<name>.proxy]`
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// `[apps.<name>.canary]`
    #[serde(default)]
    pub canary: CanaryConfig,
    /// `[apps.<name>.analysis]`
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// `[apps.<name>.dark]`: dark launches (`--strategy dark`).
    #[serde(default)]
    pub dark: DarkConfig,
    /// `[apps.<name>.environments.<env>]`: per-environment overrides.
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentOverride>,
    /// `[apps.<name>.migrate]`: schema migrations that travel with the release.
    #[serde(default)]
    pub migrate: Option<MigrateConfig>,
    /// `[apps.<name>.flags.<flag>]`: feature flags, the same in every environment.
    #[serde(default)]
    pub flags: BTreeMap<String, crate::flags::FlagSpec>,
    /// `[[apps.<name>.breakers]]`: circuit breakers on the app's routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<BreakerConfig>,
    /// `[apps.<name>.outlier]`: ejection of instances that keep failing; absent, none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierConfig>,
}

fn default_instances() -> u32 {
    defaults::INSTANCES
}

/// `[apps.<name>.health]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Path that answers 2xx when the instance can serve.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Longest wait for one check.
    pub timeout: Duration,
    /// Consecutive passes before traffic.
    pub healthy_threshold: u32,
    /// Consecutive failures before it is taken out.
    pub unhealthy_threshold: u32,
    /// Longest wait for a new release's instances to become healthy.
    pub deadline: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            path: defaults::HEALTH_PATH.to_string(),
            interval: defaults::HEALTH_INTERVAL,
            timeout: defaults::HEALTH_TIMEOUT,
            healthy_threshold: defaults::HEALTHY_THRESHOLD,
            unhealthy_threshold: defaults::UNHEALTHY_THRESHOLD,
            deadline: defaults::HEALTH_DEADLINE,
        }
    }
}

/// `[apps.<name>.drain]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    /// Longest wait for in-flight requests before stopping an instance.
    pub timeout: Duration,
    /// SIGTERM, then SIGKILL after this.
    pub stop_timeout: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            timeout: defaults::DRAIN_TIMEOUT,
            stop_timeout: defaults::STOP_TIMEOUT,
        }
    }
}

/// `[apps.<name>.rolling]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollingConfig {
    /// Extra instances allowed above `instances` during a rollout.
    pub max_surge: u32,
    /// Healthy instances that may be missing below `instances` during a rollout.
    pub max_unavailable: u32,
}

impl Default for RollingConfig {
    fn default() -> Self {
        Self {
            max_surge: defaults::MAX_SURGE,
            max_unavailable: defaults::MAX_UNAVAILABLE,
        }
    }
}

/// `[apps.<name>.blue_green]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlueGreenConfig {
    /// How long the previous set stays warm (no traffic) after the switch.
    pub keep_previous: Duration,
}

impl Default for BlueGreenConfig {
    fn default() -> Self {
        Self {
            keep_previous: defaults::KEEP_PREVIOUS,
        }
    }
}

/// `[apps.<name>.proxy]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Longest wait for an instance's response head (504 after it).
    pub request_timeout: Duration,
    /// Largest request head in bytes (431 beyond it).
    pub max_header_bytes: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            request_timeout: defaults::REQUEST_TIMEOUT,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
        }
    }
}

/// A config that could not be used: what, where and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The dotted key concerned, when known (`apps.web.instances`).
    pub key: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The largest `[apps.<name>.proxy] max_header_bytes`: a connection may buffer this much.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// The placeholders allowed in `command`.
pub const PLACEHOLDERS: [&str; 5] = ["artifact", "host", "port", "version", "instance"];

impl Config {
    /// Parses and validates `text`, read from `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let (line, col) = line_col(text, offset);
            ConfigError {
                file: file.to_path_buf(),
                line,
                col,
                key: key_at(text, offset),
                message: e.message().trim().to_string(),
            }
        })?;
        config.validate(text, file)?;
        Ok(config)
    }

    /// Every app in every environment it runs in, with its settings resolved.
    pub fn units(&self) -> Vec<Unit> {
        units(&self.environments, &self.apps)
    }

    /// The data directory, resolved against the directory holding the config file.
    pub fn data_dir(&self, config_file: &Path) -> PathBuf {
        let base = config_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(defaults::DATA_DIR));
        if dir.is_absolute() {
            dir
        } else {
            base.join(dir)
        }
    }

    fn validate(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let fail = |path: &[&str], message: String| {
            let (line, col) = locate(text, path);
            Err(ConfigError {
                file: file.to_path_buf(),
                line,
                col,
                key: Some(path.join(".")),
                message,
            })
        };
        for (key, d) in [
            ("header_timeout", self.api.header_timeout),
            ("idle_timeout", self.api.idle_timeout),
        ] {
            if d.as_millis() == 0 {
                return fail(&["api", key], "must be more than 0, e.g. \"10s\"".into());
            }
        }
        if self.api.max_connections == 0 {
            return fail(&["api", "max_connections"], "must be at least 1".into());
        }
        if let Err((key, message)) = text::check_data_dir(self.data_dir.as_deref()) {
            return fail(&key.iter().map(String::as_str).collect::<Vec<_>>(), message);
        }
        if self.environments.is_empty() {
            return fail(
                &["environments"],
                "needs at least one environment, e.g. [\"production\"]".into(),
            );
        }
        for (i, env) in self.environments.iter().enumerate() {
            let valid = !env.is_empty()
                && env
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !valid {
                return fail(
                    &["environments"],
                    format!("{env:?}: environment names use only a-z, 0-9, '-' and '_'"),
                );
            }
            if self.environments[..i].contains(env) {
                return fail(&["environments"], format!("{env:?} appears twice"));
            }
        }
        let mut listeners = vec![listeners::Listener {
            addr: self.api.listen,
            owner: "api".into(),
            key: vec!["api".into(), "listen".into()],
        }];
        if let Some(f) = &self.flags {
            listeners.push(listeners::Listener {
                addr: f.listen,
                owner: "flags (OFREP)".into(),
                key: vec!["flags".into(), "listen".into()],
            });
        }
        // The cluster listener is only ever the cluster listener (docs/DESIGN.md I9).
        if let Some(c) = &self.cluster {
            listeners.push(listeners::Listener {
                addr: c.listen,
                owner: "cluster".into(),
                key: vec!["cluster".into(), "listen".into()],
            });
        }
        for unit in units(&self.environments, &self.apps) {
            let (app, env) = (unit.app.as_str(), unit.env.as_str());
            let own = self.apps[app]
                .environments
                .get(env)
                .is_some_and(|o| o.listen.is_some());
            let key: Vec<&str> = if own {
                vec!["apps", app, "environments", env, "listen"]
            } else {
                vec!["apps", app, "listen"]
            };
            listeners.push(listeners::Listener {
                addr: unit.config.listen.expect("units have a listen address"),
                key: key.into_iter().map(String::from).collect(),
                owner: unit.key,
            });
        }
        for (name, app) in &self.apps {
            if let Some(addr) = app.tls.as_ref().and_then(|t| t.redirect_http) {
                listeners.push(listeners::Listener {
                    addr,
                    owner: format!("{name}'s redirect to HTTPS"),
                    key: ["apps", name, "tls", "redirect_http"]
                        .map(String::from)
                        .to_vec(),
                });
            }
        }
        if let Err((key, message)) = listeners::check(&listeners) {
            return fail(&key.iter().map(String::as_str).collect::<Vec<_>>(), message);
        }
        for (name, app) in &self.apps {
            let valid_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !valid_name {
                return fail(
                    &["apps", name],
                    "app names use only a-z, 0-9, '-' and '_'".into(),
                );
            }
            let at = |key: &'static str| ["apps", name.as_str(), key];
            for env in app.environments.keys() {
                if !self.environments.contains(env) {
                    return fail(
                        &["apps", name, "environments", env],
                        format!(
                            "{env:?} is not in `environments` ({}); add it there or remove this section",
                            self.environments.join(", ")
                        ),
                    );
                }
            }
            if !self
                .environments
                .iter()
                .any(|env| listen_in(app, env, &self.environments).is_some())
            {
                let last = self
                    .environments
                    .last()
                    .map(String::as_str)
                    .unwrap_or(DEFAULT_ENVIRONMENT);
                return fail(
                    &["apps", name],
                    format!(
                        "runs nowhere: set `listen` (for {last}) or `listen` in [apps.{name}.environments.<env>]"
                    ),
                );
            }
            for (env, o) in &app.environments {
                if let Some(n) = o.instances
                    && (n == 0 || n > 256)
                {
                    return fail(
                        &["apps", name, "environments", env, "instances"],
                        format!("{n} is out of range: use 1 to 256"),
                    );
                }
            }
            if let Some(m) = &app.migrate {
                if m.command.is_empty() {
                    return fail(
                        &["apps", name, "migrate", "command"],
                        "must name a program, e.g. [\"{artifact}/web\", \"migrate\"]".into(),
                    );
                }
                for word in m.command.iter().chain(m.after.iter().flatten()) {
                    if let Err(bad) = check_placeholders(word) {
                        return fail(
                            &["apps", name, "migrate"],
                            format!(
                                "unknown placeholder {{{bad}}}: allowed are {{artifact}} {{host}} {{port}} {{version}} {{instance}}"
                            ),
                        );
                    }
                }
            }
            if app.instances == 0 || app.instances > 256 {
                return fail(
                    &at("instances"),
                    format!("{} is out of range: use 1 to 256", app.instances),
                );
            }
            if app.read_only && app.driver != Driver::Docker {
                return fail(
                    &at("read_only"),
                    "applies to containers only: set driver = \"docker\" or remove it".into(),
                );
            }
            let image_cmd = app.driver == Driver::Docker && app.command.is_empty();
            if !image_cmd && (app.command.is_empty() || app.command[0].trim().is_empty()) {
                return fail(
                    &at("command"),
                    "must name a program, e.g. [\"{artifact}/server\", \"--port\", \"{port}\"]"
                        .into(),
                );
            }
            for word in &app.command {
                if let Err(bad) = check_placeholders(word) {
                    return fail(
                        &at("command"),
                        format!(
                            "unknown placeholder {{{bad}}}: allowed are {{artifact}} {{host}} {{port}} {{version}} {{instance}}"
                        ),
                    );
                }
            }
            let h = &app.health;
            let health = |key: &'static str| ["apps", name.as_str(), "health", key];
            if !h.path.starts_with('/') {
                return fail(&health("path"), format!("{:?} must start with '/'", h.path));
            }
            if h.interval.as_millis() == 0 {
                return fail(
                    &health("interval"),
                    "must be more than 0, e.g. \"1s\"".into(),
                );
            }
            if h.timeout.as_millis() == 0 {
                return fail(
                    &health("timeout"),
                    "must be more than 0, e.g. \"1s\"".into(),
                );
            }
            if h.healthy_threshold == 0 {
                return fail(&health("healthy_threshold"), "must be at least 1".into());
            }
            if h.unhealthy_threshold == 0 {
                return fail(&health("unhealthy_threshold"), "must be at least 1".into());
            }
            if h.deadline < h.interval {
                return fail(
                    &health("deadline"),
                    format!(
                        "{} is shorter than the check interval {}",
                        h.deadline, h.interval
                    ),
                );
            }
            // The first check runs at once, the next ones `interval` apart.
            let to_healthy =
                u128::from(h.healthy_threshold - 1) * u128::from(h.interval.as_millis());
            if to_healthy > u128::from(h.deadline.as_millis()) {
                return fail(
                    &health("healthy_threshold"),
                    format!(
                        "{} passes {} apart take longer than the deadline {}: a new instance could never become healthy in time; lower healthy_threshold or interval, or raise deadline",
                        h.healthy_threshold, h.interval, h.deadline
                    ),
                );
            }
            let r = &app.rolling;
            if r.max_surge == 0 && r.max_unavailable == 0 {
                return fail(&["apps", name, "rolling", "max_surge"], "max_surge and max_unavailable cannot both be 0: a rollout could never make progress".into());
            }
            if r.max_unavailable >= app.instances && app.instances > 0 && r.max_surge == 0 {
                return fail(
                    &["apps", name, "rolling", "max_unavailable"],
                    format!(
                        "{} would take every instance out at once; use at most {}",
                        r.max_unavailable,
                        app.instances.saturating_sub(1)
                    ),
                );
            }
            if let Err((key, message)) = flags::validate(&app.flags) {
                let mut path = vec!["apps", name.as_str()];
                path.extend(key.iter().map(String::as_str));
                return fail(&path, message);
            }
            if let Err((key, message)) = canary::validate_canary(&app.canary) {
                return fail(&["apps", name, "canary", key], message);
            }
            if let Err((key, message)) = canary::validate_analysis(&app.analysis) {
                return fail(&["apps", name, "analysis", key], message);
            }
            if let Err((key, message)) = dark::validate_dark(&app.dark, &app.env) {
                return fail(&["apps", name, "dark", key], message);
            }
            if !(8192..=MAX_HEADER_BYTES).contains(&app.proxy.max_header_bytes) {
                return fail(
                    &["apps", name, "proxy", "max_header_bytes"],
                    format!(
                        "{} is out of range: use 8192 (HTTP/1 needs that much) to {MAX_HEADER_BYTES} (each connection may buffer that much)",
                        app.proxy.max_header_bytes
                    ),
                );
            }
            for (i, host) in app.hosts.iter().enumerate() {
                if host != cluster::LOCAL_HOST && !self.hosts.contains_key(host) {
                    return fail(
                        &at("hosts"),
                        format!(
                            "{host:?} is not a host: declare it as [hosts.{host}] with its address, or use \"local\" (this machine)"
                        ),
                    );
                }
                if app.hosts[..i].contains(host) {
                    return fail(&at("hosts"), format!("{host:?} is listed twice"));
                }
            }
            if app.host_port.is_some() && app.host_names().iter().any(|h| h == cluster::LOCAL_HOST)
            {
                return fail(
                    &at("host_port"),
                    "needs hosts with agents: list only [hosts.<name>] in `hosts` (the local host has the app's `listen`)".into(),
                );
            }
            if let Some(port) = app.host_port {
                let clash = self
                    .apps
                    .iter()
                    .take_while(|(other, _)| *other != name)
                    .find(|(_, o)| {
                        o.host_port == Some(port)
                            && o.host_names().iter().any(|h| app.host_names().contains(h))
                    });
                if let Some((other, _)) = clash {
                    return fail(
                        &at("host_port"),
                        format!(
                            "{port} is already apps.{other}.host_port on a host they share: give each app its own port"
                        ),
                    );
                }
            }
            if let Some(lb) = &app.external_lb
                && let Some(msg) = external_lb::check(&self.apps, name, app, lb)
            {
                return fail(&["apps", name, "external_lb", msg.0], msg.1);
            }
            if let Some((key, message)) = app.tls.as_ref().and_then(TlsConfig::problem) {
                return fail(&["apps", name, "tls", &key], message);
            }
            if app.host_port == Some(0) {
                return fail(
                    &at("host_port"),
                    "0 is not a port: every host listens on the same one, e.g. 8080".into(),
                );
            }
            if let Some((key, message)) = app.outlier.as_ref().and_then(OutlierConfig::problem) {
                return fail(&["apps", name, "outlier", key], message);
            }
            if let Err((i, key, message)) = breakers::validate(&app.breakers) {
                let (line, col) = breakers::locate_entry(text, name, i, key)
                    .unwrap_or_else(|| locate(text, &["apps", name, "breakers"]));
                return Err(ConfigError {
                    file: file.to_path_buf(),
                    line,
                    col,
                    key: Some(format!("apps.{name}.breakers[{i}].{key}")),
                    message,
                });
            }
            if let Err((key, message)) = text::check_app(name, app) {
                return fail(&key.iter().map(String::as_str).collect::<Vec<_>>(), message);
            }
        }
        if let Err((key, message)) = cluster::validate(self.cluster.as_ref(), &self.hosts) {
            return fail(&key.iter().map(String::as_str).collect::<Vec<_>>(), message);
        }
        if let Err((key, message)) = self.artifacts.validate() {
            return fail(&["artifacts", key], message);
        }
        notify::validate(&self.notify, text, file)?;
        Ok(())
    }
}

/// The values substituted into an instance's `command`.
#[derive(Debug, Clone)]
pub struct CommandVars<'a> {
    /// Path of the stored artifact.
    pub artifact: &'a str,
    /// The address the instance listens on: its host's address (docs/design-notes.md, "Many
    /// hosts and containers").
    pub host: &'a str,
    /// The instance's port.
    pub port: u16,
    /// The release version.
    pub version: &'a str,
    /// The instance id.
    pub instance: &'a str,
}

/// Substitutes the placeholders of `command` (validated earlier).
pub fn render_command(command: &[String], vars: &CommandVars<'_>) -> Vec<String> {
    command
        .iter()
        .map(|word| {
            word.replace("{artifact}", vars.artifact)
                .replace("{host}", vars.host)
                .replace("{port}", &vars.port.to_string())
                .replace("{version}", vars.version)
                .replace("{instance}", vars.instance)
        })
        .collect()
}

fn check_placeholders(word: &str) -> Result<(), String> {
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Ok(());
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(name.to_string());
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
data_dir = ".baton"

[api]
listen = "127.0.0.1:7070"

[apps.web]
listen = "127.0.0.1:8080"
instances = 3
command = ["{artifact}/baton-demo", "--port", "{port}"]
env = { GREETING = "hello" }
strategy = "rolling"

[apps.web.health]
path = "/health"
interval = "1s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 3

[apps.web.drain]
timeout = "30s"
stop_timeout = "10s"

[apps.web.rolling]
max_surge = 1
max_unavailable = 0

[apps.web.blue_green]
keep_previous = "5m"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("baton.toml"))
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse(GOOD).unwrap();
        let web = &c.apps["web"];
        assert_eq!(web.instances, 3);
        assert_eq!(web.health.interval.as_millis(), 1000);
        assert_eq!(web.blue_green.keep_previous.as_millis(), 300_000);
        assert_eq!(web.strategy, Strategy::Rolling);
        assert_eq!(web.health.deadline, defaults::HEALTH_DEADLINE);
        assert_eq!(
            c.data_dir(Path::new("/srv/app/baton.toml")),
            PathBuf::from("/srv/app/.baton")
        );
    }

    #[test]
    fn api_limits_have_named_defaults_and_zero_is_refused() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.api.header_timeout, defaults::API_HEADER_TIMEOUT);
        assert_eq!(c.api.idle_timeout, defaults::API_IDLE_TIMEOUT);
        assert_eq!(c.api.max_connections, defaults::API_MAX_CONNECTIONS);
        let text = GOOD.replace(
            "listen = \"127.0.0.1:7070\"",
            "listen = \"127.0.0.1:7070\"\nheader_timeout = \"2s\"\nmax_connections = 0",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("api.max_connections"), "{e}");
        let c = parse(&text.replace("max_connections = 0", "idle_timeout = \"5s\"")).unwrap();
        assert_eq!(c.api.header_timeout.as_millis(), 2000);
        assert_eq!(c.api.idle_timeout.as_millis(), 5000);
    }

    #[test]
    fn a_typo_names_file_line_col_and_key() {
        let text = GOOD.replace("instances = 3", "instancs = 3");
        let e = parse(&text).unwrap_err();
        assert_eq!((e.line, e.col), (9, 1), "{e}");
        assert!(
            e.to_string()
                .starts_with("baton.toml:9:1: apps.web.instancs: unknown field `instancs`"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_value_names_where_and_what_is_allowed() {
        let text = GOOD.replace("interval = \"1s\"", "interval = \"1 sec\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 16, "{e}");
        assert_eq!(e.key.as_deref(), Some("apps.web.health.interval"));
        assert!(e.message.contains("ms, s, m or h"), "{e}");

        let text = GOOD.replace("strategy = \"rolling\"", "strategy = \"big-bang\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 12, "{e}");
        assert!(
            e.message.contains("rolling") && e.message.contains("blue-green"),
            "{e}"
        );
    }

    #[test]
    fn docker_apps_may_leave_out_the_command_and_only_they_may_be_read_only() {
        let docker = GOOD.replace(
            "command = [\"{artifact}/baton-demo\", \"--port\", \"{port}\"]",
            "driver = \"docker\"\nread_only = true",
        );
        let c = parse(&docker).unwrap();
        assert_eq!(c.apps["web"].driver, Driver::Docker);
        assert!(c.apps["web"].command.is_empty() && c.apps["web"].read_only);
        let process = GOOD.replace(
            "strategy = \"rolling\"",
            "strategy = \"rolling\"\nread_only = true",
        );
        let e = parse(&process).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("apps.web.read_only: applies to containers only"),
            "{e}"
        );
        let bad = GOOD.replace(
            "strategy = \"rolling\"",
            "strategy = \"rolling\"\ndriver = \"podman\"",
        );
        assert!(parse(&bad).unwrap_err().to_string().contains("podman"));
    }

    #[test]
    fn host_ports_need_agents_and_may_not_clash() {
        let hosts = "[cluster]\nlisten = \"127.0.0.1:7443\"\n[hosts.h1]\naddress = \"10.0.0.1\"\n";
        let app = |name: &str, port: u16| {
            let listen = if name == "a" { 9001 } else { 9002 };
            format!(
                "[apps.{name}]\nlisten = \"127.0.0.1:{listen}\"\nhosts = [\"h1\"]\nhost_port = {port}\ncommand = [\"x\"]\n"
            )
        };
        let ok = format!("{hosts}{}{}", app("a", 1), app("b", 2));
        parse(&ok).unwrap();
        let clash = format!("{hosts}{}{}", app("a", 1), app("b", 1));
        let e = parse(&clash).unwrap_err().to_string();
        assert!(
            e.contains("apps.b.host_port") && e.contains("apps.a.host_port"),
            "{e}"
        );
        let local = format!("{hosts}{}", app("a", 1).replace("[\"h1\"]", "[\"local\"]"));
        let e = parse(&local).unwrap_err().to_string();
        assert!(e.contains("needs hosts with agents"), "{e}");
        // Containers run on agents' hosts too, read-only if asked.
        let docker =
            app("a", 1).replace("command = [\"x\"]", "driver = \"docker\"\nread_only = true");
        let c = parse(&format!("{hosts}{docker}")).unwrap();
        assert_eq!(c.apps["a"].driver, Driver::Docker);
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let text = GOOD.replace("instances = 3", "instances = 0");
        let e = parse(&text).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (9, Some("apps.web.instances")),
            "{e}"
        );

        let text = GOOD.replace("max_surge = 1", "max_surge = 0");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 26, "{e}");

        let text = GOOD.replace("\"{port}\"]", "\"{prot}\"]");
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("{prot}"), "{e}");

        let text = GOOD.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:7070\"");
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("already used by api"), "{e}");
    }

    #[test]
    fn renders_placeholders() {
        let cmd = vec![
            "{artifact}/srv".to_string(),
            "--port={port}".into(),
            "{instance}@{version}".into(),
            "--bind={host}:{port}".into(),
        ];
        let vars = CommandVars {
            artifact: "/a",
            host: "10.0.0.11",
            port: 81,
            version: "1.0.0",
            instance: "web-1",
        };
        assert_eq!(
            render_command(&cmd, &vars),
            vec!["/a/srv", "--port=81", "web-1@1.0.0", "--bind=10.0.0.11:81"]
        );
    }
}
