//! Hands a process's listening sockets to the process that replaces it (`baton restart`, an
//! agent's SIGUSR2), so that no connection is refused or lost while Baton itself restarts
//! (docs/DESIGN.md I10).
//!
//! The old process starts the new one with [`HANDOFF_ENV`] naming a unix socket in its data
//! directory (mode 0600, accepted only from that child's pid), and sends each listener's
//! descriptor over it (`SCM_RIGHTS`) with its name and configured address. Both processes
//! then hold the same sockets: connections wait in the one kernel queue whoever accepts them.
//! The protocol is a few text lines, in this order:
//!
//! ```text
//! old -> new   listener NAME ADDR   (one per socket, its descriptor attached)
//! old -> new   offered PID
//! new -> old   take | refuse REASON (the new process read its config)
//! old -> new   released             (the old one stopped its control plane)
//! new -> old   ready PID | failed REASON
//! ```
//!
//! After `ready`, the old process stops accepting, finishes its requests and exits. A new
//! process that refuses, fails, exits or falls silent leaves the old one serving.

mod channel;
mod sockets;

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

use channel::Channel;
use sockets::Named;
pub use sockets::Sockets;

/// The environment variable that tells a starting process where its predecessor waits.
pub const HANDOFF_ENV: &str = "BATON_HANDOFF";
/// The hand-over socket's file in the data directory.
pub const SOCKET_FILE: &str = "handoff.sock";
/// How long the new process may take to connect, and to say whether it takes over.
pub const TAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the new process may take from `released` to `ready` (it re-adopts every instance).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a hand-over did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The hand-over socket or a descriptor could not be used.
    #[error("hand-over: {0}")]
    Io(#[from] io::Error),
    /// The new program could not be started.
    #[error("cannot start {}: {source}", .exe.display())]
    Spawn {
        /// The program.
        exe: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The new process said why it does not take over.
    #[error("{0}")]
    Refused(String),
    /// The new process exited before it was ready.
    #[error("the new process exited ({0}) before it was ready; its log (this one's) says why")]
    Exited(String),
    /// The new process took too long.
    #[error("the new process did not {what} within {}s; it was stopped", .within.as_secs())]
    Timeout {
        /// What it did not do.
        what: &'static str,
        /// The time it had.
        within: Duration,
    },
    /// The other side sent something else than the protocol says.
    #[error("hand-over protocol: {0}")]
    Protocol(String),
}

/// The old process's side: the new process it started, until that one is ready.
pub struct Successor {
    channel: Channel,
    child: Child,
    /// The new process's pid.
    pub pid: u32,
}

impl Successor {
    /// Starts `exe` with `args` and offers it `sockets` through `DATA/handoff.sock`.
    pub async fn start(
        data_dir: &Path,
        exe: &Path,
        args: &[OsString],
        sockets: &Sockets,
    ) -> Result<Successor, HandoffError> {
        let path = data_dir.join(SOCKET_FILE);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let spawned = Command::new(exe)
            .args(args)
            .env(HANDOFF_ENV, &path)
            .stdin(Stdio::null())
            .kill_on_drop(false)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(source) => {
                let _ = std::fs::remove_file(&path);
                return Err(HandoffError::Spawn {
                    exe: exe.to_path_buf(),
                    source,
                });
            }
        };
        let pid = child.id().unwrap_or_default();
        let connected = tokio::select! {
            stream = accept_from(&listener, pid) => stream.map_err(HandoffError::Io),
            status = child.wait() => Err(HandoffError::Exited(exit_text(status))),
            () = tokio::time::sleep(TAKE_TIMEOUT) => Err(HandoffError::Timeout { what: "connect", within: TAKE_TIMEOUT }),
        };
        let _ = std::fs::remove_file(&path);
        let mut successor = match connected {
            Ok(stream) => Successor {
                channel: Channel::new(stream),
                child,
                pid,
            },
            Err(e) => {
                stop_child(&mut child).await;
                return Err(e);
            }
        };
        if let Err(e) = successor.offer(sockets).await {
            successor.abandon().await;
            return Err(e);
        }
        Ok(successor)
    }

    async fn offer(&mut self, sockets: &Sockets) -> Result<(), HandoffError> {
        for named in sockets.offer()? {
            let line = format!("listener {} {}", named.name, named.addr);
            self.channel.send(&line, Some(named.fd.as_fd())).await?;
        }
        let line = format!("offered {}", std::process::id());
        self.channel.send(&line, None).await?;
        Ok(())
    }

    /// Waits for the new process to take over (it read its config), or for why not.
    pub async fn taken(&mut self) -> Result<(), HandoffError> {
        let line = self
            .expect("say whether it takes over", TAKE_TIMEOUT)
            .await?;
        match split_word(&line) {
            ("take", _) => Ok(()),
            ("refuse" | "failed", reason) => Err(HandoffError::Refused(reason.to_string())),
            _ => Err(HandoffError::Protocol(format!("unexpected {line:?}"))),
        }
    }

    /// Tells the new process that the control plane is its to run.
    pub async fn released(&mut self) -> Result<(), HandoffError> {
        Ok(self.channel.send("released", None).await?)
    }

    /// Waits until the new process serves, or for why it cannot.
    pub async fn ready(&mut self) -> Result<u32, HandoffError> {
        let line = self.expect("become ready", READY_TIMEOUT).await?;
        match split_word(&line) {
            ("ready", pid) => pid
                .parse()
                .map_err(|_| HandoffError::Protocol(format!("bad pid in {line:?}"))),
            ("failed", reason) => Err(HandoffError::Refused(reason.to_string())),
            _ => Err(HandoffError::Protocol(format!("unexpected {line:?}"))),
        }
    }

    /// The hand-over is off: stops the new process (if it still runs) and reaps it.
    pub async fn abandon(mut self) {
        stop_child(&mut self.child).await;
    }

    async fn expect(
        &mut self,
        what: &'static str,
        within: Duration,
    ) -> Result<String, HandoffError> {
        let received = tokio::select! {
            biased;
            line = self.channel.recv() => line,
            () = tokio::time::sleep(within) => return Err(HandoffError::Timeout { what, within }),
        };
        match received {
            Ok(line) => Ok(line),
            // The connection closed: the process exited (or is about to); say how.
            Err(e) => match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
                Ok(status) => Err(HandoffError::Exited(exit_text(status))),
                Err(_) => Err(e),
            },
        }
    }
}

