//! The state the controller and the API share: the config snapshot, store, router and the
//! live instances.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use std::collections::BTreeMap;

use arc_swap::ArcSwap;
use baton_core::config::{AppConfig, Config, Unit};
use baton_core::model::{Event, EventKind, Millis};
use baton_store::StoreError;

use crate::handle::InstanceHandle;
use crate::notify::Notifier;
use baton_proxy::{Backend, Router};
use baton_runtime::docker::Docker;
use baton_store::{ArtifactStore, Store};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// Everything the daemon's tasks share.
pub struct Shared {
    /// The config in force: swapped whole by a reload (`reload.rs`). Read it once per tick or
    /// request ([`Shared::config`]) so no code sees half of one config and half of another.
    pub snapshot: ArcSwap<ConfigSnapshot>,
    /// The unit config each running deployment started with, by unit key: while a deployment
    /// runs, [`Shared::app`] answers with it, so a reload never changes a rollout's rules.
    pub pinned: Mutex<HashMap<String, (i64, Arc<AppConfig>)>>,
    /// Units a reload removed whose instances still run, with their last config: the
    /// controller drains and stops those instances, then forgets the unit.
    pub retired: Mutex<BTreeMap<String, Arc<AppConfig>>>,
    /// Asks the daemon to reload the config file (`POST /v1/reload`).
    pub reload: crate::reload::Reloader,
    pub data_dir: PathBuf,
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub router: Arc<Router>,
    /// Wakes the controller when an intent is recorded.
    pub wake: Notify,
    /// The instances this daemon watches, by id.
    pub live: Mutex<HashMap<String, Live>>,
    /// Posts every event to the configured webhooks.
    pub notifier: Notifier,
    /// Migration steps running now: (deployment, contract?).
    pub migrations: Mutex<HashSet<(i64, bool)>>,
    /// The cluster (`[cluster]`): the hosts connected now and how to reach them.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The local Docker Engine, when an app has `driver = "docker"`.
    pub docker: Option<Docker>,
    /// This data directory's id: the owner label of its containers.
    pub owner: String,
    /// Where instances started in the background (containers) report back.
    pub started: mpsc::UnboundedSender<Started>,
    /// What agents report about their instances, for the controller loop.
    /// Bounded: a host that reports faster than the controller applies waits (its session
    /// stops reading), so no peer can grow the controller's memory.
    pub agent_events: mpsc::Sender<AgentEvent>,
    /// The instances on other hosts the controller watches.
    pub remote: crate::controller::remote::Remote,
    /// Restart and stop requests for the daemon (`baton restart`, `baton stop`).
    pub lifecycle: mpsc::Sender<crate::handover::Request>,
    /// Feature flags in force, for OFREP and the API; `force_off` is the breakers' hook.
    pub flags: Arc<crate::flags::FlagBook>,
    /// The apps' dark launches (mirrors and their reports).
    pub mirrors: crate::controller::dark::Mirrors,
}

/// One whole config, as loaded at start or by a reload.
pub struct ConfigSnapshot {
    /// The parsed file.
    pub config: Config,
    /// Every app in every environment it runs in, by unit key (`app@env`).
    pub units: BTreeMap<String, Unit>,
    /// Each unit's resolved settings, shared with whoever holds them across a reload.
    pub apps: BTreeMap<String, Arc<AppConfig>>,
}

impl ConfigSnapshot {
    /// Resolves the units of `config`, read from `config_path` (relative certificate paths
    /// are resolved against its directory).
    pub fn new(config: Config, config_path: &std::path::Path) -> Self {
        let units: BTreeMap<String, Unit> = config
            .units()
            .into_iter()
            .map(|u| (u.key.clone(), crate::tls::resolve(u, config_path)))
            .collect();
        let apps = units
            .iter()
            .map(|(k, u)| (k.clone(), Arc::new(u.config.clone())))
            .collect();
        Self {
            config,
            units,
            apps,
        }
    }
}

/// A report from a host's agent.
pub enum AgentEvent {
    /// A session opened: what runs on the host now.
    Hello {
        /// The host.
        host: String,
        /// Its instances.
        running: Vec<baton_core::run::Running>,
    },
    /// An answer or a report within a session.
    Msg {
        /// The host.
        host: String,
        /// The message.
        msg: baton_cluster::AgentMsg,
    },
}

