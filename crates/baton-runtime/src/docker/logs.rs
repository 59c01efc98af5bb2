//! Following a container's stdout and stderr into the instance's log file, so container logs are
//! kept where process logs are.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

use super::DockerError;
use super::error::{describe, is_not_found};
use super::log_time::split_timestamp;

/// How long to wait before following again after the engine broke the stream off.
const RETRY: Duration = Duration::from_secs(1);

/// Opens `path` for appending, creating it and its parent directories.
pub(crate) async fn open_log(path: &Path) -> Result<File, DockerError> {
    let error = |source| DockerError::File {
        action: "open log file",
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await.map_err(error)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .await
        .map_err(error)
}

/// The engine's stamp of the last line appended to `path` (the follower sets the file's mtime to
/// it): lines stamped up to then are already in the file. `None` if the file does not exist.
pub(crate) async fn last_written(path: &Path) -> Option<SystemTime> {
    tokio::fs::metadata(path).await.ok()?.modified().ok()
}

/// Appends every line the container writes after `after` (all of them if `None`) to `file`,
/// until the container stops. The engine stamps each line; after appending one, the follower
/// sets the file's mtime to its stamp, so a later follower (after Baton restarted) starts exactly
/// after it: no line is written twice, and none the container wrote meanwhile is lost. (On a
/// filesystem with coarse timestamps, lines of the last partial second may repeat.)
pub(crate) async fn follow(
    api: bollard::Docker,
    id: String,
    path: PathBuf,
    mut file: File,
    mut after: Option<SystemTime>,
) {
    let stamped = match file.try_clone().await {
        Ok(clone) => clone.into_std().await,
        Err(error) => {
            tracing::warn!(container = %id, path = %path.display(), %error, "cannot follow the container's log");
            return;
        }
    };
    loop {
        match follow_once(&api, &id, (&mut file, &stamped), &mut after).await {
            Ok(()) => return,
            Err(Broken::Write(error)) => {
                tracing::warn!(container = %id, path = %path.display(), %error, "cannot append to the instance's log; no longer following it");
                return;
            }
            Err(Broken::Engine(error)) if is_not_found(&error) => return,
            Err(Broken::Engine(error)) => {
                tracing::warn!(container = %id, error = %describe(&error), "lost the container's log stream; following it again");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

enum Broken {
    Write(std::io::Error),
    Engine(bollard::errors::Error),
}

/// One log request: returns `Ok` when the engine ends the stream (the container stopped).
async fn follow_once(
    api: &bollard::Docker,
    id: &str,
    (file, stamped): (&mut File, &std::fs::File),
    after: &mut Option<SystemTime>,
) -> Result<(), Broken> {
    // `since` has whole seconds; the stamps do the exact cut.
    let since = after
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .and_then(|d| i32::try_from(d.as_secs()).ok())
        .unwrap_or(0);
    let options = LogsOptionsBuilder::new()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(since)
        .build();
    let mut stream = api.logs(id, Some(options));
    while let Some(output) = stream.next().await {
        let bytes = output.map_err(Broken::Engine)?.into_bytes();
        let (stamp, line) = match split_timestamp(&bytes) {
            Some((stamp, _)) if after.is_some_and(|after| stamp <= after) => continue,
            Some((stamp, line)) => (Some(stamp), line),
            None => (None, &bytes[..]),
        };
        file.write_all(line).await.map_err(Broken::Write)?;
        file.flush().await.map_err(Broken::Write)?;
        if let Some(stamp) = stamp {
            *after = Some(stamp);
            // A metadata update on a local file: too quick to be worth a blocking thread.
            stamped.set_modified(stamp).map_err(Broken::Write)?;
        }
    }
    Ok(())
}
