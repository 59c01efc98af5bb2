//! Instances as containers on the controller's own host (`driver = "docker"`,
//! docs/design-notes.md "Many hosts and containers"), with the same pieces of
//! `baton-runtime` an agent uses on its host: the image comes from the release's artifact
//! (loaded into the engine when it lacks it, `ensure_image`) and runs with host networking, so
//! a container listens on `$HOST:$PORT` exactly like a process. Starting is asynchronous: the
//! result comes back to the controller loop as a [`Started`].

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use baton_core::config::AppConfig;
use baton_core::model::Instance;
use baton_runtime::LocalHandle;
use baton_runtime::docker::{
    ContainerHandle, ContainerSpec, Docker, DockerError, container_instance, ensure_image,
    remove_orphans,
};

use crate::handle::InstanceHandle;
use crate::shared::{Shared, Started};

/// What a container start needs, gathered while the controller holds the instance.
pub struct Launch {
    pub app: String,
    pub instance: String,
    pub release: String,
    pub attempt: baton_core::model::Millis,
    pub artifact: PathBuf,
    pub env: BTreeMap<String, String>,
    pub argv: Option<Vec<String>>,
    pub read_only: bool,
    pub log_path: PathBuf,
}

/// Starts the container in the background; the outcome arrives on `shared.started`.
pub fn spawn(shared: &Arc<Shared>, launch: Launch) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let result = match &shared.docker {
            Some(docker) => start(docker, &shared.owner, &launch)
                .await
                .map(|c| InstanceHandle::Local(LocalHandle::Container(c)))
                .map_err(|e| e.to_string()),
            None => Err("driver = \"docker\" but Baton has no Docker engine".to_string()),
        };
        let _ = shared.started.send(Started {
            app: launch.app,
            instance: launch.instance,
            attempt: launch.attempt,
            result,
        });
    });
}

async fn start(docker: &Docker, owner: &str, l: &Launch) -> Result<ContainerHandle, DockerError> {
    let spec = ContainerSpec {
        image: ensure_image(docker, &l.artifact).await?,
        owner: owner.to_string(),
        instance: container_instance(&l.instance),
        app: l.app.clone(),
        release: l.release.clone(),
        env: l.env.clone(),
        argv: l.argv.clone(),
        read_only: l.read_only,
        log_path: l.log_path.clone(),
    };
    ContainerHandle::start(docker, &spec).await
}

/// The arguments that replace the image's `CMD`: `command`, if the app set one.
pub fn argv(app: &AppConfig, rendered: Vec<String>) -> Option<Vec<String>> {
    (!app.command.is_empty()).then_some(rendered)
}

/// Re-adopts the running container of `inst`; `Ok(None)` if none runs.
pub async fn adopt(shared: &Shared, inst: &Instance) -> anyhow::Result<Option<InstanceHandle>> {
    let Some(docker) = &shared.docker else {
        return Ok(None);
    };
    let found =
        ContainerHandle::adopt(docker, &shared.owner, &container_instance(&inst.id)).await?;
    Ok(found.map(|c| InstanceHandle::Local(LocalHandle::Container(c))))
}

/// Removes this data directory's containers that no instance record wants: what a crash
/// between a container's start and its record, or a failed stop, left behind. Only this
/// controller's own (its owner id): containers on other hosts, and an agent's on this one, are
/// their agents' to keep or remove.
pub async fn remove_unwanted(shared: &Shared, wanted: &HashSet<String>) -> anyhow::Result<()> {
    if let Some(docker) = &shared.docker {
        remove_orphans(docker, &shared.owner, wanted).await?;
    }
    Ok(())
}
