//! A handle on one container instance: started by this Baton or adopted from a previous one.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    StartContainerOptions,
};
use tokio::fs::File;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::timeout;

use super::create::{STOP_SIGNAL, create_body};
use super::error::{is_not_found, status};
use super::labels::{INSTANCE_LABEL, LOG_LABEL, OWNER_LABEL, container_name, label_filter};
use super::logs::{follow, last_written, open_log};
use super::owned::remove_container;
use super::wait::watch_exit;
use super::{ContainerSpec, Docker, DockerError};
use crate::{ExitInfo, StopOutcome};

/// How long `stop` waits for the exit after SIGKILL before giving up on seeing it.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long `stop` lets the log follower copy the last lines before removing the container.
const LOG_DRAIN: Duration = Duration::from_secs(5);

/// A running (or exited) container instance. Cheap to clone; every clone sees the same exit.
///
/// Dropping every handle does not stop the container (instances outlive Baton by design); it
/// stops following its exit and logs, which [`adopt`](Self::adopt) picks up again.
#[derive(Clone)]
pub struct ContainerHandle {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    id: String,
    /// The pid of the container's main process on the host (0 if the engine did not say).
    pid: u32,
    name: String,
    instance: String,
    /// `Some` once the container has exited; written by the exit watcher.
    exit: watch::Receiver<Option<ExitInfo>>,
    exit_task: AbortHandle,
    /// Taken by `stop` to let the follower finish before the container is removed.
    logs: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.exit_task.abort();
        let logs = self.logs.get_mut().map(Option::take);
        if let Ok(Some(task)) = logs {
            task.abort();
        }
    }
}

/// The log file a handle appends to, opened, and where to resume in it.
struct Log {
    path: PathBuf,
    file: File,
    after: Option<SystemTime>,
}

// === impl ContainerHandle ===

impl ContainerHandle {
    /// Starts the instance described by `spec` in a container named `baton-<owner>-<instance>`,
    /// labelled with owner, instance, app, release and log path, with no restart policy, on the
    /// host network, and follows its output into `spec.log_path`.
    ///
    /// A stopped leftover of the same name (and owner) is removed first. A *running* one is an
    /// error ([`DockerError::AlreadyRunning`]): `start` never runs an instance twice and never
    /// kills one it was not asked to; the caller adopts it or stops it.
    ///
    /// # Panics
    /// Outside a tokio runtime: the exit and the logs are followed by background tasks.
    pub async fn start(docker: &Docker, spec: &ContainerSpec) -> Result<Self, DockerError> {
        let name = container_name(&spec.owner, &spec.instance)?;
        let file = open_log(&spec.log_path).await?;
        clear_leftover(docker, &name, spec).await?;
        let id = create(docker, &name, spec).await?;
        let started = docker
            .api()
            .start_container(&id, None::<StartContainerOptions>)
            .await;
        if let Err(error) = started {
            // A container that never ran is of no use to anyone: leave nothing behind.
            if let Err(cleanup) = remove_container(docker, &id).await {
                tracing::warn!(container = %id, error = %cleanup, "cannot remove a container that failed to start");
            }
            let action = format!("start container {name} (image {})", spec.image);
            return Err(DockerError::engine(action, &error));
        }
        let pid = main_pid(docker, &id).await;
        tracing::info!(container = %id, %name, pid, image = %spec.image, "container started");
        let log = Log {
            path: spec.log_path.clone(),
            file,
            after: None,
        };
        Ok(Self::attach(
            docker,
            (id, pid),
            name,
            spec.instance.clone(),
            Some(log),
        ))
    }