/// The new process's side: the process it replaces, until this one is ready.
pub struct Predecessor {
    channel: Channel,
    /// The old process's pid.
    pub pid: u32,
}

impl Predecessor {
    /// If [`HANDOFF_ENV`] is set, connects to the process that started this one and takes the
    /// sockets it offers.
    pub async fn connect_from_env() -> Result<Option<(Predecessor, Sockets)>, HandoffError> {
        let Some(path) = std::env::var_os(HANDOFF_ENV) else {
            return Ok(None);
        };
        let stream = UnixStream::connect(&path).await?;
        let mut channel = Channel::new(stream);
        let sockets = Sockets::default();
        loop {
            let line = tokio::time::timeout(TAKE_TIMEOUT, channel.recv())
                .await
                .map_err(|_| HandoffError::Timeout {
                    what: "offer its sockets",
                    within: TAKE_TIMEOUT,
                })??;
            match split_word(&line) {
                ("listener", rest) => {
                    let (name, addr) = split_word(rest);
                    let addr = addr
                        .parse()
                        .map_err(|_| HandoffError::Protocol(format!("bad address in {line:?}")))?;
                    let fd = channel.fds.pop_front().ok_or_else(|| {
                        HandoffError::Protocol(format!("no descriptor with {line:?}"))
                    })?;
                    sockets.lock().inherited.push(Named {
                        name: name.to_string(),
                        addr,
                        fd,
                    });
                }
                ("offered", pid) => {
                    let pid = pid
                        .parse()
                        .map_err(|_| HandoffError::Protocol(format!("bad pid in {line:?}")))?;
                    return Ok(Some((Predecessor { channel, pid }, sockets)));
                }
                _ => return Err(HandoffError::Protocol(format!("unexpected {line:?}"))),
            }
        }
    }

