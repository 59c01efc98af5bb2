//! What a controller asks a host to run, and what the host reports back: plain data, sent over
//! the cluster channel (`baton-cluster`) and executed by `baton-runtime`'s host runtime (docs/design-notes.md, "Many hosts and containers").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{BreakerConfig, CertConfig, Driver, OutlierConfig};

/// One instance a host should run. The host renders `command` itself: only it knows where the
/// artifact is stored and which port is free on its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The instance id (`web-3`, or `web@staging-3`), unique for the app's lifetime.
    pub instance: String,
    /// The unit it serves (`web` or `web@staging`).
    pub app: String,
    /// The release version.
    pub release: String,
    /// The sha256 digest of the release's artifact.
    pub digest: String,
    /// The command with its placeholders (`{artifact}` `{host}` `{port}` ...) unrendered.
    pub command: Vec<String>,
    /// The environment's config; `HOST`, `PORT` and `BATON_*` are added by the host
    /// ([`instance_env`]).
    pub env: BTreeMap<String, String>,
    /// How the host runs it: a process in the unpacked artifact, or a container of the host's
    /// own Docker Engine from the image the artifact holds (`command`, if not empty, replaces
    /// the image's `CMD`).
    pub driver: Driver,
    /// `driver = "docker"` only: the container's root filesystem is read-only.
    pub read_only: bool,
}

/// What an instance finds in its environment, on every host and with every driver: the app's
/// `env`, then `HOST` and `PORT` (where to listen) and `BATON_APP`, `BATON_RELEASE` and
/// `BATON_INSTANCE`.
pub fn instance_env(
    env: &BTreeMap<String, String>,
    (host, port): (&str, u16),
    app: &str,
    release: &str,
    instance: &str,
) -> BTreeMap<String, String> {
    let mut env = env.clone();
    env.insert("HOST".into(), host.into());
    env.insert("PORT".into(), port.to_string());
    env.insert("BATON_APP".into(), app.into());
    env.insert("BATON_RELEASE".into(), release.into());
    env.insert("BATON_INSTANCE".into(), instance.into());
    env
}

/// One instance a host runs, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// The instance id.
    pub instance: String,
    /// The release it runs.
    pub release: String,
    /// Its process id on the host, which identifies this run of it.
    pub pid: u32,
    /// The port it listens on at the host's address.
    pub port: u16,
}

/// What a host's own proxy (`host_port`) serves: for each app, where it listens on the host
/// and which of the host's instances take its traffic, by release. Sent whole whenever it
/// changes; the host keeps serving the last one it got while the controller is away.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSplit {
    /// One entry per app with `host_port` on this host.
    pub apps: Vec<HostApp>,
}

/// One app's share of a host's split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostApp {
    /// The unit (`web@production`).
    pub app: String,
    /// `host_port`: the host's proxy listens on the host's address at this port.
    pub port: u16,
    /// How the host checks its instances' health.
    pub health: HostHealth,
    /// The proxy's request timeout, in milliseconds.
    pub request_timeout_ms: u64,
    /// The largest request head the proxy reads.
    pub max_header_bytes: usize,
    /// The releases in the split, with their weights and the host's instances of each.
    pub releases: Vec<HostRelease>,
    /// The host's health endpoint for the app's external load balancer (`external_lb`).
    #[serde(default)]
    pub lb: Option<HostLb>,
    /// `[apps.<name>.tls]`'s certificates, absolute paths on the host (the default first);
    /// empty: plain HTTP.
    #[serde(default)]
    pub tls: Vec<CertConfig>,
    /// `[[apps.<name>.breakers]]` on routes: the host's listener runs them too (those on an
    /// app metric are driven by the controller, for its own listener only).
    #[serde(default)]
    pub breakers: Vec<BreakerConfig>,
    /// `[apps.<name>.outlier]`: the host's listener ejects its failing instances too.
    #[serde(default)]
    pub outlier: Option<OutlierConfig>,
    /// The app's feature flags in force, for the `X-Baton-Flags` header the host's listener
    /// adds; `None`: the app has none.
    #[serde(default)]
    pub flags: Option<HostFlags>,
}

/// An app's flags as a host's listener evaluates them per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFlags {
    /// The request header holding the targeting key (`[apps.<name>.canary] sticky`).
    pub key_header: Option<String>,
    /// Else the cookie holding it.
    pub key_cookie: Option<String>,
    /// Every flag, by name.
    pub flags: Vec<HostFlag>,
}

/// One flag in a host's split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFlag {
    /// Its name.
    pub name: String,
    /// Its definition in force.
    pub spec: crate::flags::FlagSpec,
    /// A breaker's reason while one holds it off.
    pub forced_off: Option<String>,
}

/// A host's health endpoint for an app's external load balancer: `port` on the host's
/// address answers 200 while `passing` and the host's proxy has a healthy instance of the
/// app, else 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLb {
    /// `external_lb.health_port`.
    pub port: u16,
    /// The controller wants the host to get traffic.
    pub passing: bool,
}

/// A release in a host's split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRelease {
    /// The release version.
    pub release: String,
    /// Its weight among the app's releases.
    pub weight: u32,
    /// The host's instances of it in the split (ids).
    pub instances: Vec<String>,
}

/// An app's health check settings, as a host applies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHealth {
    /// The path checked.
    pub path: String,
    /// Between checks, in milliseconds.
    pub interval_ms: u64,
    /// For one check, in milliseconds.
    pub timeout_ms: u64,
    /// Passes in a row to become healthy.
    pub healthy_threshold: u32,
    /// Failures in a row to become unhealthy.
    pub unhealthy_threshold: u32,
}
