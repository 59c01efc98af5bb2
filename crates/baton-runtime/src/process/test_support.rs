//! Test helpers: specs for shell scripts, guards that kill what a test started, and polling.

use std::future::Future;
use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::procfs::{proc_start_time, signal_instance};
use super::{ProcessHandle, ProcessSpec};

/// How long a test waits for a condition before failing.
const DEADLINE: Duration = Duration::from_secs(20);

/// A spawned instance that is SIGKILLed (with its group) when the test ends, even by a panic.
pub(crate) struct Guard(pub ProcessHandle);

impl Deref for Guard {
    type Target = ProcessHandle;
    fn deref(&self) -> &ProcessHandle {
        &self.0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.kill();
        // Helpers can outlive the instance; the group id cannot be reused while they live,
        // and a test's instance is always a group leader (pgid == pid).
        if let Ok(pid) = i32::try_from(self.0.pid()) {
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        }
    }
}

/// A process the test did not spawn itself (e.g. a grandchild), killed when the test ends.
pub(crate) struct PidGuard {
    pub pid: u32,
    pub start_time: u64,
}

impl PidGuard {
    /// Guards `pid` if it is alive; `None` if it already exited.
    pub fn new(pid: u32) -> Option<PidGuard> {
        Some(PidGuard {
            pid,
            start_time: proc_start_time(pid)?,
        })
    }

    /// Whether the guarded process is still alive (a zombie is not).
    pub fn alive(&self) -> bool {
        proc_start_time(self.pid) == Some(self.start_time)
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        signal_instance(self.pid, self.start_time, Signal::SIGKILL);
    }
}

/// A spec running `script` with `/bin/sh -c` in `dir`, logging to `dir/log/out.log`.
pub(crate) fn sh(dir: &Path, script: &str) -> ProcessSpec {
    ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: Default::default(),
        cwd: dir.to_path_buf(),
        log_path: dir.join("log/out.log"),
        pid_file: None,
    }
}

/// Polls `check` until it returns `Some`, failing the test after a generous deadline.
pub(crate) async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `path` contains a line equal to `line` (e.g. a script's "ready"); on timeout, the
/// failure shows what the file holds.
pub(crate) async fn wait_for_line(path: &Path, line: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {line:?} in {}, which holds:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `path` holds the pid of a background `sleep` started by a script, and until that
/// process has become `sleep` (a signal sent to the group while it is still a forked shell may
/// be lost in the shell's signal set-up), and guards it.
pub(crate) async fn guard_sleep_in(path: &Path) -> PidGuard {
    let pid: u32 = eventually(&format!("a pid in {}", path.display()), || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
    .await;
    let guard = PidGuard::new(pid).expect("the grandchild is alive when its pid is written");
    eventually("the grandchild to exec sleep", || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(())
    })
    .await;
    guard
}

/// Fails the test if `future` takes longer than the deadline (instead of hanging forever).
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    super::procfs::proc_start_time(pid).is_some_and(|start| super::procfs::is_alive(pid, start))
}
