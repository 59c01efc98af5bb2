//! Images against the real engine: resolve, save, remove, load back under the same ID.
//! These tests fail (never skip) when no Docker engine is reachable.

use super::*;
use crate::docker::testee::testee_image;
use crate::docker::testing::docker;

#[tokio::test]
async fn save_then_remove_then_load_gives_back_the_same_image() {
    let docker = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let image = testee_image(&docker, dir.path()).await;
    let info = docker.image_info(image.tag()).await.unwrap();
    assert_eq!(info.id, image.id());
    assert!(
        info.id.starts_with("sha256:") && info.id.len() == 71,
        "{}",
        info.id
    );
    assert!(info.size > 0);
    assert_eq!(docker.image_info(&info.id).await.unwrap().id, info.id);

    let archive = dir.path().join("image.tar");
    let size = docker.save_image(&info.id, &archive).await.unwrap();
    assert_eq!(size, std::fs::metadata(&archive).unwrap().len());
    docker.remove_image(image.tag()).await.unwrap();
    assert!(
        !docker.has_image(&info.id).await.unwrap(),
        "removed with its only tag"
    );

    assert_eq!(docker.load_image(&archive).await.unwrap(), info.id);
    assert!(docker.has_image(&info.id).await.unwrap());
}

#[tokio::test]
async fn bad_archives_and_unknown_images_are_refused() {
    let docker = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let unknown = format!("sha256:{}", "0".repeat(64));
    let error = docker.image_info(&unknown).await.unwrap_err();
    assert!(
        matches!(error, DockerError::ImageNotFound { .. }),
        "{error}"
    );
    assert!(!docker.has_image(&unknown).await.unwrap());

    let archive = dir.path().join("unknown.tar");
    let error = docker.save_image(&unknown, &archive).await.unwrap_err();
    assert!(
        matches!(error, DockerError::ImageNotFound { .. }),
        "{error}"
    );
    assert!(!archive.exists(), "no partial archive is left behind");

    let garbage = dir.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not a tar archive").unwrap();
    let error = docker.load_image(&garbage).await.unwrap_err().to_string();
    assert!(error.contains("garbage.tar"), "{error}");

    let missing = dir.path().join("missing.tar");
    let error = docker.load_image(&missing).await.unwrap_err().to_string();
    assert!(error.starts_with("cannot open image archive"), "{error}");
}