/// The result of an instance start that ran in the background.
pub struct Started {
    /// The unit.
    pub app: String,
    /// The instance id.
    pub instance: String,
    /// The `started_at` of the attempt, so a late answer to an older attempt is told apart.
    pub attempt: Millis,
    /// The running instance, or why it could not start.
    pub result: Result<InstanceHandle, String>,
}

/// One watched instance: its backend in the proxy, its process and its health checker.
pub struct Live {
    /// The unit (`app@env`) it serves.
    pub app: String,
    pub backend: Arc<Backend>,
    pub process: Option<InstanceHandle>,
    pub checker: Option<JoinHandle<()>>,
    /// Set when Baton itself is stopping it, so its exit is not taken for a crash.
    pub stopping: bool,
}

impl Live {
    /// Marks it as being stopped by Baton and hands its parts to the drain task, which from
    /// then on owns the health checker.
    pub fn take_for_drain(&mut self) -> Live {
        self.stopping = true;
        Live {
            app: self.app.clone(),
            backend: self.backend.clone(),
            process: self.process.clone(),
            checker: self.checker.take(),
            stopping: true,
        }
    }
}

impl Shared {
    /// The config in force now: one snapshot, never half of two.
    pub fn config(&self) -> Arc<ConfigSnapshot> {
        self.snapshot.load_full()
    }

    /// The address instances on `host` are reached at.
    pub fn host_address(&self, host: &str) -> std::net::IpAddr {
        match self.config().config.hosts.get(host) {
            Some(h) if host != baton_core::model::LOCAL_HOST => h.address,
            _ => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }

    /// How the edge reaches the instance on `port` of `host`: through the host's tunnel
    /// (`cluster/tunnel.rs`), or, on the controller's own host, `None` (a loopback connect).
    pub fn dial(&self, host: &str, port: u16) -> Option<Arc<dyn baton_proxy::Dial>> {
        if host == baton_core::model::LOCAL_HOST {
            return None;
        }
        let cluster = self.cluster.clone()?;
        Some(crate::cluster::HostDial::new(cluster, host, port))
    }

    pub fn migrations(&self) -> std::sync::MutexGuard<'_, HashSet<(i64, bool)>> {
        self.migrations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resolved settings of a unit (`app@env`): those its running deployment started
    /// with, else those in force, else (a unit a reload removed) its last ones.
    pub fn app(&self, key: &str) -> Option<Arc<AppConfig>> {
        if let Some((_, pinned)) = lock(&self.pinned).get(key) {
            return Some(pinned.clone());
        }
        if let Some(app) = self.snapshot.load().apps.get(key) {
            return Some(app.clone());
        }
        lock(&self.retired).get(key).cloned()
    }

    /// A unit (`app@env`) of the config in force.
    pub fn unit(&self, key: &str) -> Option<Unit> {
        self.snapshot.load().units.get(key).cloned()
    }

    pub fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn log_path(&self, app: &str, instance: &str) -> PathBuf {
        self.data_dir
            .join("logs")
            .join(app)
            .join(format!("{instance}.log"))
    }

    pub fn pid_file(&self, instance: &str) -> PathBuf {
        self.data_dir.join("run").join(format!("{instance}.pid"))
    }

    /// Appends an event to the audit log, logs it in one line and posts it to the webhooks.
    pub fn event(
        &self,
        now: Millis,
        app: &str,
        deployment: Option<i64>,
        kind: EventKind,
        message: &str,
    ) -> Result<Event, StoreError> {
        let e = self
            .store
            .append_event(now, app, deployment, kind, message)?;
        self.published(&e);
        Ok(e)
    }

    /// Logs an event already in the store and posts it to the webhooks.
    pub fn published(&self, e: &Event) {
        tracing::info!(app = %e.app, deployment = ?e.deployment, event = %e.kind, "{:?}", e.message);
        // Webhooks get the deployment's story (started, steps, verdicts, outcome), not every
        // instance's health flap.
        if crate::notify::is_deployment_event(&e.kind) {
            self.notifier.notify(e);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
