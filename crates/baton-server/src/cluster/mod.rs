//! The controller's side of the controller-agent channel: the cluster CA, the TLS listener
//! where agents join and hold their sessions, and the registry of connected hosts
//! ([`Cluster`]) through which the controller reaches them.
//!
//! States of a configured host, as `baton hosts` shows them: `never joined` (no row in the
//! store's `hosts`), `connected` (a session is in the registry), `lost` (joined, no session:
//! its agent went away, sent no heartbeat within `[cluster] heartbeat_timeout`, or the
//! controller restarted and it has not reconnected yet).
//!
//! Every session that opens or ends wakes the controller (`Shared::wake`), so that it can
//! send a newly connected host its desired state at once.

mod join;
mod listener;
mod registry;
mod session;
mod tunnel;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::model::Millis;

use baton_cluster::{ClusterCa, Fingerprint};
use baton_core::config::ClusterConfig;

pub(crate) use listener::serve;
pub use registry::{HostLink, SendError};
pub use tunnel::HostDial;

use registry::Registry;

/// The app name under which cluster events are recorded in the event log: no app can have it
/// (app names have no `@`).
pub const EVENT_APP: &str = "@cluster";

/// The cluster: its CA, its settings and the hosts connected now. One per `baton up` with
/// `[cluster]`; shared by the listener, the API and the controller.
pub struct Cluster {
    ca: ClusterCa,
    heartbeat_timeout: Duration,
    registry: Registry,
    /// Each host's `host_port` traffic as it reports it: by (host, app), the request count
    /// last reported and when a report last showed it grow.
    traffic: Mutex<HashMap<(String, String), Traffic>>,
    /// The edge's TLS config for the hosts' tunnels (the controller's certificate).
    tunnel_client: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    /// Where each host's tunnel listens, as its last `hello` said: kept while the host is
    /// away, since its instances may still run and its tunnel still serve.
    tunnels: Mutex<HashMap<String, std::net::SocketAddr>>,
    /// Each host's tunnel epoch, moved by each of its sessions: the edge reuses no
    /// connection opened under an older one (`HostDial`), so an agent restarted by SIGUSR2
    /// sees its old tunnel connections closed by the edge as their exchanges end.
    epochs: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

/// A host's requests for one app: the count last reported, and when a report last showed it
/// grow.
type Traffic = (u64, Option<Millis>);

impl Cluster {
    /// Loads (or creates, on the first start) the CA under `data_dir/cluster`.
    pub fn open(
        data_dir: &Path,
        config: &ClusterConfig,
    ) -> Result<Cluster, baton_cluster::TlsError> {
        let ca = ClusterCa::load_or_create(&data_dir.join("cluster"))?;
        let tunnel_client = std::sync::Arc::new(baton_cluster::tunnel_client_config(&ca)?);
        Ok(Cluster {
            ca,
            tunnel_client,
            tunnels: Mutex::default(),
            epochs: Mutex::default(),
            heartbeat_timeout: config.heartbeat_timeout.std(),
            registry: Registry::default(),
            traffic: Mutex::default(),
        })
    }

    /// The sha256 of the cluster CA certificate, which join tokens pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.ca.fingerprint()
    }

    /// The CA.
    pub(crate) fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// Where host `name`'s tunnel listens, once its agent has said.
    pub fn tunnel_addr(&self, name: &str) -> Option<std::net::SocketAddr> {
        let tunnels = self.tunnels.lock().unwrap_or_else(|e| e.into_inner());
        tunnels.get(name).copied()
    }

    /// Where the hosts' tunnels listened before this controller started (the store's), so
    /// the edge reaches their instances at once, before their agents' sessions are back (an
    /// agent keeps its tunnel port across its restarts). A host no longer configured, or
    /// configured at another address since, is left out: its next `hello` says.
    pub(crate) fn restore_tunnels(
        &self,
        stored: Vec<(String, String)>,
        hosts: &BTreeMap<String, baton_core::config::HostConfig>,
    ) {
        let mut tunnels = self.tunnels.lock().unwrap_or_else(|e| e.into_inner());
        for (name, addr) in stored {
            let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
                tracing::warn!(host = %name, tunnel = %addr.escape_debug(), "unreadable tunnel address in the store; waiting for the host's next session");
                continue;
            };
            if hosts.get(&name).is_some_and(|h| h.address == addr.ip()) {
                tunnels.insert(name, addr);
            }
        }
    }

    /// Host `name`'s tunnel epoch, shared with its dialers (read on every checkout, so an
    /// atomic rather than a lock).
    pub(crate) fn tunnel_epoch(&self, name: &str) -> Arc<AtomicU64> {
        let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        epochs.entry(name.to_string()).or_default().clone()
    }

    /// Records where host `name`'s tunnel listens (its `hello`).
    pub(crate) fn set_tunnel_addr(&self, name: &str, addr: std::net::SocketAddr) {
        let mut tunnels = self.tunnels.lock().unwrap_or_else(|e| e.into_inner());
        tunnels.insert(name.to_string(), addr);
    }

    /// How long a session may go without a heartbeat.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// The session of host `name`, if it is connected now.
    pub fn link(&self, name: &str) -> Option<HostLink> {
        self.registry.get(name)
    }

    /// Every connected host's session, by name.
    pub fn links(&self) -> Vec<(String, HostLink)> {
        self.registry.all()
    }

    /// Records host `name`'s report of its apps' request counts (`served`) at `now`.
    pub(crate) fn served(&self, name: &str, apps: BTreeMap<String, u64>, now: Millis) {
        let mut traffic = self.traffic.lock().unwrap_or_else(|e| e.into_inner());
        for (app, count) in apps {
            let entry = traffic
                .entry((name.to_string(), app))
                .or_insert((count, None));
            // A smaller count is a restarted agent: requests since its start are new ones.
            let grew = count > entry.0 || (count < entry.0 && count > 0);
            if grew {
                entry.1 = Some(now);
            }
            entry.0 = count;
        }
    }

    /// When host `name`'s listener for `app` was last seen to receive a request.
    pub fn last_request(&self, name: &str, app: &str) -> Option<Millis> {
        let traffic = self.traffic.lock().unwrap_or_else(|e| e.into_inner());
        traffic
            .get(&(name.to_string(), app.to_string()))
            .and_then(|(_, at)| *at)
    }

    /// Queues `msg` for host `name`'s current session. Messages to a host are delivered in
    /// order; a session whose queue is full is closed (its agent reconnects with a new
    /// generation and is sent its state again), so a slow host never holds the controller.
    pub fn send(&self, name: &str, msg: baton_cluster::ControllerMsg) -> Result<i64, SendError> {
        self.registry.send(name, msg)
    }
}
