//! Errors of the docker driver, each saying what failed, where, and what to do.

use std::error::Error as _;
use std::io;
use std::path::PathBuf;

/// Why the docker driver could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine's socket could not be opened or did not answer.
    #[error(
        "cannot reach the Docker engine at {socket}: {reason}; is dockerd running, and may this user open its socket? (driver = \"docker\")"
    )]
    Unreachable {
        /// The socket path.
        socket: String,
        /// What the connection attempt reported.
        reason: String,
    },
    /// `DOCKER_HOST` names something other than a unix socket.
    #[error(
        "DOCKER_HOST={host} is not a unix socket; the docker driver only talks to the local engine: unset DOCKER_HOST or set it to unix:///path/to/docker.sock (driver = \"docker\")"
    )]
    NotUnixSocket {
        /// The value of `DOCKER_HOST`.
        host: String,
    },
    /// The engine has no image by that reference.
    #[error(
        "image {reference} is not in the Docker engine; load the release's image (or build or pull it) before using it"
    )]
    ImageNotFound {
        /// The reference or image ID asked for.
        reference: String,
    },
    /// A container with the instance's name is already running.
    #[error(
        "instance {instance} already has a running container {container}; adopt it or stop it before starting the instance again"
    )]
    AlreadyRunning {
        /// The instance id.
        instance: String,
        /// The running container's id.
        container: String,
    },
    /// A container with the instance's name exists but another owner labelled it.
    #[error(
        "container {name} exists but belongs to another owner ({owner:?}); remove it with `docker rm -f {name}` if it is a leftover"
    )]
    NotOurs {
        /// The container name.
        name: String,
        /// Its `baton.owner` label, if any.
        owner: Option<String>,
    },
    /// An owner or instance id that cannot be part of a container name.
    #[error(
        "{what} `{value}` cannot be part of a container name: use 1 to 100 letters, digits, '_', '.' or '-'"
    )]
    InvalidName {
        /// `owner` or `instance`.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// A file to save an image to, load it from, or append a log to, could not be used.
    #[error("cannot {action} {path}: {source}")]
    File {
        /// What was being done with the file.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An image archive loaded without naming exactly one image.
    #[error(
        "{path} loaded {count} images; an image archive for a release must hold exactly one (save it with `docker save IMAGE_ID`)"
    )]
    LoadedImages {
        /// The archive.
        path: PathBuf,
        /// How many images the engine reported.
        count: usize,
    },
    /// A release artifact without a readable `baton-image.json`: not made from an image.
    #[error(
        "{path}: {reason}: the release holds no image; with driver = \"docker\", create releases with `baton release create APP VERSION --image IMAGE`"
    )]
    NotAnImage {
        /// The manifest it should have.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// A release's image archive loaded as another image than the one the release recorded.
    #[error("{archive} holds image {loaded}, not the image {recorded} its release recorded")]
    WrongImage {
        /// The archive.
        archive: PathBuf,
        /// The image the engine loaded from it.
        loaded: String,
        /// The image ID in `baton-image.json`.
        recorded: String,
    },
    /// Any other request the engine refused or failed.
    #[error("Docker engine: cannot {action}: {reason}")]
    Engine {
        /// What was asked, e.g. `start container baton-x-web-1`.
        action: String,
        /// What the engine (or the connection to it) answered.
        reason: String,
    },
}

impl DockerError {
    /// An [`Engine`](DockerError::Engine) error for `action`, with the whole chain of causes.
    pub(crate) fn engine(action: impl Into<String>, error: &bollard::errors::Error) -> Self {
        DockerError::Engine {
            action: action.into(),
            reason: describe(error),
        }
    }
}

/// An error and all its causes, `a: b: c`, so that e.g. "connection refused" under hyper's
/// generic "client error" is not lost.
pub(crate) fn describe(error: &bollard::errors::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The HTTP status the engine answered with, if it answered.
pub(crate) fn status(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Whether the engine said the object does not exist (HTTP 404).
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    status(error) == Some(404)
}
