//! The end-to-end harness: a real `baton up` child process on a temporary data dir with free
//! ports, the real CLI, real demo artifacts. Every process is killed on drop, even on panic.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use baton_server::views::AppStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// The machine has 2 cores: one end-to-end scenario at a time keeps them deterministic.
static SERIAL: Mutex<()> = Mutex::new(());

pub const BATON: &str = env!("CARGO_BIN_EXE_baton");

/// Holds the machine for one scenario that does not start a [`Baton`] of its own.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A config with the ports filled in later: `@API@`, `@WEB@`, `@OTHER@` (and `@CLUSTER@`).
pub const THREE_WEB: &str = r#"
[api]
listen = "127.0.0.1:@API@"

[apps.web]
listen = "127.0.0.1:@WEB@"
instances = 3
command = ["{artifact}/baton-demo", "--port", "{port}"]
env = { GREETING = "hello" }

[apps.web.health]
interval = "200ms"
timeout = "2s"
healthy_threshold = 2
unhealthy_threshold = 3
deadline = "30s"

[apps.web.drain]
timeout = "10s"
stop_timeout = "5s"

[apps.web.blue_green]
keep_previous = "5m"
"#;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `baton up` and its data.
pub struct Baton {
    pub dir: TempDir,
    pub config: PathBuf,
    pub api: SocketAddr,
    pub apps: BTreeMap<String, SocketAddr>,
    /// `[cluster] listen`, when the template has `@CLUSTER@`.
    pub cluster: Option<SocketAddr>,
    /// The open-file limit (soft and hard) `baton up` runs under, if not the test's own.
    pub nofile: Option<u64>,
    binary: Option<PathBuf>,
    child: Option<Child>,
    _serial: MutexGuard<'static, ()>,
}

impl Baton {
    /// Writes `template` with free ports and starts `baton up`.
    pub fn start(template: &str) -> Baton {
        let mut b = Baton::prepare(template);
        b.up();
        b
    }

    /// [`Baton::start`] from a copy of the binary ([`Baton::use_copy`]).
    pub fn start_from_copy(template: &str) -> Baton {
        let mut b = Baton::prepare(template);
        b.use_copy();
        b.up();
        b
    }

    /// [`Baton::start`] with `baton up` under an open-file limit of `nofile` (soft and hard,
    /// so that Baton cannot raise it).
    pub fn start_with_nofile(template: &str, nofile: u64) -> Baton {
        let mut b = Baton::prepare(template);
        b.nofile = Some(nofile);
        b.up();
        b
    }

    /// Writes `template` with free ports; nothing runs yet.
    fn prepare(template: &str) -> Baton {
        let serial = serial();
        let dir = tempfile::Builder::new()
            .prefix("baton-e2e-")
            .tempdir()
            .unwrap();
        let api = free_port();
        let mut apps = BTreeMap::new();
        let mut text = template.replace("@API@", &api.to_string());
        for (marker, app) in [("@WEB@", "web"), ("@OTHER@", "other")] {
            if text.contains(marker) {
                let p = free_port();
                text = text.replace(marker, &p.to_string());
                apps.insert(app.to_string(), SocketAddr::from(([127, 0, 0, 1], p)));
            }
        }
        let mut cluster = None;
        if text.contains("@CLUSTER@") {
            let p = free_port();
            text = text.replace("@CLUSTER@", &p.to_string());
            cluster = Some(SocketAddr::from(([127, 0, 0, 1], p)));
        }
        text = text.replace("@DIR@", dir.path().to_str().unwrap());
        let config = dir.path().join("baton.toml");
        std::fs::write(&config, text).unwrap();
        Baton {
            dir,
            config,
            api: SocketAddr::from(([127, 0, 0, 1], api)),
            apps,
            cluster,
            nofile: None,
            binary: None,
            child: None,
            _serial: serial,
        }
    }

