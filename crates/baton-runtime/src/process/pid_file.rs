//! Pid files: `"<pid> <start_time>\n"`, how a restarted Baton (or a last-resort cleanup) finds
//! the instances it started.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::procfs::{is_alive, signal_instance};

/// How long [`kill_pid_files`] waits for the killed processes to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Writes `"<pid> <start_time>\n"` to `path` atomically (temporary file, then rename), so a
/// reader never sees half a record. Creates the parent directories.
pub(crate) fn write_pid_file(path: &Path, pid: u32, start_time: u64) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{pid} {start_time}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Removes the pid file at `path` if it still names this process: the same path may since have
/// been reused for a newer instance, whose record must survive.
pub(crate) fn remove_pid_file(path: &Path, pid: u32, start_time: u64) {
    if read_pid_file(path) != Some((pid, start_time)) {
        return;
    }
    if let Err(error) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), %error, "cannot remove pid file");
    }
}

/// Reads a pid file written by the driver: `Some((pid, start_time))`, or `None` if the file is
/// missing or not in that format.
pub fn read_pid_file(path: &Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let start_time = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some((pid, start_time))
}

/// Last-resort cleanup: for every pid file in `dir`, SIGKILLs the process group of the process
/// it names if that process is still the one that was started (same start time), removes the
/// file, and waits (up to a few seconds, blocking the thread) for those processes to be gone.
/// Files that are not pid files are left alone. A missing `dir` is not an error.
pub fn kill_pid_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let Some((pid, start_time)) = read_pid_file(&path) else {
            continue;
        };
        if signal_instance(pid, start_time, Signal::SIGKILL) {
            tracing::info!(pid, path = %path.display(), "killed leftover instance");
            killed.push((pid, start_time));
        }
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %error, "cannot remove pid file");
        }
    }
    // A blocking wait is acceptable here: this runs at shutdown and in test teardown, where
    // returning before the processes are gone would leave something behind.
    let deadline = Instant::now() + KILL_WAIT;
    while killed.iter().any(|&(pid, start)| is_alive(pid, start)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/web.pid");
        write_pid_file(&path, 42, 7).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42 7\n");
        assert_eq!(read_pid_file(&path), Some((42, 7)));
    }

    #[test]
    fn malformed_pid_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        for text in ["", "42", "42 x", "42 7 9", "-1 7"] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(read_pid_file(&path), None, "{text:?}");
        }
    }

    #[test]
    fn remove_keeps_a_file_rewritten_for_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.pid");
        write_pid_file(&path, 43, 8).unwrap();
        remove_pid_file(&path, 42, 7);
        assert!(path.exists());
        remove_pid_file(&path, 43, 8);
        assert!(!path.exists());
    }

    #[test]
    fn kill_pid_files_tolerates_a_missing_dir_and_stray_files() {
        let dir = tempfile::tempdir().unwrap();
        kill_pid_files(&dir.path().join("missing"));
        let stray = dir.path().join("notes.txt");
        std::fs::write(&stray, "hello").unwrap();
        kill_pid_files(dir.path());
        assert!(stray.exists());
    }
}
