//! Removing what a test made, from `Drop`, even while the test panics: on a thread of its own
//! with its own runtime and connection, so it works whatever state the test's runtime is in.

use std::future::Future;
use std::path::{Path, PathBuf};

use super::unique_name;
use crate::docker::{Docker, DockerError, list_owned};

/// A unique owner for one test's containers; dropping it removes every container labelled with
/// it, running or not, whether the test kept a handle on it or not.
#[derive(Debug)]
pub struct OwnerGuard {
    owner: String,
    socket: PathBuf,
}

impl OwnerGuard {
    /// A fresh owner, `<prefix>-…`, on the engine `docker` talks to.
    pub fn new(docker: &Docker, prefix: &str) -> OwnerGuard {
        OwnerGuard {
            owner: unique_name(prefix),
            socket: docker.socket().to_path_buf(),
        }
    }

    /// The owner to put in container specs.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        let owner = self.owner.clone();
        let what = format!("remove the containers of owner {owner}");
        in_own_runtime(&self.socket, &what, move |docker| async move {
            for container in list_owned(&docker, &owner).await? {
                container.remove(&docker).await?;
            }
            Ok(())
        });
    }
}

/// Runs `work` to completion on a new thread with a new runtime and a new connection to the
/// engine at `socket`, and waits for it. Failures are printed, never raised: this runs in
/// `Drop`, possibly during a panic.
pub(crate) fn in_own_runtime<F, Fut>(socket: &Path, what: &str, work: F)
where
    F: FnOnce(Docker) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), DockerError>>,
{
    let socket = socket.to_path_buf();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let docker = Docker::connect_to(&socket)
                .await
                .map_err(|e| e.to_string())?;
            work(docker).await.map_err(|e| e.to_string())
        })
    });
    match thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("test cleanup: cannot {what}: {error}"),
        Err(_) => eprintln!("test cleanup: panicked trying to {what}"),
    }
}
