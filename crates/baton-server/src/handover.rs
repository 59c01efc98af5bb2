//! Restart, upgrade and stop of `baton up` (docs/design-notes.md "Restart and upgrade"): the
//! old process starts the binary on disk, hands it the listening sockets
//! (crates/baton-proxy/src/handoff.rs), gives it the control plane (the controller loop and the
//! data directory's lock), and stops accepting only once the new one serves. Instances are
//! never stopped: the new process re-adopts them. A new process that fails leaves this one
//! serving, with its controller running again.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton_proxy::handoff::{Predecessor, Sockets, Successor};
use nix::fcntl::Flock;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::controller;
use crate::listeners::Listeners;
use crate::reload::Reloads;
use crate::shared::Shared;

/// The file that holds the pid of the `baton up` serving the data directory.
pub const PID_FILE: &str = "baton.pid";
/// How long a restart whose new process failed waits to take the data directory's lock back.
const RELOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the API (or a signal) asks of the running daemon.
pub enum Request {
    /// Start the binary on disk and hand over to it; the answer says when it serves.
    Restart(Option<oneshot::Sender<Result<Restarted, String>>>),
    /// Stop; with `keep_instances`, leave the instances running for the next `baton up`.
    Stop {
        /// Leave the instances running.
        keep_instances: bool,
    },
}

/// A restart that happened.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Restarted {
    /// The process that stopped accepting.
    pub old_pid: u32,
    /// The process that serves now.
    pub new_pid: u32,
}

/// How the daemon's serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A stop: SIGTERM, Ctrl-C or `baton stop`.
    Stop {
        /// Leave the instances running.
        keep_instances: bool,
    },
    /// A new process serves: finish the requests in flight and exit, instances untouched.
    HandedOver,
}

/// The predecessor of a process started by `baton restart`, until this one serves.
pub struct Incoming {
    predecessor: Option<Predecessor>,
    /// The listening sockets: those handed over, and those this process binds.
    pub sockets: Arc<Sockets>,
}

impl Incoming {
    /// The hand-over this process was started for, if any (see `BATON_HANDOFF`).
    pub async fn from_env() -> anyhow::Result<Incoming> {
        let (predecessor, sockets) = match Predecessor::connect_from_env().await? {
            Some((p, s)) => {
                tracing::info!(pid = p.pid, sockets = ?s.unclaimed(), "taking over from the running baton");
                (Some(p), s)
            }
            None => (None, Sockets::default()),
        };
        Ok(Incoming {
            predecessor,
            sockets: Arc::new(sockets),
        })
    }

    /// Refuses a hand-over to another data directory than the running baton's (a changed
    /// `data_dir`): this process would serve an empty (or another) store while the running
    /// instances lose their owner.
    pub fn check_data_dir(&self, data_dir: &Path) -> anyhow::Result<()> {
        if self.predecessor.is_none() {
            return Ok(());
        }
        let theirs = std::env::var_os(baton_proxy::handoff::HANDOFF_ENV)
            .map(PathBuf::from)
            .and_then(|sock| sock.parent().map(Path::to_path_buf))
            .and_then(|dir| std::fs::canonicalize(dir).ok());
        match theirs {
            Some(dir) if dir == data_dir => Ok(()),
            Some(dir) => anyhow::bail!(
                "data_dir changed from {} to {}: a restart cannot move Baton's store and instance records; put data_dir back, or stop Baton, move the directory and start it again",
                dir.display(),
                data_dir.display()
            ),
            None => anyhow::bail!("cannot tell the running baton's data directory"),
        }
    }

    /// Takes over the control plane: returns once the old process has released it.
    pub async fn take(&mut self) -> anyhow::Result<()> {
        if let Some(p) = &mut self.predecessor {
            p.take().await?;
        }
        Ok(())
    }

    /// This process serves: the old one stops accepting. Sockets it offered and no listener
    /// here took (no longer in the config) close.
    pub async fn ready(&mut self) {
        self.sockets.close_unclaimed();
        if let Some(p) = self.predecessor.take()
            && let Err(e) = p.ready().await
        {
            tracing::warn!(error = %e, "cannot tell the old baton that this one serves");
        }
    }

    /// This process cannot serve: the old one takes the control plane back.
    pub async fn failed(&mut self, reason: &str) {
        if let Some(p) = self.predecessor.take() {
            p.failed(reason).await;
        }
    }
}

/// The controller loop, which can stop and run again with the same inputs.
pub struct ControllerTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<controller::Inputs>,
}

impl ControllerTask {
    /// Starts the loop.
    pub fn spawn(shared: Arc<Shared>, inputs: controller::Inputs) -> ControllerTask {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(controller::run(shared, inputs, stop_rx));
        ControllerTask { stop, task }
    }

    /// Stops the loop at the end of its round; its inputs, unless it panicked.
    pub async fn stop(self) -> Option<controller::Inputs> {
        let _ = self.stop.send(true);
        self.task.await.ok()
    }
}

/// What the running daemon holds that a restart hands over or takes back.
pub struct Control {
    /// The daemon's state.
    pub shared: Arc<Shared>,
    /// The data directory's lock, while this process runs the control plane.
    pub lock: Option<Flock<File>>,
    /// The listening sockets, offered to the new process.
    pub sockets: Arc<Sockets>,
    /// The controller loop, while it runs.
    pub controller: Option<ControllerTask>,
    /// The program and arguments this process was started with (recorded at its start,
    /// before an upgrade can replace the file).
    pub exe: PathBuf,
    /// The arguments, without the program.
    pub args: Vec<OsString>,
}