    /// Takes over the running container of `instance` started by an earlier Baton with the same
    /// `owner`: follows its exit again, and its logs from after the last line already in its log
    /// file (nothing twice, nothing it printed meanwhile lost). `Ok(None)` if no such container
    /// runs; an error only if the engine cannot be asked, so that "not there" is never confused
    /// with "cannot tell".
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn adopt(
        docker: &Docker,
        owner: &str,
        instance: &str,
    ) -> Result<Option<Self>, DockerError> {
        let name = container_name(owner, instance)?;
        let mut filters = label_filter(&[(OWNER_LABEL, owner), (INSTANCE_LABEL, instance)]);
        filters.insert("status".into(), vec!["running".into()]);
        let options = ListContainersOptionsBuilder::new()
            .filters(&filters)
            .build();
        let found = docker
            .api()
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::engine(format!("look for container {name}"), &e))?;
        let slash_name = format!("/{name}");
        let Some(container) = found
            .into_iter()
            .find(|c| c.names.iter().flatten().any(|n| *n == slash_name))
        else {
            return Ok(None);
        };
        let id = container.id.unwrap_or_default();
        let log_path = container
            .labels
            .and_then(|mut labels| labels.remove(LOG_LABEL));
        let log = match log_path {
            Some(path) => reopen_log(PathBuf::from(path)).await,
            None => None,
        };
        let pid = main_pid(docker, &id).await;
        tracing::info!(container = %id, %name, pid, "container adopted");
        Ok(Some(Self::attach(
            docker,
            (id, pid),
            name,
            instance.into(),
            log,
        )))
    }

    fn attach(
        docker: &Docker,
        (id, pid): (String, u32),
        name: String,
        instance: String,
        log: Option<Log>,
    ) -> Self {
        let (tx, rx) = watch::channel(None);
        let exit_task = tokio::spawn(watch_exit(docker.api().clone(), id.clone(), tx));
        let logs = log.map(|log| {
            let api = docker.api().clone();
            tokio::spawn(follow(api, id.clone(), log.path, log.file, log.after))
        });
        let inner = Inner {
            docker: docker.clone(),
            id,
            pid,
            name,
            instance,
            exit: rx,
            exit_task: exit_task.abort_handle(),
            logs: Mutex::new(logs),
        };
        ContainerHandle {
            inner: Arc::new(inner),
        }
    }

    /// The pid of the container's main process on the host, which identifies this run of
    /// the instance (0 if the engine did not say).
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The container name, `baton-<owner>-<instance>`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The instance id.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// `Some` once the container has exited.
    pub fn exit(&self) -> Option<ExitInfo> {
        self.inner.exit.borrow().clone()
    }

    /// Resolves when the container exits. Any number of tasks may wait.
    pub async fn exited(&self) -> ExitInfo {
        let mut exit = self.inner.exit.clone();
        let published = exit.wait_for(Option::is_some).await;
        // The watcher only goes away without publishing when its runtime shuts down.
        published.map_or(ExitInfo::UNKNOWN, |exit| {
            exit.clone().unwrap_or(ExitInfo::UNKNOWN)
        })
    }

    /// Stops the instance: SIGTERM, up to `stop_timeout` for it to exit, then SIGKILL; then lets
    /// the log follower copy the last lines and removes the container. An error means the engine
    /// could not be told, and the container may still run.
    ///
    /// The program runs as PID 1 of its container, and the kernel does not deliver SIGTERM to
    /// such a process unless it installed a handler: a program that relies on SIGTERM's default
    /// action is killed after `stop_timeout`. Images of such programs should run them under an
    /// init (e.g. `tini`).
    pub async fn stop(&self, stop_timeout: Duration) -> Result<StopOutcome, DockerError> {
        let outcome = self.terminate(stop_timeout).await?;
        self.drain_logs().await;
        remove_container(&self.inner.docker, self.id()).await?;
        tracing::info!(container = %self.id(), name = %self.name(), ?outcome, "container stopped and removed");
        Ok(outcome)
    }

    async fn terminate(&self, stop_timeout: Duration) -> Result<StopOutcome, DockerError> {
        if self.exit().is_some() || !self.signal(STOP_SIGNAL).await? {
            return Ok(StopOutcome::AlreadyGone);
        }
        if let Ok(exit) = timeout(stop_timeout, self.exited()).await {
            return Ok(StopOutcome::Exited(exit));
        }
        tracing::warn!(container = %self.id(), ?stop_timeout, "container ignored SIGTERM; killing it");
        self.signal("SIGKILL").await?;
        if timeout(KILL_WAIT, self.exited()).await.is_err() {
            tracing::warn!(container = %self.id(), "container still there after SIGKILL");
        }
        Ok(StopOutcome::Killed)
    }

    /// Sends `signal` to the container's main process; `false` if it is not running.
    async fn signal(&self, signal: &str) -> Result<bool, DockerError> {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        match self
            .inner
            .docker
            .api()
            .kill_container(self.id(), Some(options))
            .await
        {
            Ok(()) => Ok(true),
            // 409: not running; 404: removed behind Baton's back.
            Err(error) if matches!(status(&error), Some(404 | 409)) => Ok(false),
            Err(error) => {
                let action = format!("send {signal} to container {}", self.name());
                Err(DockerError::engine(action, &error))
            }
        }
    }

    async fn drain_logs(&self) {
        let task = self.inner.logs.lock().ok().and_then(|mut logs| logs.take());
        let Some(mut task) = task else {
            return;
        };
        if timeout(LOG_DRAIN, &mut task).await.is_err() {
            tracing::warn!(container = %self.id(), "log stream still open after the exit; cutting it");
            task.abort();
        }
    }

    /// Kills and removes the container now, without a grace period. Meant for last-resort
    /// cleanup; prefer [`stop`](Self::stop).
    pub async fn kill(&self) -> Result<(), DockerError> {
        remove_container(&self.inner.docker, self.id()).await
    }
}

