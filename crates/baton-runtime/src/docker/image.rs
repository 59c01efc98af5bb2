//! Images: what an image reference resolves to, and moving an image between the engine and a
//! file (`docker save` / `docker load`), streamed so memory stays bounded whatever its size.
//! The store keeps the saved archive content-addressed, so no registry is needed, and a release
//! records the image ID, so the same bytes run in every environment.

use std::io;
use std::path::Path;

use bollard::query_parameters::{ImportImageOptionsBuilder, RemoveImageOptionsBuilder};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::is_not_found;
use super::{Docker, DockerError};

/// How much of an image archive is read from disk at once when loading it.
const CHUNK: usize = 256 * 1024;

/// What the engine knows about an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image ID, `sha256:…`: the digest of its config, so it names these exact bytes
    /// (unlike a tag) and survives `docker save` / `docker load` unchanged.
    pub id: String,
    /// `name@sha256:…` digests of the image in registries it was pushed to or pulled from.
    pub repo_digests: Vec<String>,
    /// The size of its layers, in bytes.
    pub size: u64,
}

/// What one line of `docker load` output named.
enum Loaded {
    Id(String),
    Reference(String),
}

// === impl Docker (images) ===

impl Docker {
    /// Resolves `reference` (a tag like `myapp:1.2.0`, a digest or an ID) to the image the
    /// engine has under it.
    pub async fn image_info(&self, reference: &str) -> Result<ImageInfo, DockerError> {
        let image = self.api().inspect_image(reference).await.map_err(|e| {
            if is_not_found(&e) {
                DockerError::ImageNotFound {
                    reference: reference.into(),
                }
            } else {
                DockerError::engine(format!("inspect image {reference}"), &e)
            }
        })?;
        Ok(ImageInfo {
            id: image.id.unwrap_or_default(),
            repo_digests: image.repo_digests.unwrap_or_default(),
            size: image.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        })
    }

    /// Whether the engine has the image `id`.
    pub async fn has_image(&self, id: &str) -> Result<bool, DockerError> {
        match self.image_info(id).await {
            Ok(_) => Ok(true),
            Err(DockerError::ImageNotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Writes the archive of image `id` (`docker save`) to `path`, chunk by chunk, and returns
    /// its size. Saved by ID, the archive carries no tag: loading it gives back the same ID and
    /// nothing else. A partial file is removed on failure; making the file durable (fsync,
    /// rename into place) is the caller's.
    pub async fn save_image(&self, id: &str, path: &Path) -> Result<u64, DockerError> {
        // Asked first: some engines answer an export of an unknown image with a bare 500.
        if !self.has_image(id).await? {
            return Err(DockerError::ImageNotFound {
                reference: id.into(),
            });
        }
        let mut file = File::create(path)
            .await
            .map_err(|source| DockerError::File {
                action: "create image archive",
                path: path.to_path_buf(),
                source,
            })?;
        let saved = self.copy_image_to(id, path, &mut file).await;
        if saved.is_err() {
            drop(file);
            let _ = tokio::fs::remove_file(path).await;
        }
        saved
    }

    async fn copy_image_to(
        &self,
        id: &str,
        path: &Path,
        file: &mut File,
    ) -> Result<u64, DockerError> {
        let write_error = |source| DockerError::File {
            action: "write image archive",
            path: path.to_path_buf(),
            source,
        };
        let mut stream = self.api().export_image(id);
        let mut size = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if is_not_found(&e) {
                    DockerError::ImageNotFound {
                        reference: id.into(),
                    }
                } else {
                    DockerError::engine(format!("save image {id}"), &e)
                }
            })?;
            file.write_all(&chunk).await.map_err(write_error)?;
            size += chunk.len() as u64;
        }
        file.flush().await.map_err(write_error)?;
        Ok(size)
    }

    /// Loads the image archive at `path` (`docker load`), streamed from the file, and returns
    /// the ID of the image it held. An archive must hold exactly one image.
    pub async fn load_image(&self, path: &Path) -> Result<String, DockerError> {
        let file = File::open(path).await.map_err(|source| DockerError::File {
            action: "open image archive",
            path: path.to_path_buf(),
            source,
        })?;
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let mut output = self.api().import_image_stream(options, chunks(file), None);
        let mut loaded = Vec::new();
        while let Some(item) = output.next().await {
            let item = item.map_err(|e| {
                DockerError::engine(format!("load image archive {}", path.display()), &e)
            })?;
            loaded.extend(item.stream.iter().flat_map(|text| parse_loaded(text)));
        }
        let mut ids = Vec::new();
        for image in loaded {
            let id = match image {
                Loaded::Id(id) => id,
                Loaded::Reference(reference) => self.image_info(&reference).await?.id,
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        match <[String; 1]>::try_from(ids) {
            Ok([id]) => Ok(id),
            Err(ids) => Err(DockerError::LoadedImages {
                path: path.to_path_buf(),
                count: ids.len(),
            }),
        }
    }

    /// Removes the image `reference` (a tag removes only that tag unless it is the last one).
    /// One that is already gone is fine; one a container still uses is an error.
    pub async fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        let options = RemoveImageOptionsBuilder::new().build();
        match self
            .api()
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) => Err(DockerError::engine(
                format!("remove image {reference}"),
                &error,
            )),
        }
    }
}

/// The images named in `docker load` output: `Loaded image ID: sha256:…` for an archive saved
/// by ID, `Loaded image: name:tag` for one saved by tag.
fn parse_loaded(text: &str) -> impl Iterator<Item = Loaded> + '_ {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if let Some(id) = line.strip_prefix("Loaded image ID: ") {
            Some(Loaded::Id(id.trim().into()))
        } else {
            let reference = line.strip_prefix("Loaded image: ")?;
            Some(Loaded::Reference(reference.trim().into()))
        }
    })
}

/// `file` as a stream of chunks of at most [`CHUNK`] bytes.
pub(crate) fn chunks(file: File) -> impl Stream<Item = Result<Bytes, io::Error>> {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = BytesMut::with_capacity(CHUNK);
        match file.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(file))),
            Err(error) => Some((Err(error), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        parse_loaded(text)
            .map(|loaded| match loaded {
                Loaded::Id(id) => format!("id {id}"),
                Loaded::Reference(r) => format!("ref {r}"),
            })
            .collect()
    }

    #[test]
    fn load_output_names_ids_and_references() {
        assert_eq!(names("Loaded image ID: sha256:ab12\n"), ["id sha256:ab12"]);
        assert_eq!(
            names("Loaded image: myapp:1.2.0\nLoaded image: myapp:latest\n"),
            ["ref myapp:1.2.0", "ref myapp:latest"]
        );
        assert!(names("Loading layer 1/3\n").is_empty());
    }
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod engine_tests;
