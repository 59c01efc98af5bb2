//! Instances as containers (`driver = "docker"`, docs/design-notes.md "Many hosts and
//! containers"): the image comes from the release's artifact (`baton-image.json` beside the
//! `docker save` archive), is loaded into the engine when it lacks it, and runs with host
//! networking, so a container listens on `$HOST:$PORT` exactly like a process. Starting is
//! asynchronous: the result comes back to the controller loop as a [`Started`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_core::config::AppConfig;
use baton_core::model::{IMAGE_ARCHIVE, IMAGE_MANIFEST, ImageManifest, Instance};
use baton_runtime::docker::{ContainerHandle, ContainerSpec, Docker, list_owned};

use crate::handle::InstanceHandle;
use crate::shared::{Shared, Started};

/// Container names and labels allow `[A-Za-z0-9_.-]`; unit keys hold an `@`.
pub fn container_instance(instance: &str) -> String {
    instance.replace('@', ".")
}

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
                .map(InstanceHandle::Container),
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

async fn start(docker: &Docker, owner: &str, l: &Launch) -> Result<ContainerHandle, String> {
    let image = ensure_image(docker, &l.artifact).await?;
    let spec = ContainerSpec {
        image,
        owner: owner.to_string(),
        instance: container_instance(&l.instance),
        app: l.app.clone(),
        release: l.release.clone(),
        env: l.env.clone(),
        argv: l.argv.clone(),
        read_only: l.read_only,
        log_path: l.log_path.clone(),
    };
    ContainerHandle::start(docker, &spec)
        .await
        .map_err(|e| e.to_string())
}

/// The image ID the artifact names, loaded into the engine from the artifact's archive if the
/// engine lacks it; the loaded image must be the one the release recorded (I5).
async fn ensure_image(docker: &Docker, artifact: &Path) -> Result<String, String> {
    let manifest = read_manifest(artifact)?;
    if docker
        .has_image(&manifest.id)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(manifest.id);
    }
    let loaded = docker
        .load_image(&artifact.join(IMAGE_ARCHIVE))
        .await
        .map_err(|e| e.to_string())?;
    if loaded != manifest.id {
        return Err(format!(
            "the release's image archive holds {loaded}, not the image {} it recorded",
            manifest.id
        ));
    }
    Ok(manifest.id)
}

fn read_manifest(artifact: &Path) -> Result<ImageManifest, String> {
    let path = artifact.join(IMAGE_MANIFEST);
    let text = std::fs::read(&path).map_err(|e| {
        format!(
            "the release has no {IMAGE_MANIFEST} ({e}): with driver = \"docker\", create releases with `baton release create APP VERSION --image IMAGE`"
        )
    })?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
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
    Ok(found.map(InstanceHandle::Container))
}

/// Removes this data directory's containers that no instance record wants: what a crash
/// between a container's start and its record, or a failed stop, left behind.
pub async fn remove_orphans(shared: &Shared, wanted: &HashSet<String>) -> anyhow::Result<()> {
    let Some(docker) = &shared.docker else {
        return Ok(());
    };
    for c in list_owned(docker, &shared.owner).await? {
        if wanted.contains(&c.instance) {
            continue;
        }
        tracing::warn!(container = %c.id, instance = %c.instance, "removing an orphaned container");
        if let Err(e) = c.remove(docker).await {
            tracing::error!(container = %c.id, error = %e, "cannot remove an orphaned container");
        }
    }
    Ok(())
}