impl fmt::Debug for ContainerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerHandle")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("exit", &*self.inner.exit.borrow())
            .finish()
    }
}

/// The host pid of a container's main process, or 0 if the engine cannot say.
async fn main_pid(docker: &Docker, id: &str) -> u32 {
    let state = docker
        .api()
        .inspect_container(id, None)
        .await
        .ok()
        .and_then(|c| c.state);
    state
        .and_then(|s| s.pid)
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or(0)
}

/// Removes a stopped container of this name; refuses a running one or another owner's.
async fn clear_leftover(
    docker: &Docker,
    name: &str,
    spec: &ContainerSpec,
) -> Result<(), DockerError> {
    let found = match docker.api().inspect_container(name, None).await {
        Ok(found) => found,
        Err(error) if is_not_found(&error) => return Ok(()),
        Err(error) => {
            return Err(DockerError::engine(
                format!("inspect container {name}"),
                &error,
            ));
        }
    };
    let id = found.id.unwrap_or_default();
    let owner = found
        .config
        .and_then(|config| config.labels)
        .and_then(|mut labels| labels.remove(OWNER_LABEL));
    if owner.as_deref() != Some(spec.owner.as_str()) {
        return Err(DockerError::NotOurs {
            name: name.into(),
            owner,
        });
    }
    if found.state.and_then(|state| state.running) == Some(true) {
        return Err(DockerError::AlreadyRunning {
            instance: spec.instance.clone(),
            container: id,
        });
    }
    tracing::info!(container = %id, %name, "removing a stopped leftover container");
    remove_container(docker, &id).await
}

async fn create(docker: &Docker, name: &str, spec: &ContainerSpec) -> Result<String, DockerError> {
    let options = CreateContainerOptionsBuilder::new().name(name).build();
    match docker
        .api()
        .create_container(Some(options), create_body(spec))
        .await
    {
        Ok(created) => Ok(created.id),
        Err(error) if is_not_found(&error) => Err(DockerError::ImageNotFound {
            reference: spec.image.clone(),
        }),
        Err(error) => {
            let action = format!("create container {name} from image {}", spec.image);
            Err(DockerError::engine(action, &error))
        }
    }
}

/// Opens an adopted container's log again; without it the container is still adopted (its
/// output stays in the engine's own log), because refusing would start a duplicate.
async fn reopen_log(path: PathBuf) -> Option<Log> {
    let after = last_written(&path).await;
    match open_log(&path).await {
        Ok(file) => Some(Log { path, file, after }),
        Err(error) => {
            tracing::warn!(%error, "not following the adopted container's log");
            None
        }
    }
}

#[cfg(test)]
#[path = "handle_tests.rs"]
mod tests;
