//! A handle on one running instance: spawned by this Baton or adopted from a previous one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout, timeout_at};

use super::pid_file::{read_pid_file, remove_pid_file, write_pid_file};
use super::procfs::{is_alive, read_stat, signal_instance};
use super::spawn::spawn_child;
use super::{DriverError, ExitInfo, ProcessSpec, StopOutcome};

/// How often processes that are not Baton's children are checked in `/proc`.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often `stop` checks whether the helpers of an exited instance are gone.
const GROUP_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long `stop` waits for the exit after SIGKILL before giving up on seeing it.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A running (or exited) instance. Cheap to clone; every clone sees the same exit.
///
/// Dropping every handle does not stop the process: instances outlive Baton by design.
#[derive(Clone)]
pub struct ProcessHandle {
    inner: Arc<Inner>,
}

struct Inner {
    pid: u32,
    start_time: u64,
    /// Whether the process leads its own group (pgid == pid), so that signalling the group
    /// reaches exactly the instance and its helpers.
    leads_group: bool,
    pid_file: Option<PathBuf>,
    /// `Some` once the process has exited; written by the task that reaps or polls it.
    exit: watch::Receiver<Option<ExitInfo>>,
}

// === impl ProcessHandle ===

impl ProcessHandle {
    /// Starts the instance described by `spec`: its own process group, stdin closed, stdout and
    /// stderr appended to `spec.log_path`, and `spec.pid_file` written.
    ///
    /// # Panics
    /// Outside a tokio runtime: the exit is reaped by a background task.
    pub fn spawn(spec: &ProcessSpec) -> Result<ProcessHandle, DriverError> {
        let mut child = spawn_child(spec)?;
        let pid = child
            .id()
            .expect("a child that was never waited on has a pid");
        // Not yet reaped (only the task below waits on it), so its stat is readable even if it
        // already exited; 0 only if /proc is unreadable.
        let start_time = read_stat(pid).map_or(0, |stat| stat.start_time);
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => ExitInfo::from(status),
                Err(error) => {
                    tracing::warn!(pid, %error, "cannot reap instance");
                    ExitInfo::UNKNOWN
                }
            };
            tracing::debug!(pid, %exit, "instance exited");
            tx.send_replace(Some(exit));
        });
        let handle = ProcessHandle::new(pid, start_time, true, spec.pid_file.clone(), rx);
        let written = spec
            .pid_file
            .as_ref()
            .map(|path| (path, write_pid_file(path, pid, start_time)));
        if let Some((path, Err(source))) = written {
            // Without its pid file a restarted Baton could not re-adopt it: an orphan.
            handle.kill();
            return Err(DriverError::PidFile {
                path: path.clone(),
                source,
            });
        }
        tracing::info!(pid, start_time, program = %spec.argv[0], "instance started");
        Ok(handle)
    }

    /// Takes over a process started by an earlier Baton: `None` unless `pid` is alive and
    /// started at `start_time` (so a reused pid is never adopted). Its exit is noticed by
    /// polling `/proc`; the exit status of a process that is not Baton's child is unknown.
    ///
    /// # Panics
    /// Outside a tokio runtime: the process is watched by a background task.
    pub fn adopt(pid: u32, start_time: u64) -> Option<ProcessHandle> {
        Self::adopt_inner(pid, start_time, None)
    }

    /// Like [`adopt`](Self::adopt), with the pid and start time read from a pid file written by
    /// [`spawn`](Self::spawn); `stop` removes that file again.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn adopt_pid_file(path: &Path) -> Option<ProcessHandle> {
        let (pid, start_time) = read_pid_file(path)?;
        Self::adopt_inner(pid, start_time, Some(path.to_path_buf()))
    }

    fn adopt_inner(pid: u32, start_time: u64, pid_file: Option<PathBuf>) -> Option<Self> {
        let stat = read_stat(pid).filter(|s| s.start_time == start_time && !s.exited())?;
        let leads_group = i32::try_from(pid).is_ok_and(|raw| raw == stat.pgrp);
        let (tx, rx) = watch::channel(None);
        tokio::spawn(watch_adopted(pid, start_time, tx));
        tracing::info!(pid, start_time, "instance adopted");
        Some(ProcessHandle::new(
            pid,
            start_time,
            leads_group,
            pid_file,
            rx,
        ))
    }

    fn new(
        pid: u32,
        start_time: u64,
        leads_group: bool,
        pid_file: Option<PathBuf>,
        exit: watch::Receiver<Option<ExitInfo>>,
    ) -> Self {
        let inner = Inner {
            pid,
            start_time,
            leads_group,
            pid_file,
            exit,
        };
        ProcessHandle {
            inner: Arc::new(inner),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// The start time (`/proc/<pid>/stat` field 22); with the pid, it identifies the process.
    pub fn start_time(&self) -> u64 {
        self.inner.start_time
    }

    /// `Some` once the process has exited.
    pub fn exit(&self) -> Option<ExitInfo> {
        if let Some(exit) = self.inner.exit.borrow().clone() {
            return Some(exit);
        }
        // The watcher stops only when its runtime shuts down; /proc still knows the answer.
        let watcher_gone = self.inner.exit.has_changed().is_err();
        (watcher_gone && !is_alive(self.pid(), self.start_time())).then_some(ExitInfo::UNKNOWN)
    }

    /// Resolves when the process exits. Any number of tasks may wait.
    pub async fn exited(&self) -> ExitInfo {
        let mut exit = self.inner.exit.clone();
        let published = exit
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|exit| exit.clone());
        if let Some(exit) = published {
            return exit;
        }
        loop {
            if let Some(exit) = self.exit() {
                return exit;
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Stops the instance: SIGTERM to its process group, up to `stop_timeout` for it to exit,
    /// then SIGKILL to the group. Helpers left in the group after the instance exited get the
    /// rest of `stop_timeout`, then SIGKILL, so nothing it started is left behind. Removes the
    /// pid file.
    pub async fn stop(&self, stop_timeout: Duration) -> StopOutcome {
        let outcome = self.terminate(stop_timeout).await;
        if let Some(path) = &self.inner.pid_file {
            remove_pid_file(path, self.pid(), self.start_time());
        }
        tracing::info!(pid = self.pid(), ?outcome, "instance stopped");
        outcome
    }

    async fn terminate(&self, stop_timeout: Duration) -> StopOutcome {
        if self.exit().is_some() {
            return StopOutcome::AlreadyGone;
        }
        let deadline = Instant::now() + stop_timeout;
        if !signal_instance(self.pid(), self.start_time(), Signal::SIGTERM) {
            // Gone between the check and the signal.
            return StopOutcome::AlreadyGone;
        }
        if let Ok(exit) = timeout_at(deadline, self.exited()).await {
            self.sweep_group(deadline).await;
            return StopOutcome::Exited(exit);
        }
        tracing::warn!(
            pid = self.pid(),
            ?stop_timeout,
            "instance ignored SIGTERM; killing it"
        );
        self.kill();
        if timeout(KILL_WAIT, self.exited()).await.is_err() {
            tracing::warn!(pid = self.pid(), "instance still there after SIGKILL");
        }
        self.sweep_group(Instant::now()).await;
        StopOutcome::Killed
    }

    /// Waits until `deadline` for the rest of the instance's group to exit, then SIGKILLs it.
    /// Only right after the leader's exit: while any member lives the kernel does not reuse the
    /// group id, and once none does the probe fails, so no stranger is ever signalled.
    async fn sweep_group(&self, deadline: Instant) {
        let Some(group) = self.group() else {
            return;
        };
        while group_has_members(group) {
            if Instant::now() >= deadline {
                tracing::warn!(
                    pid = self.pid(),
                    "killing helpers left in the instance's group"
                );
                let _ = kill(group, Signal::SIGKILL);
                return;
            }
            sleep(GROUP_POLL_INTERVAL).await;
        }
    }

    /// The group to signal (a negative pid, for `kill`), if the instance leads one.
    fn group(&self) -> Option<Pid> {
        let raw = i32::try_from(self.pid()).ok()?;
        self.inner.leads_group.then(|| Pid::from_raw(-raw))
    }

    /// Sends SIGKILL to the instance's group now, without waiting. Does nothing if the process
    /// is gone. Meant for last-resort cleanup (e.g. test guards); prefer [`stop`](Self::stop).
    pub fn kill(&self) {
        signal_instance(self.pid(), self.start_time(), Signal::SIGKILL);
    }
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.inner.pid)
            .field("start_time", &self.inner.start_time)
            .field("exit", &*self.inner.exit.borrow())
            .finish()
    }
}

/// Whether any process is left in `group` (signal 0 checks without sending anything). Zombie
/// members count, which errs on the side of waiting.
fn group_has_members(group: Pid) -> bool {
    !matches!(kill(group, None), Err(Errno::ESRCH))
}

/// Publishes the exit of a process that is not Baton's child: gone, a zombie, or a different
/// process under the same pid all mean it exited. Stops when every handle is dropped.
async fn watch_adopted(pid: u32, start_time: u64, tx: watch::Sender<Option<ExitInfo>>) {
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            () = tx.closed() => return,
            _ = ticks.tick() => {
                if !is_alive(pid, start_time) {
                    tracing::debug!(pid, "adopted instance exited");
                    tx.send_replace(Some(ExitInfo::UNKNOWN));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "handle_tests.rs"]
mod tests;
