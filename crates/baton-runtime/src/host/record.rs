//! Run records: what a host keeps on disk about each instance it runs, so that after a restart
//! of the agent it re-adopts them with their ports (no orphan, no duplicate; docs/DESIGN.md I4).

use std::io;
use std::path::{Path, PathBuf};

use baton_core::config::Driver;
use serde::{Deserialize, Serialize};

use super::Running;

/// A run record: the report plus the process start time that makes the pid unambiguous (0 for
/// a container, which is adopted by its name: owner and instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RunRecord {
    pub running: Running,
    pub app: String,
    pub start_time: u64,
    /// Records written before containers ran on agents have none: processes.
    #[serde(default)]
    pub driver: Driver,
}

pub(super) fn path(dir: &Path, instance: &str) -> PathBuf {
    dir.join(format!("{instance}.json"))
}

/// Writes atomically (temporary file, then rename): a reader never sees half a record.
pub(super) fn write(dir: &Path, record: &RunRecord) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = path(dir, &record.running.instance);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let text = serde_json::to_vec(record).map_err(io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

pub(super) fn remove(dir: &Path, instance: &str) {
    match std::fs::remove_file(path(dir, instance)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(instance, %error, "cannot remove run record"),
    }
}

/// Every readable record in `dir`; unreadable ones are logged and skipped.
pub(super) fn read_all(dir: &Path) -> Vec<RunRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match std::fs::read(&path).map(|b| serde_json::from_slice::<RunRecord>(&b)) {
            Ok(Ok(record)) => records.push(record),
            Ok(Err(error)) => tracing::warn!(path = %path.display(), %error, "bad run record"),
            Err(error) => tracing::warn!(path = %path.display(), %error, "cannot read run record"),
        }
    }
    records.sort_by(|a, b| a.running.instance.cmp(&b.running.instance));
    records
}
