//! Finding containers by a label whatever their owner, for end-to-end tests that watch what a
//! `baton up` made without knowing the owner id it chose, and removing them on drop.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::cleanup::in_own_runtime;
use crate::docker::owned::remove_container;
use crate::docker::{Docker, DockerError};

/// A container carrying a label, with what a test asserts about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledContainer {
    /// The container id.
    pub id: String,
    /// The ID of the image it runs (`sha256:…`).
    pub image_id: String,
    /// Every label it has.
    pub labels: HashMap<String, String>,
    /// Whether it is running.
    pub running: bool,
}

impl LabelledContainer {
    /// The value of `label`, or `""`.
    pub fn label(&self, label: &str) -> &str {
        self.labels.get(label).map_or("", String::as_str)
    }
}

/// Every container, running or stopped, that has the label `label` (any value).
pub async fn labelled(docker: &Docker, label: &str) -> Result<Vec<LabelledContainer>, DockerError> {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker
        .api()
        .list_containers(Some(options))
        .await
        .map_err(|e| DockerError::engine(format!("list the containers labelled {label}"), &e))?;
    Ok(containers
        .into_iter()
        .map(|c| LabelledContainer {
            id: c.id.unwrap_or_default(),
            image_id: c.image_id.unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
            running: c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
        })
        .collect())
}

/// Whether container `id` has a read-only root filesystem.
pub async fn read_only(docker: &Docker, id: &str) -> Result<bool, DockerError> {
    let container = docker
        .api()
        .inspect_container(id, None)
        .await
        .map_err(|e| DockerError::engine(format!("inspect container {id}"), &e))?;
    Ok(container
        .host_config
        .and_then(|h| h.readonly_rootfs)
        .unwrap_or(false))
}

/// Dropping it removes every container whose label `label` starts with `prefix`: e.g. the
/// containers whose `baton.log` lies under a test's data directory, whoever owns them.
#[derive(Debug)]
pub struct LabelPrefixGuard {
    label: String,
    prefix: String,
    socket: PathBuf,
}

impl LabelPrefixGuard {
    /// A guard over the containers of the engine `docker` talks to.
    pub fn new(docker: &Docker, label: &str, prefix: &str) -> LabelPrefixGuard {
        LabelPrefixGuard {
            label: label.into(),
            prefix: prefix.into(),
            socket: docker.socket().to_path_buf(),
        }
    }
}

impl Drop for LabelPrefixGuard {
    fn drop(&mut self) {
        let (label, prefix) = (self.label.clone(), self.prefix.clone());
        let what = format!("remove the containers whose {label} starts with {prefix}");
        in_own_runtime(&self.socket, &what, move |docker| async move {
            for container in labelled(&docker, &label).await? {
                if container.label(&label).starts_with(&prefix) {
                    remove_container(&docker, &container.id).await?;
                }
            }
            Ok(())
        });
    }
}
