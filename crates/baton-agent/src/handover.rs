//! Restart and upgrade of the agent (SIGUSR2) with no request lost on the host's listeners:
//! the same hand-over as `baton restart` (crates/baton-proxy/src/handoff.rs). The old agent
//! closes its session with the controller (its control plane) before the new one re-adopts
//! the instances and serves the kept split on the same sockets; then the old one stops
//! accepting, finishes its requests and exits. Instances are never stopped.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_proxy::handoff::{HandoffError, Predecessor, Sockets, Successor};

use crate::AgentError;

/// The file in the agent's data directory that holds the pid of the agent serving it.
pub const PID_FILE: &str = "agent.pid";

/// This agent's part in hand-overs: the one it was started for, and those it may start.
pub(crate) struct Handover {
    /// The listening sockets: handed over, or bound here.
    pub(crate) sockets: Arc<Sockets>,
    predecessor: Option<Predecessor>,
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Handover {
    /// Connects to the agent that started this one, if it did (`BATON_HANDOFF`).
    pub(crate) async fn from_env() -> Result<Handover, AgentError> {
        let (exe, args) =
            baton_proxy::handoff::own_command().map_err(|e| AgentError::Handoff(e.into()))?;
        let (predecessor, sockets) = match Predecessor::connect_from_env().await? {
            Some((p, s)) => {
                tracing::info!(pid = p.pid, sockets = ?s.unclaimed(), "taking over from the running agent");
                (Some(p), s)
            }
            None => (None, Sockets::default()),
        };
        Ok(Handover {
            sockets: Arc::new(sockets),
            predecessor,
            exe,
            args,
        })
    }

    /// Returns once the old agent has closed its session with the controller.
    pub(crate) async fn take(&mut self) -> Result<(), AgentError> {
        if let Some(p) = &mut self.predecessor {
            p.take().await?;
        }
        Ok(())
    }

    /// This agent serves: `DATA/agent.pid` names it, and the old one stops accepting.
    pub(crate) async fn ready(&mut self, data_dir: &Path) {
        self.sockets.close_unclaimed();
        let path = data_dir.join(PID_FILE);
        let tmp = data_dir.join(format!("{PID_FILE}.tmp"));
        let written = std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot record the agent's pid");
        }
        if let Some(p) = self.predecessor.take()
            && let Err(e) = p.ready().await
        {
            tracing::warn!(error = %e, "cannot tell the old agent that this one serves");
        }
    }

    /// This agent cannot serve: the old one goes on.
    pub(crate) async fn failed(&mut self, reason: &str) {
        if let Some(p) = self.predecessor.take() {
            p.failed(reason).await;
        }
    }

    /// Starts the agent binary on disk and hands over to it; the caller has closed its session
    /// with the controller. Returns the new pid once it serves.
    pub(crate) async fn hand_over(&self, data_dir: &Path) -> Result<u32, HandoffError> {
        let mut next = Successor::start(data_dir, &self.exe, &self.args, &self.sockets).await?;
        let served = match next.taken().await {
            Ok(()) => match next.released().await {
                Ok(()) => next.ready().await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if served.is_err() {
            next.abandon().await;
        }
        served
    }
}
