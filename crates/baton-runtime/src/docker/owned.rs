//! The containers an owner (one Baton data directory) has on the engine, so that the caller can
//! remove the ones it has no record of, and removal itself.

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

use super::error::is_not_found;
use super::labels::{INSTANCE_LABEL, OWNER_LABEL, label_filter};
use super::{Docker, DockerError};

/// One container labelled with an owner, running or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedContainer {
    /// Its `baton.instance` label.
    pub instance: String,
    /// The container id.
    pub id: String,
    /// Whether it is running (or paused: it still holds its port). A stopped one is a leftover: its instance exited while nobody
    /// followed it, or a stop was cut short.
    pub running: bool,
}

impl OwnedContainer {
    /// Removes the container, killing it first if it runs. For orphans the caller has no record
    /// of; an instance it knows is stopped gracefully with
    /// [`ContainerHandle::stop`](super::ContainerHandle::stop) instead.
    pub async fn remove(&self, docker: &Docker) -> Result<(), DockerError> {
        remove_container(docker, &self.id).await
    }
}

/// Every container labelled `baton.owner = owner`, running or stopped.
pub async fn list_owned(docker: &Docker, owner: &str) -> Result<Vec<OwnedContainer>, DockerError> {
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&label_filter(&[(OWNER_LABEL, owner)]))
        .build();
    let containers = docker
        .api()
        .list_containers(Some(options))
        .await
        .map_err(|e| DockerError::engine(format!("list the containers of owner {owner}"), &e))?;
    let owned = containers.into_iter().map(|c| OwnedContainer {
        instance: c
            .labels
            .and_then(|mut labels| labels.remove(INSTANCE_LABEL))
            .unwrap_or_default(),
        id: c.id.unwrap_or_default(),
        running: matches!(
            c.state,
            Some(
                ContainerSummaryStateEnum::RUNNING
                    | ContainerSummaryStateEnum::PAUSED
                    | ContainerSummaryStateEnum::RESTARTING
            )
        ),
    });
    Ok(owned.collect())
}

/// Removes container `id` (SIGKILL first if it runs). One that is already gone is fine.
pub(crate) async fn remove_container(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    match docker.api().remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(DockerError::engine(
            format!("remove container {id}"),
            &error,
        )),
    }
}
