//! Many hosts: agents join a real `baton up` over real TLS from their own loopback addresses
//! (127.0.0.2, 127.0.0.3), show in `baton hosts`, are marked lost when killed and connected
//! again when restarted; bad joins are refused and recorded; the cluster port speaks only TLS
//! and bounds the connections of one address that are not yet a host's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use baton_server::cluster::view::HostView;

use crate::harness::{BATON, Baton, text, wait_until};

const CLUSTER: &str = r#"
[api]
listen = "127.0.0.1:@API@"

[cluster]
listen = "127.0.0.1:@CLUSTER@"
heartbeat_timeout = "3s"

[hosts.web-1]
address = "127.0.0.2"

[hosts.web-2]
address = "127.0.0.3"
"#;

/// `baton agent` processes, killed on drop.
pub(crate) struct Agents {
    pub(crate) dir: PathBuf,
    pub(crate) children: Vec<(String, Child)>,
}

/// The two hosts most tests use: web-1 on 127.0.0.2 and web-2 on 127.0.0.3.
pub(crate) const TWO_HOSTS: [(&str, &str); 2] = [("web-1", "127.0.0.2"), ("web-2", "127.0.0.3")];

impl Agents {
    /// No agent yet; their data directories and logs go under `b`'s `agents/`.
    pub(crate) fn new(b: &Baton) -> Agents {
        let agents = Agents {
            dir: b.dir.path().join("agents"),
            children: Vec::new(),
        };
        std::fs::create_dir_all(&agents.dir).unwrap();
        agents
    }

    /// Joins `hosts` (name, address) with fresh tokens and waits until each is connected.
    pub(crate) fn join_all(b: &Baton, hosts: &[(&str, &str)]) -> Agents {
        let mut agents = Agents::new(b);
        for (name, address) in hosts {
            let t = token(b);
            agents.start(b, name, address, Some(&t));
            wait_state(b, &agents, name, "connected");
        }
        agents
    }

    pub(crate) fn command(
        &self,
        b: &Baton,
        name: &str,
        address: &str,
        token: Option<&str>,
    ) -> Command {
        let mut c = Command::new(BATON);
        c.args(["agent", "--join", &b.cluster.unwrap().to_string()])
            .args(["--name", name, "--address", address, "--data-dir"])
            .arg(self.dir.join(name))
            .env("BATON_LOG", "info")
            .env_remove("BATON_JOIN_TOKEN")
            .stdin(Stdio::null());
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        c
    }

    /// Starts an agent that runs until killed; its output goes to `<dir>/<name>.log`.
    pub(crate) fn start(&mut self, b: &Baton, name: &str, address: &str, token: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap();
        let child = self
            .command(b, name, address, token)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push((name.to_string(), child));
    }

