//! What a controller asks a host to run, and what the host reports back: plain data, sent over
//! the cluster channel (`baton-cluster`) and executed by `baton-runtime`'s host runtime (docs/design-notes.md, "Many hosts and containers").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// The environment's config; `HOST`, `PORT` and `BATON_*` are added by the host.
    pub env: BTreeMap<String, String>,
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
