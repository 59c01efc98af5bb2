//! A host's containers (`driver = "docker"`): the host's own Docker Engine, reached when an
//! instance first needs it (or at the agent's start, if it ran containers before), with the
//! owner id of the agent's data directory (`DIR/owner`). Reaching it adopts the containers
//! of the agent's run records and removes the owner's containers that no record wants; a
//! container starts from the image of its release's artifact, loaded if the engine lacks it,
//! exactly as the controller starts one on its own host.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::LocalHandle;
use crate::docker::{
    ContainerHandle, ContainerSpec, Docker, DockerError, container_instance, ensure_image,
    owner_id, remove_orphans,
};

use super::record::{self, RunRecord};
use super::{HostRuntime, RunError, RunSpec, Running};

/// How long the agent's start waits for the engine before it goes on without its containers
/// (they are adopted when the engine first answers).
const ENGINE_AT_START: Duration = Duration::from_secs(10);

/// The host's engine, once reached, and what waits for it.
#[derive(Default)]
pub(super) struct Engine {
    /// The engine and this data directory's owner id.
    reached: Option<Reached>,
    /// Records of containers not yet adopted: the engine could not be asked yet.
    pending: Vec<RunRecord>,
}

/// The engine and the owner id the host's containers carry.
#[derive(Clone)]
pub(super) struct Reached {
    docker: Docker,
    owner: String,
}

impl HostRuntime {
    /// Adopts the containers of `records` (at the agent's start); returns those that are gone.
    /// An agent that ran containers before reaches the engine now, to remove its orphans.
    pub(super) async fn adopt_containers(
        self: &Arc<Self>,
        records: Vec<RunRecord>,
    ) -> Vec<Running> {
        let used = !records.is_empty() || self.dir.join("owner").exists();
        let mut engine = self.engine.lock().await;
        engine.pending = records;
        if !used {
            return Vec::new();
        }
        match tokio::time::timeout(ENGINE_AT_START, self.reach(&mut engine)).await {
            Ok(Ok(gone)) => gone,
            // Nothing waits for it (an agent that ran containers once): its orphans go later.
            Ok(Err(error)) if engine.pending.is_empty() => {
                tracing::warn!(%error, "cannot reach the Docker engine to remove this host's orphaned containers");
                Vec::new()
            }
            Ok(Err(error)) => {
                tracing::error!(%error, pending = engine.pending.len(), "cannot reach the Docker engine: the host's containers are adopted once it answers");
                Vec::new()
            }
            Err(_) => {
                tracing::error!(
                    pending = engine.pending.len(),
                    "the Docker engine did not answer: the host's containers are adopted once it does"
                );
                Vec::new()
            }
        }
    }

    /// The engine, reached (and the host's containers adopted) if it was not yet.
    pub(super) async fn engine(self: &Arc<Self>) -> Result<Reached, RunError> {
        let mut engine = self.engine.lock().await;
        self.reach(&mut engine).await?;
        Ok(engine.reached.clone().expect("reached"))
    }

    async fn reach(self: &Arc<Self>, engine: &mut Engine) -> Result<Vec<Running>, RunError> {
        if engine.reached.is_some() {
            return Ok(Vec::new());
        }
        let docker = self.connect().await?;
        let owner = owner_id(&self.dir).map_err(|source| RunError::Record {
            path: self.dir.join("owner"),
            source,
        })?;
        let mut gone = Vec::new();
        // One at a time, each forgotten once settled: an engine that stops answering halfway
        // leaves the rest for the next attempt, and nothing is adopted twice.
        while let Some(rec) = engine.pending.first().cloned() {
            let id = rec.running.instance.clone();
            match ContainerHandle::adopt(&docker, &owner, &container_instance(&id)).await? {
                Some(handle) => {
                    tracing::info!(instance = %id, container = %handle.id(), "container re-adopted");
                    let mut running = rec.running.clone();
                    if running.pid != handle.pid() {
                        running.pid = handle.pid();
                        let rec = RunRecord {
                            running: running.clone(),
                            ..rec
                        };
                        if let Err(error) = record::write(&self.records(), &rec) {
                            tracing::warn!(instance = %id, %error, "cannot update run record");
                        }
                    }
                    self.keep(running, LocalHandle::Container(handle));
                }
                None => {
                    tracing::info!(instance = %id, "container gone while the agent was away");
                    record::remove(&self.records(), &id);
                    gone.push(rec.running);
                }
            }
            engine.pending.remove(0);
        }
        let wanted: HashSet<String> = self
            .table()
            .keys()
            .map(|id| container_instance(id))
            .collect();
        remove_orphans(&docker, &owner, &wanted).await?;
        engine.reached = Some(Reached { docker, owner });
        Ok(gone)
    }

    /// Before a stop of `instance`, which the table does not hold: if its container waits for
    /// the engine to be adopted, asks the engine now (adopting it, so the stop stops it), or, if
    /// it still does not answer, forgets its record, so the container goes as an orphan when the
    /// engine first answers. Either way a stop is never lost.
    pub(super) async fn settle_pending(self: &Arc<Self>, instance: &str) {
        let mut engine = self.engine.lock().await;
        if !engine
            .pending
            .iter()
            .any(|r| r.running.instance == instance)
        {
            return;
        }
        if let Err(error) = self.reach(&mut engine).await {
            tracing::warn!(instance, %error, "cannot reach the Docker engine to stop a container; it is removed once the engine answers");
            engine.pending.retain(|r| r.running.instance != instance);
            record::remove(&self.records(), instance);
        }
    }

    /// The engine at `DOCKER_HOST` (a unix socket) or the default socket.
    async fn connect(&self) -> Result<Docker, DockerError> {
        #[cfg(test)]
        if let Some(socket) = self.socket.lock().ok().and_then(|s| s.clone()) {
            return Docker::connect_to(&socket).await;
        }
        Docker::connect().await
    }

    /// Starts the container of `spec` on `port`, from the image of the artifact at `artifact`.
    pub(super) async fn start_container(
        &self,
        engine: &Reached,
        spec: &RunSpec,
        artifact: &Path,
        port: u16,
    ) -> Result<ContainerHandle, DockerError> {
        let image = ensure_image(&engine.docker, artifact).await?;
        let container = ContainerSpec {
            image,
            owner: engine.owner.clone(),
            instance: container_instance(&spec.instance),
            app: spec.app.clone(),
            release: spec.release.clone(),
            env: self.env(spec, port),
            // Without `command`, the image's own `CMD` runs.
            argv: (!spec.command.is_empty()).then(|| self.argv(spec, artifact, port)),
            read_only: spec.read_only,
            log_path: self.log_path(&spec.app, &spec.instance),
        };
        ContainerHandle::start(&engine.docker, &container).await
    }
}
