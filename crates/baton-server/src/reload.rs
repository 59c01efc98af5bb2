//! Live config reload (`baton reload`, SIGHUP): validate the file, refuse what only a restart
//! can apply, bind the new listeners, then swap the config snapshot in one store, start and
//! stop listeners, and record one `config_reloaded` event saying what changed.
//!
//! Everything that can fail comes before the swap: a reload that fails changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_core::config::{ConfigDiff, diff, restart_only_change};
use baton_core::model::{EventKind, LOCAL_HOST};
use tokio::sync::{mpsc, oneshot};

use crate::clock;
use crate::daemon::{LoadError, load_config};
use crate::listeners::{Bound, Listeners, listener_config};
use crate::shared::{ConfigSnapshot, Shared};

/// The app name under which reloads are recorded in the event log: no app can have it.
pub const EVENT_APP: &str = "@config";

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read or is not a valid config (file:line:col).
    #[error("{0}\nnothing was changed: Baton keeps running with the config in force")]
    Invalid(#[from] LoadError),
    /// The new config is valid but changes what only a restart applies.
    #[error("{0}")]
    RestartOnly(String),
    /// The new config cannot be applied now (a listener cannot bind, a removed app is being
    /// deployed).
    #[error("{0}")]
    Refused(String),
    /// Baton is stopping.
    #[error("baton is shutting down")]
    Stopping,
}

type Reply = oneshot::Sender<Result<ConfigDiff, ReloadError>>;

/// Asks the daemon to reload its config; reloads run one at a time.
#[derive(Debug, Clone)]
pub struct Reloader(mpsc::Sender<Reply>);

impl Reloader {
    /// A reloader and the queue the daemon serves.
    pub(crate) fn new() -> (Self, mpsc::Receiver<Reply>) {
        let (tx, rx) = mpsc::channel(8);
        (Self(tx), rx)
    }

    /// Reloads the config file; answers what changed, or why nothing did.
    pub async fn reload(&self) -> Result<ConfigDiff, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.map_err(|_| ReloadError::Stopping)?;
        rx.await.map_err(|_| ReloadError::Stopping)?
    }
}

/// Serves reload requests until the queue closes.
pub(crate) struct Reloads {
    pub path: PathBuf,
    pub shared: Arc<Shared>,
    pub queue: mpsc::Receiver<Reply>,
}

impl Reloads {
    /// Answers the next request; false once no one can ask any more.
    pub async fn serve_one(&mut self, listeners: &mut Listeners) -> bool {
        let Some(reply) = self.queue.recv().await else {
            return false;
        };
        let result = reload(&self.shared, listeners, &self.path).await;
        match &result {
            Ok(d) => tracing::info!(changes = %d, "config reloaded"),
            Err(e) => {
                tracing::warn!(error = %e, "config reload refused; the config in force is unchanged")
            }
        }
        let _ = reply.send(result);
        true
    }
}

/// Reloads `path` into `shared`, starting and stopping `listeners` to match.
///
/// Cancel-safe (shutdown may drop it): its only awaits are the binds, before anything changes.
pub(crate) async fn reload(
    shared: &Shared,
    listeners: &mut Listeners,
    path: &Path,
) -> Result<ConfigDiff, ReloadError> {
    let new = load_config(path)?;
    let old = shared.config();
    if restart_only_change(&old.config, &new) == Some("data_dir") {
        return Err(ReloadError::RestartOnly(format!(
            "{}: `data_dir` changed: Baton's store, artifacts and instance records live there, so neither a reload nor `baton restart` can move it; put it back, or stop Baton, move the directory and start it again; nothing was changed",
            path.display()
        )));
    }
    if let Some(key) = restart_only_change(&old.config, &new) {
        return Err(ReloadError::RestartOnly(format!(
            "{}: `{key}` changed, and it is applied only when Baton starts: put it back and reload, or restart Baton (`baton restart`) to apply it; nothing was changed",
            path.display()
        )));
    }
    let changes = diff(&old.config, &new);
    let next = ConfigSnapshot::new(new, path);
    check(shared, &changes, &old, &next)?;
    let certs = crate::tls::prepare(&next.units, |key| listeners.tls(key))
        .map_err(|e| ReloadError::Refused(format!("{e:#}; nothing was changed")))?;
    // Bound before anything changes: a listener that cannot bind refuses the whole reload.
    let mut bound = Vec::new();
    for key in changes.added.iter().chain(&changes.moved) {
        let unit = &next.units[key];
        let listen = unit.config.listen.expect("units have a listen address");
        let what = format!("app {} in {} (its listen address)", unit.app, unit.env);
        let b = match listeners.take_over(listen) {
            Some(b) => b,
            // Not in the hand-over registry yet: `Listeners::start` offers it once the reload
            // commits, so a refused reload leaves no socket behind.
            None => Bound::bind_unoffered(listen, &what)
                .await
                .map_err(|e| ReloadError::Refused(format!("{e:#}; nothing was changed")))?,
        };
        bound.push((key.clone(), b));
    }
    apply(shared, listeners, &old, next, &changes, bound, &certs);
    let message = format!("{} reloaded: {changes}", path.display());
    if let Err(e) = shared.event(
        clock::now(),
        EVENT_APP,
        None,
        EventKind::ConfigReloaded,
        &message,
    ) {
        tracing::error!(error = %e, "cannot record the reload in the event log");
    }
    shared.wake.notify_one();
    Ok(changes)
}

