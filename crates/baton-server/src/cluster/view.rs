//! The JSON of `GET /v1/hosts` and `POST /v1/hosts/tokens`, which the CLI reads too.

use baton_core::model::Millis;
use baton_store::StoredHost;
use serde::{Deserialize, Serialize};

use super::Cluster;
use baton_core::config::Config;

/// A host is connected now.
pub const CONNECTED: &str = "connected";
/// A host joined but has no session now.
pub const LOST: &str = "lost";
/// A configured host that never joined.
pub const NEVER_JOINED: &str = "never joined";

/// One configured host, as `baton hosts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    /// Its name (`[hosts.NAME]`).
    pub name: String,
    /// Its configured address.
    pub address: String,
    /// `connected`, `lost` or `never joined`.
    pub state: String,
    /// Drained by the operator (`baton host drain`): takes no instances.
    #[serde(default)]
    pub drained: bool,
    /// The version of its agent (of the current or last session).
    pub agent_version: Option<String>,
    /// How many instances run there.
    pub instances: u32,
    /// When its agent was last heard from (unix ms): the last heartbeat while connected.
    pub last_seen: Option<Millis>,
    /// Its generation: incremented at every join and every session.
    pub generation: Option<i64>,
    /// When it (last) joined (unix ms).
    pub joined_at: Option<Millis>,
}

/// `POST /v1/hosts/tokens` body: every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// How long the token is valid (default `"1h"`).
    #[serde(default)]
    pub ttl: Option<String>,
}

/// `POST /v1/hosts/tokens` answer: the token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The whole token, secret included; the controller keeps only the secret's sha256.
    pub token: String,
    /// The token's id, as join events name it.
    pub id: String,
    /// When it expires (unix ms).
    pub expires_at: Millis,
}

/// Every configured host with its state, by name.
pub fn host_views(
    config: &Config,
    cluster: Option<&Cluster>,
    stored: &[StoredHost],
) -> Vec<HostView> {
    config
        .hosts
        .iter()
        .map(|(name, host)| {
            let joined = stored.iter().find(|h| &h.name == name);
            let link = cluster.and_then(|c| c.link(name));
            let state = match (&link, joined) {
                (Some(_), _) => CONNECTED,
                (None, Some(_)) => LOST,
                (None, None) => NEVER_JOINED,
            };
            HostView {
                name: name.clone(),
                address: host.address.to_string(),
                state: state.to_string(),
                // Filled in by the API from the store.
                drained: false,
                agent_version: link
                    .as_ref()
                    .map(|l| l.version.clone())
                    .or_else(|| joined.and_then(|h| h.agent_version.clone())),
                // Filled in by the API from the store.
                instances: 0,
                last_seen: link
                    .as_ref()
                    .map(|l| l.last_seen)
                    .or_else(|| joined.and_then(|h| h.last_seen)),
                generation: link
                    .as_ref()
                    .map(|l| l.generation)
                    .or_else(|| joined.map(|h| h.generation)),
                joined_at: joined.map(|h| h.joined_at),
            }
        })
        .collect()
}

/// `POST /v1/hosts/{host}/drain` and `/undrain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainView {
    /// The host.
    pub host: String,
    /// Whether it is drained now.
    pub drained: bool,
    /// Whether this call changed that.
    pub changed: bool,
}