    /// The pid of the running `baton up`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("baton running").id()
    }

    /// The pid of the `baton up` that serves now (DATA/baton.pid): after a `baton restart`
    /// it is no longer the child this harness started.
    pub fn serving_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir().join("baton.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The binary `baton up` runs from: the test build, or a copy set by [`Baton::use_copy`].
    fn binary(&self) -> PathBuf {
        self.binary.clone().unwrap_or_else(|| PathBuf::from(BATON))
    }

    /// Runs `baton up` from a copy of the binary in the test directory, which a test may
    /// replace (an upgrade, or a broken one) before `baton restart`. Returns its path.
    pub fn use_copy(&mut self) -> PathBuf {
        let copy = self.dir.path().join("bin").join("baton");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(BATON, &copy).unwrap();
        self.binary = Some(copy.clone());
        copy
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(".baton")
    }

    pub fn web(&self) -> SocketAddr {
        self.apps["web"]
    }

    /// Starts `baton up` and waits until its API answers.
    pub fn up(&mut self) {
        // A `baton up` that exited by itself (`baton stop`, a restart) is reaped first.
        if let Some(child) = &mut self.child
            && let Ok(Some(_)) = child.try_wait()
        {
            self.child = None;
        }
        assert!(self.child.is_none(), "baton already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("baton.log"))
            .unwrap();
        let mut command = match self.nofile {
            // The shell sets the limit and becomes `baton up` (exec): the pid stays Baton's.
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(self.binary());
                c
            }
            None => Command::new(self.binary()),
        };
        let child = command
            .args(["up", "--config"])
            .arg(&self.config)
            .env("BATON_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let ok = wait_until(Duration::from_secs(30), || {
            self.cli(&["status"]).status.success()
        });
        assert!(
            ok,
            "baton up did not answer within 30s; log:\n{}",
            self.log()
        );
    }

    /// Kills `baton up` with SIGKILL (its instances keep running).
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("baton running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops `baton up` with SIGTERM and waits; also the process a `baton restart` started.
    pub fn stop(&mut self) {
        let serving = self.serving_pid();
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let exited = wait_until(Duration::from_secs(20), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(pid) = serving.filter(|p| alive(*p)) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            if !wait_until(Duration::from_secs(20), || !alive(pid)) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baton.log")).unwrap_or_default()
    }

    /// Runs the CLI against this Baton.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BATON)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs the CLI on a blocking thread, so load on the runtime keeps going.
    pub async fn cli_async(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(BATON)
                .args(&args)
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// Writes a demo artifact with extra `baton demo artifact` flags and creates the release.
    pub fn release(&self, app: &str, version: &str, flags: &[&str]) -> PathBuf {
        let out = self.dir.path().join("src").join(format!("{app}-{version}"));
        let mut args = vec![
            "demo",
            "artifact",
            out.to_str().unwrap(),
            "--version",
            version,
        ];
        args.extend_from_slice(flags);
        let o = self.cli(&args);
        assert!(o.status.success(), "demo artifact: {}", text(&o));
        let o = self.cli(&[
            "release",
            "create",
            app,
            version,
            "--artifact",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "release create: {}", text(&o));
        out
    }

    /// Deploys and waits; panics unless it succeeded.
    pub async fn deploy_ok(&self, app: &str, version: &str, extra: &[&str]) {
        let mut args = vec!["deploy", app, version, "--wait"];
        args.extend_from_slice(extra);
        let o = self.cli_async(&args).await;
        assert!(
            o.status.success(),
            "deploy {app} {version} failed: {}\nlog:\n{}",
            text(&o),
            self.log()
        );
    }

    /// GETs `path` from the API with the token: the status and the JSON answer.
    pub async fn api_get(&self, path: &str) -> (u16, serde_json::Value) {
        self.api_call(hyper::Method::GET, path, "").await
    }

    /// POSTs `body` (JSON) to the API with the token: the status and the JSON answer.
    pub async fn api_post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        self.api_call(hyper::Method::POST, path, body).await
    }

    async fn api_call(
        &self,
        method: hyper::Method,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let token = std::fs::read_to_string(self.data_dir().join("token")).unwrap();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.api))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", token.trim()))
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    pub fn status_env(&self, app: &str, env: &str) -> AppStatus {
        let o = self.cli(&["status", app, "--env", env, "--json"]);
        assert!(o.status.success(), "status: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    pub fn status(&self, app: &str) -> AppStatus {
        let o = self.cli(&["status", app, "--json"]);
        assert!(o.status.success(), "status: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        self.stop();
        // Last resort: whatever a failed test left running goes too.
        baton_runtime::kill_pid_files(&self.data_dir().join("run"));
        for pid in processes_under(self.dir.path()) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Pids of running processes whose executable lives under `dir` (this test's instances).
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmdline);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true);
        if !zombie && cmd.contains(dir.to_str().unwrap()) && cmd.contains("baton-demo") {
            out.push(pid);
        }
    }
    out
}

/// Whether process `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    !stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `f` until it is true or `deadline` passes.
pub fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Async polling with a deadline.
pub async fn wait_until_async<F, Fut>(deadline: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
