//! One interface over every way an instance runs (docs/design-notes.md, "Many hosts and
//! containers"): the controller starts, watches and stops instances through it, whatever the
//! driver or host.

use std::fmt;
use std::time::Duration;

use baton_runtime::{ExitInfo, LocalHandle, StopOutcome};

use crate::controller::remote::RemoteHandle;

/// A running (or exited) instance. Cheap to clone; dropping it never stops the instance.
#[derive(Clone, Debug)]
pub enum InstanceHandle {
    /// A process or container on the controller's own host (`baton-runtime`'s drivers, as an
    /// agent runs them on its host).
    Local(LocalHandle),
    /// An instance on another host, run by its agent.
    Remote(RemoteHandle),
}

impl InstanceHandle {
    /// The instance's process id on its host, which identifies this run of it: an exit
    /// reported for another pid is of an earlier run.
    pub fn pid(&self) -> u32 {
        match self {
            InstanceHandle::Local(l) => l.pid(),
            InstanceHandle::Remote(r) => r.pid(),
        }
    }

    /// The process start time, where the driver knows it (for re-adoption by pid).
    pub fn start_time(&self) -> Option<u64> {
        match self {
            InstanceHandle::Local(l) => l.start_time(),
            InstanceHandle::Remote(_) => None,
        }
    }

    /// Resolves when the instance exits.
    pub async fn exited(&self) -> ExitInfo {
        match self {
            InstanceHandle::Local(l) => l.exited().await,
            InstanceHandle::Remote(r) => r.exited().await,
        }
    }

    /// Removes a local container that exited by itself (its output is in the instance's log);
    /// nothing for other instances.
    pub async fn reap(&self) {
        if let InstanceHandle::Local(l) = self {
            l.reap().await;
        }
    }

    /// Stops it: SIGTERM, then SIGKILL after `stop_timeout` (a container is then removed; one
    /// that cannot be is removed as an orphan at the next start, `containers.rs`).
    pub async fn stop(&self, stop_timeout: Duration) -> StopOutcome {
        match self {
            InstanceHandle::Local(l) => l.stop(stop_timeout).await,
            InstanceHandle::Remote(r) => r.stop(stop_timeout).await,
        }
    }
}

impl fmt::Display for InstanceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceHandle::Local(l) => l.fmt(f),
            InstanceHandle::Remote(r) => write!(f, "pid {} on host {}", r.pid(), r.host()),
        }
    }
}
