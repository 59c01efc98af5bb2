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
pub mod view;

use std::path::Path;
use std::time::Duration;

use baton_cluster::{ClusterCa, Fingerprint};
use baton_core::config::ClusterConfig;

pub(crate) use listener::serve;
pub use registry::{HostLink, SendError};

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
}

impl Cluster {
    /// Loads (or creates, on the first start) the CA under `data_dir/cluster`.
    pub fn open(
        data_dir: &Path,
        config: &ClusterConfig,
    ) -> Result<Cluster, baton_cluster::CaError> {
        let ca = ClusterCa::load_or_create(&data_dir.join("cluster"))?;
        Ok(Cluster {
            ca,
            heartbeat_timeout: config.heartbeat_timeout.std(),
            registry: Registry::default(),
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

    /// Queues `msg` for host `name`'s current session. Messages to a host are delivered in
    /// order; a session whose queue is full is closed (its agent reconnects with a new
    /// generation and is sent its state again), so a slow host never holds the controller.
    pub fn send(&self, name: &str, msg: baton_cluster::ControllerMsg) -> Result<i64, SendError> {
        self.registry.send(name, msg)
    }
}
