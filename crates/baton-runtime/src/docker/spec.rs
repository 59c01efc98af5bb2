//! What to run for one instance in a container.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything the docker driver needs to start one instance.
///
/// The container runs in the host's network namespace (`network_mode = "host"`): it listens on
/// `$HOST:$PORT` exactly like a process instance, with no NAT and no port publishing. The caller
/// puts `PORT` (and `HOST`, if the app reads it) in `env`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The image to run: its ID (`sha256:…`), so that the same bytes run in every environment.
    pub image: String,
    /// Who owns the container: an id of this Baton's data directory. Two Batons sharing one
    /// engine never see, adopt or remove each other's containers. Letters, digits, `_`, `.`, `-`.
    pub owner: String,
    /// The instance id. With `owner`, it names the container `baton-<owner>-<instance>`.
    /// Letters, digits, `_`, `.`, `-`.
    pub instance: String,
    /// The app the instance belongs to (a label, for `docker ps` and the operator).
    pub app: String,
    /// The release the instance runs (a label).
    pub release: String,
    /// Variables added on top of the image's own environment.
    pub env: BTreeMap<String, String>,
    /// Replaces the image's `CMD`, like the arguments of `docker run IMAGE ARGS…`; the image's
    /// `ENTRYPOINT`, if it has one, stays. `None` runs the image's default command.
    pub argv: Option<Vec<String>>,
    /// Mounts the container's root filesystem read-only.
    pub read_only: bool,
    /// stdout and stderr are appended here while Baton follows the container (and, after a
    /// restart of Baton, from where it left off). Parent directories are created.
    pub log_path: PathBuf,
}
