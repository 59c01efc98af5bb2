//! The image of a release: its artifact holds `baton-image.json` (the image ID) beside the
//! `docker save` archive, and a host whose engine lacks the image loads it from there. The
//! same on the controller's host and on agents (docs/design-notes.md, "Many hosts and
//! containers"), so no registry is needed and every host runs the bytes the release recorded.

use std::path::Path;

use baton_core::model::{IMAGE_ARCHIVE, IMAGE_MANIFEST, ImageManifest};
use tokio::sync::Mutex;

use super::{Docker, DockerError};

/// One image load at a time per process: two instances of a new release starting together
/// load its archive once (the second finds the image loaded).
static LOADING: Mutex<()> = Mutex::const_new(());

/// The image ID the release artifact unpacked at `artifact` names, loaded into the engine
/// from the artifact's archive if the engine lacks it. The loaded image must be the one the
/// release recorded (docs/DESIGN.md I5).
pub async fn ensure_image(docker: &Docker, artifact: &Path) -> Result<String, DockerError> {
    let manifest = read_manifest(artifact).await?;
    if docker.has_image(&manifest.id).await? {
        return Ok(manifest.id);
    }
    let _one = LOADING.lock().await;
    if docker.has_image(&manifest.id).await? {
        return Ok(manifest.id);
    }
    let archive = artifact.join(IMAGE_ARCHIVE);
    let loaded = docker.load_image(&archive).await?;
    if loaded != manifest.id {
        return Err(DockerError::WrongImage {
            archive,
            loaded,
            recorded: manifest.id,
        });
    }
    tracing::info!(image = %manifest.id, reference = %manifest.reference, "image loaded from the release");
    Ok(manifest.id)
}

async fn read_manifest(artifact: &Path) -> Result<ImageManifest, DockerError> {
    let path = artifact.join(IMAGE_MANIFEST);
    let text = tokio::fs::read(&path)
        .await
        .map_err(|source| DockerError::NotAnImage {
            path: path.clone(),
            reason: source.to_string(),
        })?;
    serde_json::from_slice(&text).map_err(|e| DockerError::NotAnImage {
        path,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_artifact_without_an_image_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_manifest(dir.path()).await.unwrap_err().to_string();
        assert!(error.contains(IMAGE_MANIFEST), "{error}");
        assert!(error.contains("--image"), "{error}");
        std::fs::write(dir.path().join(IMAGE_MANIFEST), "{\"id\": 1}").unwrap();
        let error = read_manifest(dir.path()).await.unwrap_err().to_string();
        assert!(error.contains("invalid type"), "{error}");
    }
}
