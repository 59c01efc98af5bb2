//! `baton release create --image REF`: an image of the local Docker engine written out as an
//! artifact directory, `image.tar` (`docker save` of the image ID) beside `baton-image.json`,
//! which then goes up and is stored like any artifact (docs/design-notes.md, "Many hosts and
//! containers").

use std::path::Path;

use baton_core::model::{IMAGE_ARCHIVE, IMAGE_MANIFEST, ImageManifest};
use baton_runtime::docker::{Docker, DockerError};

use crate::exit::{Failure, Result};

/// Resolves `reference` in the local engine and writes its artifact into the empty directory
/// `dir`. Saved by ID, the archive carries no tag: every host that loads it gets back exactly
/// that ID, whatever the tag points to later.
pub async fn write_artifact(reference: &str, dir: &Path) -> Result<ImageManifest> {
    let docker = Docker::connect()
        .await
        .map_err(|e| Failure::failed(format!("--image {reference}: {e}")))?;
    let info = docker
        .image_info(reference)
        .await
        .map_err(|e| not_found_is_usage(reference, e))?;
    let archive = dir.join(IMAGE_ARCHIVE);
    docker
        .save_image(&info.id, &archive)
        .await
        .map_err(|e| not_found_is_usage(reference, e))?;
    let manifest = ImageManifest {
        id: info.id,
        reference: reference.to_string(),
    };
    let mut text = serde_json::to_vec_pretty(&manifest).expect("serializable");
    text.push(b'\n');
    let path = dir.join(IMAGE_MANIFEST);
    std::fs::write(&path, text)
        .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(manifest)
}

/// A missing image is the user's to fix (exit 2); anything else the engine said is a failure.
fn not_found_is_usage(reference: &str, error: DockerError) -> Failure {
    match error {
        DockerError::ImageNotFound { .. } => Failure::usage(format!(
            "image {reference} is not in the local Docker engine: build or pull it first"
        )),
        other => Failure::failed(format!("--image {reference}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_image_says_what_to_do() {
        let f = not_found_is_usage(
            "myapp:1.2.0",
            DockerError::ImageNotFound {
                reference: "myapp:1.2.0".into(),
            },
        );
        assert_eq!(f.code, 2);
        assert_eq!(
            f.message,
            "image myapp:1.2.0 is not in the local Docker engine: build or pull it first"
        );
    }
}
