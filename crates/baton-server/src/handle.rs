//! One interface over every way an instance runs (docs/design-notes.md, "Many hosts and
//! containers"): the controller starts, watches and stops instances through it, whatever the
//! driver or host.

use std::fmt;
use std::time::Duration;

use baton_runtime::docker::ContainerHandle;
use baton_runtime::{ExitInfo, ProcessHandle, StopOutcome};

/// A running (or exited) instance. Cheap to clone; dropping it never stops the instance.
#[derive(Clone, Debug)]
pub enum InstanceHandle {
    /// A child process on the controller's own host (the `process` driver).
    Process(ProcessHandle),
    /// A container of the local Docker Engine (the `docker` driver).
    Container(ContainerHandle),
}

impl InstanceHandle {
    /// The instance's process id on its host, which identifies this run of it: an exit
    /// reported for another pid is of an earlier run.
    pub fn pid(&self) -> u32 {
        match self {
            InstanceHandle::Process(p) => p.pid(),
            InstanceHandle::Container(c) => c.pid(),
        }
    }

    /// The process start time, where the driver knows it (for re-adoption by pid).
    pub fn start_time(&self) -> Option<u64> {
        match self {
            InstanceHandle::Process(p) => Some(p.start_time()),
            InstanceHandle::Container(_) => None,
        }
    }

    /// Resolves when the instance exits.
    pub async fn exited(&self) -> ExitInfo {
        match self {
            InstanceHandle::Process(p) => p.exited().await,
            InstanceHandle::Container(c) => c.exited().await,
        }
    }

    /// Stops it: SIGTERM, then SIGKILL after `stop_timeout` (a container is then removed).
    pub async fn stop(&self, stop_timeout: Duration) -> StopOutcome {
        match self {
            InstanceHandle::Process(p) => p.stop(stop_timeout).await,
            InstanceHandle::Container(c) => match c.stop(stop_timeout).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    // The next start of Baton removes it as an orphan (`containers.rs`).
                    tracing::error!(container = c.id(), %error, "cannot stop container");
                    StopOutcome::Killed
                }
            },
        }
    }
}

impl fmt::Display for InstanceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceHandle::Process(p) => write!(f, "pid {}", p.pid()),
            InstanceHandle::Container(c) => {
                write!(f, "container {} (pid {})", c.name(), c.pid())
            }
        }
    }
}