impl Control {
    /// Serves until `shutdown` resolves or a request ends it (a stop, or a restart that
    /// handed over); restarts that fail leave it serving.
    ///
    /// Reloads (`reload.rs`) are served here too, one at a time with restarts: a restart
    /// never hands over a half-reloaded set of listeners.
    pub(crate) async fn serve_until(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut requests: mpsc::Receiver<Request>,
        reloads: &mut Reloads,
        listeners: &mut Listeners,
    ) -> Ending {
        tokio::pin!(shutdown);
        let mut usr2 = baton_proxy::handoff::RestartSignal::new();
        let mut reloading = true;
        loop {
            let request = tokio::select! {
                () = &mut shutdown => return Ending::Stop { keep_instances: false },
                Some(r) = requests.recv() => r,
                served = reloads.serve_one(listeners), if reloading => {
                    // The queue closes only with the daemon.
                    reloading = served;
                    continue;
                }
                () = usr2.recv() => {
                    tracing::info!("SIGUSR2: restarting");
                    Request::Restart(None)
                }
            };
            match request {
                Request::Stop { keep_instances } => {
                    return Ending::Stop { keep_instances };
                }
                Request::Restart(reply) => {
                    let outcome = self.restart().await;
                    match &outcome {
                        Ok(r) => {
                            tracing::info!(
                                old = r.old_pid,
                                new = r.new_pid,
                                "restart: the new baton serves; finishing in-flight requests"
                            );
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "restart failed; this baton keeps serving");
                        }
                    }
                    let handed_over = outcome.is_ok();
                    if let Some(reply) = reply {
                        let _ = reply.send(outcome);
                    }
                    if handed_over {
                        return Ending::HandedOver;
                    }
                }
            }
        }
    }

    async fn restart(&mut self) -> Result<Restarted, String> {
        let data_dir = self.shared.data_dir.clone();
        tracing::info!(exe = %self.exe.display(), "restart: starting the new baton");
        let mut next = Successor::start(&data_dir, &self.exe, &self.args, &self.sockets)
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = next.taken().await {
            next.abandon().await;
            return Err(e.to_string());
        }
        // One controller at a time: this one stops, then gives up the data directory.
        let inputs = match self.controller.take() {
            Some(c) => c.stop().await,
            None => None,
        };
        self.lock = None;
        let served = match next.released().await {
            Ok(()) => next.ready().await,
            Err(e) => Err(e),
        };
        match served {
            Ok(new_pid) => Ok(Restarted {
                old_pid: std::process::id(),
                new_pid,
            }),
            Err(e) => {
                next.abandon().await;
                self.take_back(inputs).await;
                Err(e.to_string())
            }
        }
    }

    /// After a failed hand-over: the lock and the controller loop again.
    async fn take_back(&mut self, inputs: Option<controller::Inputs>) {
        // The new process may have named itself already (pid file, systemd's MAINPID).
        if let Err(e) = announce(&self.shared.data_dir) {
            tracing::error!(error = %format!("{e:#}"), "cannot name this process as the serving baton again");
        }
        let deadline = tokio::time::Instant::now() + RELOCK_TIMEOUT;
        loop {
            match crate::daemon::lock_data_dir(&self.shared.data_dir) {
                Ok(lock) => {
                    self.lock = Some(lock);
                    break;
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::error!(error = %format!("{e:#}"), "cannot take the data directory back: the controller stays stopped (the proxies serve)");
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        match inputs {
            Some(inputs) => {
                self.controller = Some(ControllerTask::spawn(self.shared.clone(), inputs));
            }
            None => {
                tracing::error!("the controller loop had stopped (panicked); it cannot run again")
            }
        }
    }
}

/// Records this process as the data directory's `baton up` (DATA/baton.pid), and tells a
/// service manager that watches through `$NOTIFY_SOCKET` (systemd's `Type=notify`) which
/// process is the main one now.
pub fn announce(data_dir: &Path) -> anyhow::Result<()> {
    let pid = std::process::id();
    let path = data_dir.join(PID_FILE);
    let tmp = data_dir.join(format!("{PID_FILE}.tmp"));
    std::fs::write(&tmp, format!("{pid}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET") {
        notify_service_manager(&socket, &format!("MAINPID={pid}\nREADY=1\n"));
    }
    Ok(())
}

/// Removes DATA/baton.pid if it still names this process (a stop; not after a hand-over).
pub fn unannounce(data_dir: &Path) {
    let path = data_dir.join(PID_FILE);
    let ours = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// The sd_notify protocol: one datagram to the socket (a path, or `@` for an abstract name).
fn notify_service_manager(socket: &std::ffi::OsStr, message: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(Path::new(socket)),
    };
    let sent = UnixDatagram::unbound()
        .and_then(|s| addr.and_then(|a| s.send_to_addr(message.as_bytes(), &a)));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify the service manager ($NOTIFY_SOCKET)");
    }
}

/// The program and arguments this process runs, for a restart.
pub fn own_command() -> anyhow::Result<(PathBuf, Vec<OsString>)> {
    baton_proxy::handoff::own_command().context("cannot tell which program this baton runs")
}

/// If this process was started by `baton restart`, tells the running baton why it cannot take
/// over (e.g. its config is invalid): that one keeps serving and `baton restart` prints this.
pub async fn refuse(reason: &str) {
    baton_proxy::handoff::refuse_from_env(reason).await;
}
