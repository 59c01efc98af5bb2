//! Watching for a container's exit and publishing it to every handle, like the process driver's
//! reaper: a `watch` channel that turns `Some` once.

use std::time::Duration;

use bollard::errors::Error;
use bollard::query_parameters::WaitContainerOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::error::{describe, is_not_found};
use crate::ExitInfo;

/// How long to wait before asking again when the engine broke the wait off.
const RETRY: Duration = Duration::from_secs(1);

/// Publishes the exit of container `id` on `tx`. A wait the engine breaks off (e.g. dockerd
/// restarting) is never taken for an exit: the container's state decides, else the wait is
/// resumed, so a running instance is never reported gone. Stops when every handle is dropped.
pub(crate) async fn watch_exit(
    api: bollard::Docker,
    id: String,
    tx: watch::Sender<Option<ExitInfo>>,
) {
    loop {
        let waited = tokio::select! {
            () = tx.closed() => return,
            waited = wait_once(&api, &id) => waited,
        };
        let exit = match waited {
            Ok(exit) => Some(exit),
            Err(error) => {
                let reason = error.as_ref().map_or("the stream ended".into(), describe);
                tracing::warn!(container = %id, %reason, "lost the wait on the container; asking its state");
                exited_state(&api, &id).await
            }
        };
        if let Some(exit) = exit {
            tracing::debug!(container = %id, %exit, "container exited");
            tx.send_replace(Some(exit));
            return;
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// The exit reported by the engine's wait; `Err` if the wait itself failed.
async fn wait_once(api: &bollard::Docker, id: &str) -> Result<ExitInfo, Option<Error>> {
    let options = WaitContainerOptionsBuilder::new()
        .condition("not-running")
        .build();
    let mut stream = api.wait_container(id, Some(options));
    match stream.next().await {
        Some(Ok(response)) => Ok(from_code(response.status_code)),
        // bollard turns a non-zero exit code into an error.
        Some(Err(Error::DockerContainerWaitError { code, .. })) => Ok(from_code(code)),
        Some(Err(error)) if is_not_found(&error) => Ok(ExitInfo::UNKNOWN),
        Some(Err(error)) => Err(Some(error)),
        None => Err(None),
    }
}

/// `Some` exit if the container is not running (or no longer exists), `None` if it runs or the
/// engine cannot say.
async fn exited_state(api: &bollard::Docker, id: &str) -> Option<ExitInfo> {
    match api.inspect_container(id, None).await {
        Ok(container) => {
            let state = container.state.unwrap_or_default();
            let running = state.running.unwrap_or(false) || state.restarting.unwrap_or(false);
            (!running).then(|| state.exit_code.map_or(ExitInfo::UNKNOWN, from_code))
        }
        Err(error) if is_not_found(&error) => Some(ExitInfo::UNKNOWN),
        Err(_) => None,
    }
}

fn from_code(code: i64) -> ExitInfo {
    ExitInfo {
        code: i32::try_from(code).ok(),
        signal: None,
    }
}
