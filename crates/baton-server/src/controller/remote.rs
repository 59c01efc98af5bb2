//! Instances on other hosts, run by their agents (docs/design-notes.md, "Many hosts and
//! containers"). The controller asks an agent to run or stop an instance over the host's
//! session and learns the outcome from its answers; a [`RemoteHandle`] gives such an instance
//! the same face as a local process, so the rest of the controller does not care where it
//! runs. The edge proxy health-checks remote instances itself (I1), and keeps routing to them
//! while their agent is away (I8) until the host is declared lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_cluster::ControllerMsg;
use baton_core::model::Millis;
use baton_core::run::{RunSpec, Running};
use baton_runtime::{ExitInfo, StopOutcome};
use tokio::sync::watch;

use crate::cluster::Cluster;

/// How long past its stop timeout a remote stop waits for the agent's answer.
const STOP_ANSWER_GRACE: Duration = Duration::from_secs(10);

struct Entry {
    host: String,
    pid: u32,
    exit: watch::Sender<Option<ExitInfo>>,
    stopped: watch::Sender<bool>,
}

/// The remote instances the controller watches, by instance id.
#[derive(Default)]
pub struct Remote {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A running instance on another host.
#[derive(Clone)]
pub struct RemoteHandle {
    host: String,
    instance: String,
    pid: u32,
    exit: watch::Receiver<Option<ExitInfo>>,
    stopped: watch::Receiver<bool>,
    cluster: Arc<Cluster>,
}

impl std::fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteHandle")
            .field("host", &self.host)
            .field("instance", &self.instance)
            .field("pid", &self.pid)
            .finish()
    }
}

impl Remote {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches `running` on `host` from now on (replacing an older run of the instance).
    pub fn register(&self, cluster: &Arc<Cluster>, host: &str, running: &Running) -> RemoteHandle {
        let (exit_tx, exit) = watch::channel(None);
        let (stopped_tx, stopped) = watch::channel(false);
        let entry = Entry {
            host: host.to_string(),
            pid: running.pid,
            exit: exit_tx,
            stopped: stopped_tx,
        };
        self.lock().insert(running.instance.clone(), entry);
        RemoteHandle {
            host: host.to_string(),
            instance: running.instance.clone(),
            pid: running.pid,
            exit,
            stopped,
            cluster: cluster.clone(),
        }
    }

    /// The agent of `host` reported that this run of the instance exited; a report about an
    /// instance of another host changes nothing.
    pub fn exited(&self, host: &str, instance: &str, pid: u32, info: ExitInfo) {
        let mut entries = self.lock();
        if entries
            .get(instance)
            .is_some_and(|e| e.pid == pid && e.host == host)
            && let Some(e) = entries.remove(instance)
        {
            e.exit.send_replace(Some(info));
        }
    }

    /// The agent of `host` reported the instance stopped, as asked.
    pub fn stopped(&self, host: &str, instance: &str) {
        let mut entries = self.lock();
        if entries.get(instance).is_some_and(|e| e.host == host)
            && let Some(e) = entries.remove(instance)
        {
            e.stopped.send_replace(true);
        }
    }

    /// The pid of the run the controller watches, if any.
    pub fn pid(&self, instance: &str) -> Option<u32> {
        self.lock().get(instance).map(|e| e.pid)
    }

    /// Stops watching an instance (its host was declared lost).
    pub fn forget(&self, instance: &str) {
        self.lock().remove(instance);
    }
}

impl RemoteHandle {
    /// The instance's pid on its host.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The host it runs on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Resolves when its agent reports it exited.
    pub async fn exited(&self) -> ExitInfo {
        let mut exit = self.exit.clone();
        // Stopped or forgotten (its host lost) also ends the watch: the controller ignores
        // the exit of an instance that is leaving.
        exit.wait_for(Option::is_some)
            .await
            .map(|info| info.clone().unwrap_or(ExitInfo::UNKNOWN))
            .unwrap_or(ExitInfo::UNKNOWN)
    }

    /// Asks its agent to stop it and waits for the answer. A host that is not connected gets
    /// nothing now: when it comes back, its `hello` lists the instance and the controller,
    /// which no longer wants it, stops it then.
    pub async fn stop(&self, stop_timeout: Duration) -> StopOutcome {
        let msg = ControllerMsg::Stop {
            instance: self.instance.clone(),
            timeout_ms: u64::try_from(stop_timeout.as_millis()).unwrap_or(u64::MAX),
        };
        if let Err(e) = self.cluster.send(&self.host, msg) {
            tracing::warn!(instance = %self.instance, error = %e, "cannot ask the agent to stop an instance now");
            return StopOutcome::AlreadyGone;
        }
        let mut stopped = self.stopped.clone();
        let mut exit = self.exit.clone();
        let wait = async {
            // `stopped` first: the answer to this stop ends the exit watch too (the entry and
            // both senders go together), and must not read as "already gone".
            tokio::select! {
                biased;
                r = stopped.wait_for(|s| *s) => r.map(|_| StopOutcome::Exited(ExitInfo::UNKNOWN)).unwrap_or(StopOutcome::AlreadyGone),
                r = exit.wait_for(Option::is_some) => r.map(|_| StopOutcome::AlreadyGone).unwrap_or(StopOutcome::AlreadyGone),
            }
        };
        match tokio::time::timeout(stop_timeout + STOP_ANSWER_GRACE, wait).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(instance = %self.instance, host = %self.host, "no answer to a stop");
                StopOutcome::Killed
            }
        }
    }
}

/// The request to run an instance: the host renders the command, picks the port, and runs it
/// with the app's driver on its own engine.
pub fn run_spec(
    inst: &baton_core::model::Instance,
    app: &baton_core::config::AppConfig,
    digest: &str,
) -> RunSpec {
    RunSpec {
        instance: inst.id.clone(),
        app: inst.app.clone(),
        release: inst.release.clone(),
        digest: digest.to_string(),
        command: app.command.clone(),
        env: app.env.clone(),
        driver: app.driver,
        read_only: app.read_only,
    }
}

/// How much longer than the heartbeat timeout hosts get to reconnect after the controller
/// started: an agent may be in its longest backoff (10 s) and then take a connect timeout
/// (10 s) before it is back.
const BOOT_GRACE_MS: Millis = 20_000;

/// When each configured host lost its session (absent while connected), for fencing.
pub struct Absence {
    boot: Millis,
    since: HashMap<String, Millis>,
}

impl Absence {
    /// Starts counting at `now`, the controller's start.
    pub fn new(now: Millis) -> Absence {
        Absence {
            boot: now,
            since: HashMap::new(),
        }
    }

    /// Updates from the registry; returns the hosts away for longer than `grace` (plus the
    /// boot grace for hosts away since the controller started).
    pub fn update(
        &mut self,
        cluster: &Cluster,
        hosts: impl Iterator<Item = String>,
        now: Millis,
        grace: Millis,
    ) -> Vec<String> {
        let mut lost = Vec::new();
        for host in hosts {
            if cluster.link(&host).is_some() {
                self.since.remove(&host);
                continue;
            }
            let since = *self.since.entry(host.clone()).or_insert(now);
            let grace = if since == self.boot {
                grace.saturating_add(BOOT_GRACE_MS)
            } else {
                grace
            };
            if now.saturating_sub(since) >= grace {
                lost.push(host);
            }
        }
        lost
    }
}
