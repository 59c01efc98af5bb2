//! What the agent does for the controller (docs/design-notes.md, "Many hosts and
//! containers"): runs and stops instances with the host runtime (processes, or containers of
//! the host's Docker Engine, as the run asks), downloads an artifact it lacks from the
//! controller (checked against its digest as it is stored; an image release's too, from which
//! the runtime loads the image), and reports back on the session's outgoing queue. Every
//! request is idempotent, so a repeat changes nothing.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use baton_cluster::{AgentMsg, ControllerMsg, FrameReader, write_frame};
use baton_core::run::RunSpec;
use baton_runtime::host::{HostEvent, HostRuntime};
use baton_store::{ArtifactStore, ImportLimits};
use rustls::ClientConfig;
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, mpsc};

use crate::connect::connect;
use crate::proxy::HostProxy;

/// Longest an artifact download may take (a stalled one must not hold every later start).
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// The host's instances and artifacts, shared by every session of the agent.
pub struct Executor {
    host: Arc<HostRuntime>,
    proxy: HostProxy,
    artifacts: ArtifactStore,
    /// One download at a time: two runs of one release must not fetch it twice.
    fetching: Mutex<()>,
    controller: String,
    address: IpAddr,
    /// Where the last split is kept, so that a restarted agent serves it before the
    /// controller answers.
    split_file: std::path::PathBuf,
}

