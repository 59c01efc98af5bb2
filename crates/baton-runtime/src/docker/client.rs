//! The connection to the local Docker Engine: a unix socket, never TCP (no TLS to set up, and
//! the engine's API is root-equivalent, so it never leaves the host).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::DockerError;
use super::error::describe;

/// Where the engine listens unless `DOCKER_HOST` says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long one request may wait for the engine's answer to begin (seconds). Streams (logs,
/// waits, image transfers) may run longer: only their response headers are bounded.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A connected Docker Engine client. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Docker {
    api: bollard::Docker,
    socket: Arc<Path>,
}

impl Docker {
    /// Connects to the engine at `DOCKER_HOST` if it is a `unix://` address, else at
    /// [`DEFAULT_SOCKET`], and agrees on an API version with it (older engines, e.g. 20.10,
    /// speak an older API than bollard's default).
    pub async fn connect() -> Result<Docker, DockerError> {
        let host = std::env::var("DOCKER_HOST").ok();
        Docker::connect_to(&socket_path(host.as_deref())?).await
    }

    /// Connects to the engine listening on the unix socket at `socket`.
    pub async fn connect_to(socket: &Path) -> Result<Docker, DockerError> {
        let unreachable = |reason: String| DockerError::Unreachable {
            socket: socket.display().to_string(),
            reason,
        };
        let path = socket
            .to_str()
            .ok_or_else(|| unreachable("the path is not UTF-8".into()))?;
        let api = bollard::Docker::connect_with_unix(
            path,
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| unreachable(describe(&e)))?;
        let api = api
            .negotiate_version()
            .await
            .map_err(|e| unreachable(describe(&e)))?;
        Ok(Docker {
            api,
            socket: Arc::from(socket),
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub(crate) fn api(&self) -> &bollard::Docker {
        &self.api
    }
}

/// The socket named by `DOCKER_HOST` (`unix://PATH`), or the default one when it is unset or
/// empty. Any other scheme is refused rather than silently ignored: the user meant another
/// engine.
fn socket_path(docker_host: Option<&str>) -> Result<PathBuf, DockerError> {
    match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(DockerError::NotUnixSocket { host: host.into() }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_must_be_a_unix_socket() {
        let default = PathBuf::from(DEFAULT_SOCKET);
        assert_eq!(socket_path(None).unwrap(), default);
        assert_eq!(socket_path(Some("")).unwrap(), default);
        assert_eq!(
            socket_path(Some("unix:///run/user/1000/docker.sock")).unwrap(),
            PathBuf::from("/run/user/1000/docker.sock")
        );
        for host in [
            "tcp://10.0.0.1:2376",
            "ssh://me@box",
            "unix://",
            "/var/run/x.sock",
        ] {
            let error = socket_path(Some(host)).unwrap_err().to_string();
            assert!(error.contains(host), "{error}");
            assert!(error.contains("unset DOCKER_HOST"), "{error}");
        }
    }

    #[tokio::test]
    async fn a_missing_socket_says_where_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let error = Docker::connect_to(&socket).await.unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "cannot reach the Docker engine at {}: ",
                socket.display()
            )),
            "{error}"
        );
        assert!(error.contains("is dockerd running"), "{error}");
        assert!(error.contains("(driver = \"docker\")"), "{error}");
    }
}