    /// Runs an agent that must stop by itself (a refused join), within 30 s.
    pub(crate) fn run_to_end(
        &mut self,
        b: &Baton,
        name: &str,
        address: &str,
        token: &str,
    ) -> Output {
        let mut child = self
            .command(b, name, address, Some(token))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                panic!(
                    "agent {name} did not stop within 30s: {}",
                    text(&child.wait_with_output().unwrap())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    pub(crate) fn kill9(&mut self, name: &str) {
        let i = self.children.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.children.remove(i);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends `signal` to a running agent.
    pub(crate) fn signal(&self, name: &str, signal: nix::sys::signal::Signal) {
        let (_, child) = self.children.iter().find(|(n, _)| n == name).unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    }

    pub(crate) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Instances outlive their agent by design: the test kills them itself.
        if let Ok(hosts) = std::fs::read_dir(&self.dir) {
            for host in hosts.flatten() {
                // An agent restarted by SIGUSR2 is not a child of the test.
                if let Some(pid) = agent_pid(&host.path()).filter(|p| {
                    // Not a pid reused since by another program.
                    std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                        String::from_utf8_lossy(&c).contains(&*host.path().to_string_lossy())
                    })
                }) {
                    let pid = nix::unistd::Pid::from_raw(pid as i32);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
                baton_runtime::kill_pid_files(&host.path().join("run"));
            }
        }
    }
}

/// The pid of the agent serving the data directory `dir` (DATA/agent.pid).
pub(crate) fn agent_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("agent.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

pub(crate) fn hosts(b: &Baton) -> Vec<HostView> {
    let o = b.cli(&["hosts", "--json"]);
    assert!(o.status.success(), "hosts: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

pub(crate) fn host(b: &Baton, name: &str) -> HostView {
    hosts(b).into_iter().find(|h| h.name == name).unwrap()
}

pub(crate) fn token(b: &Baton) -> String {
    let o = b.cli(&["host", "token", "--ttl", "10m"]);
    assert!(o.status.success(), "host token: {}", text(&o));
    let t = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(t.starts_with("BATON-JOIN-1."), "{t}");
    t
}

pub(crate) fn wait_state(b: &Baton, agents: &Agents, name: &str, state: &str) -> HostView {
    let ok = wait_until(Duration::from_secs(30), || host(b, name).state == state);
    assert!(
        ok,
        "{name} never became {state}: {:?}\nagent log:\n{}\nbaton log:\n{}",
        host(b, name),
        agents.log(name),
        b.log()
    );
    host(b, name)
}

/// The cluster events in the store: (kind, message).
fn cluster_events(db: &Path) -> Vec<(String, String)> {
    stored_events(db, "app = '@cluster'")
}

/// The events in the store at `db` that match the SQL condition `filter`, oldest first:
/// (kind, message).
pub(crate) fn stored_events(db: &Path, filter: &str) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT kind, message FROM events WHERE {filter} ORDER BY id"
        ))
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn secret_of(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

#[test]
fn agents_join_show_up_get_lost_and_come_back_and_bad_joins_are_refused() {
    let mut b = Baton::start(CLUSTER);
    let mut agents = Agents::new(&b);
    assert!(
        hosts(&b).iter().all(|h| h.state == "never joined"),
        "{:?}",
        hosts(&b)
    );

    let t1 = token(&b);
    agents.start(&b, "web-1", "127.0.0.2", Some(&t1));
    let web1 = wait_state(&b, &agents, "web-1", "connected");
    assert_eq!(
        web1.agent_version.as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(web1.address, "127.0.0.2");
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(agents.dir.join("web-1")), 0o700);
    assert_eq!(mode(agents.dir.join("web-1/key.pem")), 0o600);
    assert_eq!(mode(b.data_dir().join("cluster/ca.key")), 0o600);

    // The same token again: refused, recorded, and the host is not admitted.
    let o = agents.run_to_end(&b, "web-2", "127.0.0.3", &t1);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("already used by host \"web-1\""),
        "{}",
        text(&o)
    );
    assert_eq!(host(&b, "web-2").state, "never joined");

    // A wrong secret, a name the config does not have: refused with what to do.
    let t2 = token(&b);
    let forged = t2.replace(secret_of(&t2), &"0".repeat(64));
    let o = agents.run_to_end(&b, "web-2", "127.0.0.3", &forged);
    assert!(
        !o.status.success() && text(&o).contains("wrong join token secret"),
        "{}",
        text(&o)
    );
    let o = agents.run_to_end(&b, "web-9", "127.0.0.4", &t2);
    assert!(
        !o.status.success() && text(&o).contains("add [hosts.web-9] with address = \"127.0.0.4\""),
        "{}",
        text(&o)
    );

    // A controller whose CA is not the pinned one is not trusted (the agent pins a
    // fingerprint of another CA): the TLS handshake fails before anything is sent.
    let t3 = token(&b);
    let fingerprint = t3.split('.').nth(1).unwrap();
    let other_ca = t3.replace(fingerprint, &"ab".repeat(32));
    let o = agents.run_to_end(&b, "web-2", "127.0.0.3", &other_ca);
    assert!(
        !o.status.success() && text(&o).contains("does not contain the cluster CA"),
        "{}",
        text(&o)
    );

    // The unused t2 still joins web-2 (refused joins spend no token).
    agents.start(&b, "web-2", "127.0.0.3", Some(&t2));
    wait_state(&b, &agents, "web-2", "connected");
    let before = wait_state(&b, &agents, "web-1", "connected");

    // kill -9: lost; restarted without a token (it has its certificate): connected again,
    // with a higher generation.
    agents.kill9("web-1");
    let lost = wait_state(&b, &agents, "web-1", "lost");
    assert!(lost.last_seen.is_some());
    agents.start(&b, "web-1", "127.0.0.2", None);
    let back = wait_state(&b, &agents, "web-1", "connected");
    assert!(
        back.generation > before.generation,
        "{:?} then {:?}",
        before.generation,
        back.generation
    );
    assert_eq!(host(&b, "web-2").state, "connected");

    // A host that falls silent with its connection open (SIGSTOP) is lost after
    // `heartbeat_timeout`, and reconnects by itself once it runs again.
    let before = host(&b, "web-2");
    agents.signal("web-2", nix::sys::signal::Signal::SIGSTOP);
    wait_state(&b, &agents, "web-2", "lost");
    agents.signal("web-2", nix::sys::signal::Signal::SIGCONT);
    let back = wait_state(&b, &agents, "web-2", "connected");
    assert!(back.generation > before.generation);

    let o = b.cli(&["hosts"]);
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    for name in ["web-1", "web-2"] {
        let line = table.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(
            line.contains("connected") && line.contains(env!("CARGO_PKG_VERSION")),
            "{table}"
        );
    }

    // The controller restarts: the same CA from its data directory, so the hosts trust it
    // again and reconnect by themselves, each in a new session.
    let before = hosts(&b);
    b.stop();
    b.up();
    for h in before {
        let back = wait_state(&b, &agents, &h.name, "connected");
        assert!(back.generation > h.generation, "{h:?} then {back:?}");
    }

    // Every refusal the controller made is in the event log (the agent that did not trust the
    // controller sent nothing), and no secret is anywhere: events, log, API.
    let events = cluster_events(&b.data_dir().join("baton.db"));
    let refusals: Vec<&String> = events
        .iter()
        .filter(|(k, _)| k == "host_join_refused")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(refusals.len(), 3, "{events:?}");
    assert!(refusals[0].contains("already used"), "{refusals:?}");
    assert!(
        refusals[1].contains("wrong join token secret"),
        "{refusals:?}"
    );
    assert!(refusals[2].contains("web-9"), "{refusals:?}");
    assert!(
        events
            .iter()
            .any(|(k, m)| k == "host_lost" && m.contains("web-1")),
        "{events:?}"
    );
    let api = serde_json::to_string(&hosts(&b)).unwrap();
    for t in [&t1, &t2, &t3] {
        let secret = secret_of(t);
        assert!(!b.log().contains(secret), "a secret is in baton's log");
        assert!(
            !events.iter().any(|(_, m)| m.contains(secret)),
            "a secret is in the events"
        );
        assert!(!api.contains(secret));
    }
}

#[test]
fn the_cluster_port_speaks_only_tls() {
    let b = Baton::start(CLUSTER);
    let mut s = TcpStream::connect(b.cluster.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /v1/hosts HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let shown = String::from_utf8_lossy(&answer);
    assert!(
        !shown.contains("HTTP/") && !shown.contains("host"),
        "the cluster port answered plaintext: {shown:?}"
    );
    // What came back, if anything, is a TLS alert record (content type 21), never data.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
}

#[test]
fn one_address_cannot_take_every_cluster_connection() {
    let b = Baton::start(CLUSTER);
    let mut agents = Agents::new(&b);
    let cluster = b.cluster.unwrap();
    // Eight connections from 127.0.0.1 that never start their handshake hold all the places
    // of that address (the listener's MAX_PENDING_PER_IP): a ninth is closed at once...
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(cluster).unwrap())
        .collect();
    let mut ninth = TcpStream::connect(cluster).unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(ninth.read(&mut byte).unwrap(), 0, "the ninth is closed");
    // ...while the eight are still open (they have 10 s for their handshake),
    idle[0].set_nonblocking(true).unwrap();
    let still = idle[0].peek(&mut byte);
    assert!(
        matches!(&still, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{still:?}"
    );
    // ...and a host on another address joins and connects as ever.
    agents.start(&b, "web-1", "127.0.0.2", Some(&token(&b)));
    wait_state(&b, &agents, "web-1", "connected");
    assert!(
        b.log().contains("are not past their handshake"),
        "{}",
        b.log()
    );
    drop(idle);
    drop(agents);
}

#[test]
fn tokens_need_a_cluster_and_a_sane_ttl() {
    let b = Baton::start(CLUSTER);
    for ttl in ["0s", "169h", "soon"] {
        let o = b.cli(&["host", "token", "--ttl", ttl]);
        assert_eq!(o.status.code(), Some(2), "{ttl}: {}", text(&o));
        assert!(text(&o).contains("ttl"), "{}", text(&o));
    }
    drop(b);

    let b = Baton::start("[api]\nlisten = \"127.0.0.1:@API@\"\n");
    let o = b.cli(&["host", "token"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("add [cluster]"), "{}", text(&o));
    let o = b.cli(&["hosts"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no hosts"),
        "{}",
        text(&o)
    );
}