impl Executor {
    /// Re-adopts what a previous run of the agent left running; exits arrive on the receiver.
    pub async fn start(
        data_dir: &Path,
        controller: &str,
        address: IpAddr,
        sockets: Arc<baton_proxy::handoff::Sockets>,
    ) -> (Arc<Executor>, mpsc::UnboundedReceiver<HostEvent>) {
        // Instances listen on loopback: other machines reach them only through the tunnel.
        let (host, events) = HostRuntime::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), data_dir);
        for gone in host.adopt().await {
            tracing::info!(instance = %gone.instance, "instance gone while the agent was away");
        }
        let artifacts = ArtifactStore::new(data_dir.join("artifacts"));
        if let Err(e) = artifacts.remove_stale_imports() {
            tracing::warn!(error = %e, "cannot remove stale artifact imports");
        }
        let executor = Executor {
            host,
            proxy: HostProxy::new(address, sockets),
            artifacts,
            fetching: Mutex::new(()),
            controller: controller.to_string(),
            address,
            split_file: data_dir.join("split.json"),
        };
        (Arc::new(executor), events)
    }

    /// Serves `split` on the host's own listeners (`host_port`) from now on, and keeps it for
    /// the agent's next start.
    pub async fn apply_split(&self, split: &baton_core::run::HostSplit) {
        self.proxy.apply(split, &self.host.running()).await;
        if let Err(e) = keep_split(&self.split_file, split) {
            tracing::warn!(error = %e, "cannot keep the split for the agent's next start");
        }
    }

    /// After a restart of the agent: serves the split it kept, with the instances it
    /// re-adopted, until the controller sends a newer one (docs/DESIGN.md I8: the host's
    /// listeners come back without waiting for the controller).
    pub async fn restore_split(&self) {
        let Ok(text) = std::fs::read(&self.split_file) else {
            return;
        };
        match serde_json::from_slice::<baton_core::run::HostSplit>(&text) {
            Ok(split) => {
                tracing::info!(
                    apps = split.apps.len(),
                    "serving the split kept from the last run"
                );
                self.proxy.apply(&split, &self.host.running()).await;
            }
            Err(e) => tracing::warn!(error = %e, "ignoring an unreadable kept split"),
        }
    }

    /// Closes the host's listeners once their requests finished (a new agent serves them).
    pub async fn close_listeners(&self) {
        self.proxy.close().await;
    }

    /// Every breaker transition of the host's listeners; `None` after the first call.
    pub fn breaker_transitions(
        &self,
    ) -> Option<mpsc::UnboundedReceiver<baton_proxy::BreakerTransition>> {
        self.proxy.breaker_transitions()
    }

    /// The requests each app's `host_port` listener received since the agent started.
    pub fn served(&self) -> std::collections::BTreeMap<String, u64> {
        self.proxy.served()
    }

    /// What runs here now, for `hello`.
    pub fn running(&self) -> Vec<baton_core::run::Running> {
        self.host.running()
    }

    /// Acts on a controller's request in the background; the answer goes to `out`.
    pub fn handle(
        self: &Arc<Self>,
        msg: ControllerMsg,
        tls: Arc<ClientConfig>,
        out: mpsc::UnboundedSender<AgentMsg>,
    ) {
        let me = self.clone();
        match msg {
            ControllerMsg::Run(spec) => {
                tokio::spawn(async move {
                    let answer = match me.run(&spec, tls).await {
                        Ok(running) => AgentMsg::Started(running),
                        Err(error) => AgentMsg::StartFailed {
                            instance: spec.instance.clone(),
                            error,
                        },
                    };
                    let _ = out.send(answer);
                });
            }
            ControllerMsg::Stop {
                instance,
                timeout_ms,
            } => {
                tokio::spawn(async move {
                    let timeout = Duration::from_millis(timeout_ms);
                    me.proxy.drain(&instance, timeout).await;
                    let outcome = me.host.stop(&instance, timeout).await;
                    tracing::info!(%instance, ?outcome, "instance stopped");
                    let _ = out.send(AgentMsg::Stopped { instance });
                });
            }
            other => tracing::debug!(?other, "message not expected in a session; ignored"),
        }
    }

    async fn run(
        &self,
        spec: &RunSpec,
        tls: Arc<ClientConfig>,
    ) -> Result<baton_core::run::Running, String> {
        if !self.artifacts.contains(&spec.digest) {
            let _one = self.fetching.lock().await;
            if !self.artifacts.contains(&spec.digest) {
                tokio::time::timeout(FETCH_TIMEOUT, self.fetch(&spec.digest, tls))
                    .await
                    .map_err(|_| {
                        format!(
                            "downloading artifact {} took over {}s; the controller asks again",
                            spec.digest,
                            FETCH_TIMEOUT.as_secs()
                        )
                    })??;
            }
        }
        let path = self.artifacts.path(&spec.digest);
        self.host.run(spec, &path).await.map_err(|e| e.to_string())
    }

    /// Downloads an artifact over a connection of its own and stores it; the store checks the
    /// archive and computes its digest, which must be the one asked for.
    async fn fetch(&self, digest: &str, tls: Arc<ClientConfig>) -> Result<(), String> {
        let conn = connect(&self.controller, self.address, tls)
            .await
            .map_err(|e| format!("cannot reach the controller for artifact {digest}: {e}"))?;
        let (rd, mut wr) = tokio::io::split(conn);
        let ask = AgentMsg::Fetch {
            digest: digest.to_string(),
        };
        write_frame(&mut wr, &ask)
            .await
            .map_err(|e| e.to_string())?;
        let mut reader = FrameReader::new(rd);
        let size = match reader.next::<ControllerMsg>().await {
            Ok(Some(ControllerMsg::Artifact { size, .. })) => size,
            Ok(Some(ControllerMsg::Refused(r))) => return Err(r.reason),
            Ok(other) => return Err(format!("unexpected answer to fetch: {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        let (mut rd, head) = reader.into_parts();
        let spool = self
            .artifacts
            .root()
            .join(format!(".fetch-{}", fastrand::u64(..)));
        std::fs::create_dir_all(self.artifacts.root()).map_err(|e| e.to_string())?;
        let mut file = tokio::fs::File::create(&spool)
            .await
            .map_err(|e| e.to_string())?;
        let result = async {
            let mut left = size;
            let first = head.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            tokio::io::AsyncWriteExt::write_all(&mut file, &head[..first]).await?;
            left -= first as u64;
            let mut body = (&mut rd).take(left);
            let copied = tokio::io::copy(&mut body, &mut file).await?;
            if copied != left {
                return Err(std::io::Error::other(format!(
                    "the connection closed after {} of {size} bytes",
                    size - left + copied
                )));
            }
            tokio::io::AsyncWriteExt::flush(&mut file).await
        }
        .await;
        drop(file);
        let stored = match result {
            Ok(()) => {
                // Unpacking and hashing are blocking work: off the async threads.
                let (root, path) = (self.artifacts.root().to_path_buf(), spool.clone());
                tokio::task::spawn_blocking(move || {
                    let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
                    ArtifactStore::new(root)
                        .import(file, &ImportLimits::NONE)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
            }
            Err(e) => Err(e.to_string()),
        };
        let _ = std::fs::remove_file(&spool);
        let got = stored?;
        if got != digest {
            return Err(format!("the controller sent artifact {got}, not {digest}"));
        }
        tracing::info!(digest, size, "artifact downloaded");
        Ok(())
    }
}

/// Forwards the host runtime's exits to the current session's queue, if there is one.
pub async fn forward_exits(
    mut events: mpsc::UnboundedReceiver<HostEvent>,
    out: Arc<std::sync::Mutex<Option<mpsc::UnboundedSender<AgentMsg>>>>,
) {
    while let Some(HostEvent::Exited {
        instance,
        pid,
        info,
    }) = events.recv().await
    {
        let msg = AgentMsg::Exited {
            instance,
            pid,
            info,
        };
        // With no session, the exit is seen by the controller as a missing instance in the
        // next `hello`.
        if let Some(tx) = out.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(msg);
        }
    }
}

/// Logs each breaker transition of the host's listeners and reports it to the controller,
/// which records it as an event (with no session, it is in the agent's log only).
pub async fn forward_breakers(
    mut transitions: mpsc::UnboundedReceiver<baton_proxy::BreakerTransition>,
    out: Arc<std::sync::Mutex<Option<mpsc::UnboundedSender<AgentMsg>>>>,
) {
    while let Some(t) = transitions.recv().await {
        tracing::warn!(
            app = %t.app,
            breaker = %t.breaker,
            from = t.transition.from.as_str(),
            to = t.transition.to.as_str(),
            reason = %t.transition.reason,
            "circuit breaker changed state"
        );
        let msg = AgentMsg::Breaker(baton_cluster::HostBreaker {
            app: t.app,
            breaker: t.breaker,
            transition: t.transition,
        });
        if let Some(tx) = out.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(msg);
        }
    }
}

/// Writes `split` to `path` atomically (a new file renamed over the old one).
fn keep_split(path: &Path, split: &baton_core::run::HostSplit) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(split).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}
