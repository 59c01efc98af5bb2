//! The artifact store's error type: every message names the artifact and what to do.

use std::path::PathBuf;

/// Why an artifact could not be packed, read or stored.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The given path does not exist.
    #[error("artifact {} does not exist: give the path of a directory or a .tar.gz file", .path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path is neither a directory nor a tar archive.
    #[error(
        "artifact {} is neither a directory nor a .tar.gz/.tgz/.tar file: give a directory, \
         or pack one with `tar czf app.tar.gz -C <dir> .`", .path.display()
    )]
    Unsupported {
        /// The path given.
        path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. `read`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The archive is not valid gzip or tar.
    #[error(
        "artifact {artifact} is not a readable tar archive ({detail}): re-create it, e.g. \
         `tar czf app.tar.gz -C <dir> .`"
    )]
    Corrupt {
        /// The archive (its path, or `uploaded archive`).
        artifact: String,
        /// What the decoder said.
        detail: String,
    },
    /// An entry is refused: absolute path, `..`, escaping link, device, fifo, socket...
    #[error("artifact {artifact}: {entry:?} {reason}: remove it from the artifact and try again")]
    Refused {
        /// The artifact (its path, or `uploaded archive`).
        artifact: String,
        /// The entry's path inside the artifact.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The archive was cut short: no end-of-archive marker, or nothing at all.
    #[error(
        "artifact {artifact} {detail}: it was cut short or is not an archive; send the whole \
         archive, e.g. `baton release create --artifact <dir>` or `tar czf app.tar.gz -C <dir> .`"
    )]
    Truncated {
        /// The archive (its path, or `uploaded archive`).
        artifact: String,
        /// What is missing, e.g. `is empty`.
        detail: String,
    },
    /// The archive passes one of the import limits.
    #[error(
        "artifact {artifact} has {what} (the limit is {limit}, `[artifacts] {key}` in baton.toml): \
         make the artifact smaller, or raise the limit"
    )]
    TooLarge {
        /// The archive (its path, or `uploaded archive`).
        artifact: String,
        /// What passed the limit, e.g. `more than 262144000 bytes unpacked`.
        what: String,
        /// The limit, as written in errors (e.g. `262144000 bytes`).
        limit: String,
        /// The config key under `[artifacts]`.
        key: &'static str,
    },
    /// A file changed size while it was being packed.
    #[error("{} changed while it was being packed: pack it again once nothing writes to it", .path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// Writing the canonical archive failed (disk full, closed pipe...).
    #[error("cannot write the canonical archive of artifact {artifact}: {source}")]
    Write {
        /// The artifact (its path, or `uploaded archive`).
        artifact: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A digest string is malformed.
    #[error("{0:?} is not an artifact digest: expected \"sha256:\" and 64 lowercase hex digits")]
    InvalidDigest(String),
}

impl ArtifactError {
    /// Shorthand for [`ArtifactError::Io`].
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ArtifactError::Io { op, path, source }
    }
}