    /// Says why this process does not take over (the old one keeps serving).
    pub async fn refuse(self, reason: &str) {
        let _ = self.channel.send(&format!("refuse {reason}"), None).await;
    }

    /// Takes over: waits until the old process has released the control plane.
    pub async fn take(&mut self) -> Result<(), HandoffError> {
        self.channel.send("take", None).await?;
        let line = tokio::time::timeout(READY_TIMEOUT, self.channel.recv())
            .await
            .map_err(|_| HandoffError::Timeout {
                what: "release the control plane",
                within: READY_TIMEOUT,
            })??;
        match line.as_str() {
            "released" => Ok(()),
            _ => Err(HandoffError::Protocol(format!("unexpected {line:?}"))),
        }
    }

    /// This process serves: the old one may stop accepting.
    pub async fn ready(self) -> Result<(), HandoffError> {
        let line = format!("ready {}", std::process::id());
        Ok(self.channel.send(&line, None).await?)
    }

    /// This process cannot serve: the old one takes the control plane back.
    pub async fn failed(self, reason: &str) {
        let _ = self.channel.send(&format!("failed {reason}"), None).await;
    }
}

/// Tells a starting process started for a hand-over (if this is one) why it cannot take
/// over, before it has read the offer (e.g. its config is invalid).
pub async fn refuse_from_env(reason: &str) {
    if let Ok(Some((predecessor, _))) = Predecessor::connect_from_env().await {
        predecessor.refuse(reason).await;
    }
}

/// SIGUSR2, which asks a running Baton or agent to restart (as nginx's binary upgrade).
pub struct RestartSignal(Option<tokio::signal::unix::Signal>);

impl RestartSignal {
    /// Watches SIGUSR2 from now on (a warning, and no restarts by signal, if it cannot).
    pub fn new() -> RestartSignal {
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
            .inspect_err(|e| tracing::warn!(error = %e, "cannot watch SIGUSR2 (restart)"))
            .ok();
        RestartSignal(signal)
    }

    /// Resolves at the next SIGUSR2.
    pub async fn recv(&mut self) {
        let received = match &mut self.0 {
            Some(s) => s.recv().await.is_some(),
            None => false,
        };
        if !received {
            std::future::pending::<()>().await;
        }
    }
}

impl Default for RestartSignal {
    fn default() -> Self {
        RestartSignal::new()
    }
}

/// The program and arguments this process runs, for a restart: read at start, before an
/// upgrade replaces the file (`/proc/self/exe` then reads `... (deleted)`).
pub fn own_command() -> io::Result<(PathBuf, Vec<OsString>)> {
    Ok((
        std::env::current_exe()?,
        std::env::args_os().skip(1).collect(),
    ))
}

/// Accepts the connection of process `pid` (any other peer is turned away).
async fn accept_from(listener: &UnixListener, pid: u32) -> io::Result<UnixStream> {
    loop {
        let (stream, _) = listener.accept().await?;
        let peer = stream.peer_cred()?.pid();
        if peer.and_then(|p| u32::try_from(p).ok()) == Some(pid) {
            return Ok(stream);
        }
        tracing::warn!(
            ?peer,
            "hand-over socket: a connection from another process; closed"
        );
    }
}

/// Kills the process (SIGKILL: a SIGTERM would be its full stop, which stops the instances it
/// may have adopted) and reaps it.
async fn stop_child(child: &mut Child) {
    let _ = child.kill().await;
}

fn exit_text(status: io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot tell how: {e}"),
    }
}

fn split_word(line: &str) -> (&str, &str) {
    line.split_once(' ').unwrap_or((line, ""))
}

#[cfg(test)]
mod tests;
