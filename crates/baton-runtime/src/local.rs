//! One face over both drivers for an instance running on this host, whoever runs it: the
//! controller on its own host, or an agent on its host.

use std::fmt;
use std::time::Duration;

use crate::docker::ContainerHandle;
use crate::{ExitInfo, ProcessHandle, StopOutcome};

/// An instance this host runs, as a process or as a container. Cheap to clone; dropping it
/// never stops the instance.
#[derive(Clone, Debug)]
pub enum LocalHandle {
    /// A child process (the `process` driver).
    Process(ProcessHandle),
    /// A container of the host's Docker Engine (the `docker` driver).
    Container(ContainerHandle),
}

impl LocalHandle {
    /// The pid of the instance's (main) process on the host, which identifies this run of it.
    pub fn pid(&self) -> u32 {
        match self {
            LocalHandle::Process(p) => p.pid(),
            LocalHandle::Container(c) => c.pid(),
        }
    }

    /// The process start time, for re-adoption by pid (containers are adopted by name).
    pub fn start_time(&self) -> Option<u64> {
        match self {
            LocalHandle::Process(p) => Some(p.start_time()),
            LocalHandle::Container(_) => None,
        }
    }

    /// Resolves when the instance exits.
    pub async fn exited(&self) -> ExitInfo {
        match self {
            LocalHandle::Process(p) => p.exited().await,
            LocalHandle::Container(c) => c.exited().await,
        }
    }

    /// Stops it: SIGTERM, then SIGKILL after `stop_timeout`; a container is then removed. A
    /// container the engine could not be told to stop is logged and reported killed: the next
    /// start of its owner removes it as an orphan.
    pub async fn stop(&self, stop_timeout: Duration) -> StopOutcome {
        match self {
            LocalHandle::Process(p) => p.stop(stop_timeout).await,
            LocalHandle::Container(c) => match c.stop(stop_timeout).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::error!(container = c.id(), %error, "cannot stop container");
                    StopOutcome::Killed
                }
            },
        }
    }

    /// Removes the container of an instance that exited by itself, once its last lines are in
    /// its log; nothing for a process, or for a container that has not exited.
    pub async fn reap(&self) {
        if let LocalHandle::Container(c) = self
            && c.exit().is_some()
        {
            self.stop(Duration::ZERO).await;
        }
    }

    /// Kills it now, without a grace period (a container is removed): for an instance that
    /// must not be left running, e.g. one that could not be recorded.
    pub async fn kill(&self) {
        match self {
            LocalHandle::Process(p) => p.kill(),
            LocalHandle::Container(c) => {
                if let Err(error) = c.kill().await {
                    tracing::error!(container = c.id(), %error, "cannot remove container");
                }
            }
        }
    }
}

impl fmt::Display for LocalHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalHandle::Process(p) => write!(f, "pid {}", p.pid()),
            LocalHandle::Container(c) => write!(f, "container {} (pid {})", c.name(), c.pid()),
        }
    }
}