/// Puts `next` in force: one store of the snapshot, then the listeners follow. Cannot fail.
fn apply(
    shared: &Shared,
    listeners: &mut Listeners,
    old: &ConfigSnapshot,
    next: ConfigSnapshot,
    changes: &ConfigDiff,
    bound: Vec<(String, Bound)>,
    certs: &crate::tls::Prepared,
) {
    let next = Arc::new(next);
    {
        let mut retired = shared.retired.lock().unwrap_or_else(|e| e.into_inner());
        for key in &changes.removed {
            retired.insert(key.clone(), old.apps[key].clone());
        }
        for key in &changes.added {
            retired.remove(key);
        }
    }
    shared.snapshot.store(next.clone());
    shared.flags.set_config(next.units.values());
    crate::breakers::sync(shared, &next);
    for key in &changes.removed {
        shared.router.set_breakers(key, &[]);
        shared.router.set_outlier(key, None);
    }
    certs.apply();
    let cfg = |key: &str| listener_config(&next.apps[key], certs.holders.get(key).cloned());
    for (key, b) in bound {
        // Only a failed dup of a fresh socket: the unit stays without a listener; logged.
        if let Err(e) = listeners.start(&key, b, cfg(&key)) {
            tracing::error!(app = %key, error = %format!("{e:#}"), "cannot start a listener");
        }
    }
    for key in &changes.removed {
        listeners.stop(key);
    }
    for key in changes.changed.keys() {
        if let Err(e) = listeners.reconfigure(key, cfg(key)) {
            tracing::error!(app = %key, error = %format!("{e:#}"), "cannot restart a listener with its new proxy settings");
        }
    }
}

/// What a valid config may still not do live.
fn check(
    shared: &Shared,
    changes: &ConfigDiff,
    old: &ConfigSnapshot,
    next: &ConfigSnapshot,
) -> Result<(), ReloadError> {
    // Redirect listeners are bound at start only.
    let redirect = |c: &baton_core::config::Config, app: &str| {
        c.apps
            .get(app)
            .and_then(|a| a.tls.as_ref())
            .and_then(|t| t.redirect_http)
    };
    let mut apps = old.config.apps.keys().chain(next.config.apps.keys());
    // The redirect sends to the port of the app's listener in its last environment, as
    // it was at start.
    let target = |snap: &ConfigSnapshot, app: &str| {
        snap.config
            .environments
            .iter()
            .rev()
            .find_map(|env| snap.units.get(&format!("{app}@{env}")))
            .and_then(|u| u.config.listen)
    };
    if let Some(app) = apps.find(|app| {
        redirect(&old.config, app) != redirect(&next.config, app)
            || (redirect(&old.config, app).is_some() && target(old, app) != target(next, app))
    }) {
        return Err(ReloadError::RestartOnly(format!(
            "[apps.{app}.tls] redirect_http, or the listener it redirects to, changed, and redirect listeners are set up only when Baton starts: put it back and reload, or restart Baton (`baton restart`) to apply it; nothing was changed"
        )));
    }
    for key in &changes.removed {
        let active = shared
            .store
            .active_deployment(key)
            .map_err(|e| ReloadError::Refused(format!("cannot read {key}'s deployments: {e}")))?;
        if let Some(d) = active {
            return Err(ReloadError::Refused(format!(
                "the new config removes {key}, which has deployment #{} in progress: wait for it to end or `baton abort` it, then reload; nothing was changed",
                d.id
            )));
        }
    }
    if shared.docker.is_none()
        && let Some(key) = changes
            .added
            .iter()
            .chain(changes.changed.keys())
            .find(|k| {
                let c = &next.units[*k].config;
                c.driver == baton_core::config::Driver::Docker
                    && c.host_names().iter().any(|h| h == LOCAL_HOST)
            })
    {
        return Err(ReloadError::RestartOnly(format!(
            "{key} runs containers on this host, and Baton connects to the Docker Engine only when it starts: restart Baton to add it; nothing was changed"
        )));
    }
    Ok(())
}
