//! A real HAProxy (Debian's) in front of two hosts' `host_port` listeners, checking each host's
//! `external_lb` health endpoint with an AWS load balancer's settings (every 5 s, 2 s timeout,
//! 3 failures): a rolling deployment goes host by host, each host leaving the load balancer
//! before anything on it stops, and `baton host drain` does the same; no request through
//! HAProxy fails (docs/design-notes.md, "Many hosts and containers").
//!
//! The rollout replaces each host's only instance with `max_surge = 0`: the host has no
//! instance for a moment, so a request the load balancer still sent there would fail. Only the
//! handshake keeps them away.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::deploys::assert_no_failures;
use crate::harness::{Baton, free_port, text, wait_until};
use crate::hosts::{Agents, TWO_HOSTS};

const CONFIG: &str = r#"
[api]
listen = "127.0.0.1:@API@"

[cluster]
listen = "127.0.0.1:@CLUSTER@"
heartbeat_timeout = "3s"

[hosts.web-1]
address = "127.0.0.2"

[hosts.web-2]
address = "127.0.0.3"

[apps.web]
listen = "127.0.0.1:@WEB@"
hosts = ["web-1", "web-2"]
instances = 2
host_port = @OTHER@
command = ["{artifact}/baton-demo"]

[apps.web.external_lb]
health_port = @HEALTH@
interval = "5s"
timeout = "2s"
fall = 3
rise = 2

[apps.web.rolling]
max_surge = 0
max_unavailable = 1

[apps.web.health]
interval = "200ms"
timeout = "2s"
healthy_threshold = 2
unhealthy_threshold = 2
deadline = "60s"

[apps.web.drain]
timeout = "10s"
stop_timeout = "5s"
"#;

/// HAProxy in the foreground, killed when dropped.
struct Haproxy {
    child: Child,
    socket: PathBuf,
    front: SocketAddr,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    /// Sends to both hosts' `host_port`, checking `health_port` as an ELB target group would.
    fn start(dir: &Path, host_port: u16, health_port: u16) -> Haproxy {
        let front: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let socket = dir.join("haproxy.sock");
        let cfg = format!(
            "global\n    stats socket {sock} level admin\n    maxconn 2000\n\
             defaults\n    mode http\n    retries 0\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind {front}\n    default_backend hosts\n\
             backend hosts\n    option httpchk GET /\n    timeout check 2s\n\
             \x20   default-server inter 5s fall 3 rise 2\n\
             \x20   server web-1 127.0.0.2:{host_port} check port {health_port}\n\
             \x20   server web-2 127.0.0.3:{host_port} check port {health_port}\n",
            sock = socket.display(),
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("HAProxy is needed (apt-get install haproxy; .ci/run installs it)");
        Haproxy {
            child,
            socket,
            front,
        }
    }

    /// The state HAProxy gives each server (`UP`, `DOWN`, `UP 1/2`...), by name.
    fn states(&self) -> Vec<(String, String)> {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return Vec::new();
        };
        if s.write_all(b"show stat\n").is_err() {
            return Vec::new();
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines()
            .filter(|l| l.starts_with("hosts,web-"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    f[1].to_string(),
                    f.get(17).copied().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn all_up(&self) -> bool {
        let states = self.states();
        states.len() == 2 && states.iter().all(|(_, s)| s == "UP")
    }
}

fn load_at(addr: SocketAddr) -> baton_demo::load::Load {
    baton_demo::load::Load::start(baton_demo::load::LoadConfig {
        keepalive_workers: 2,
        fresh_conn_workers: 1,
        rate_per_worker: Some(40.0),
        max_duration: Duration::from_secs(400),
        max_requests: 500_000,
        request_timeout: Duration::from_secs(10),
        ..baton_demo::load::LoadConfig::new(addr)
    })
}

/// The `lb_endpoint` events of the app's last deployment, in order.
async fn lb_events(b: &Baton) -> Vec<String> {
    let o = b.cli(&["history", "web", "--json", "--limit", "1"]);
    let last: Vec<baton_server::views::DeploymentView> =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let (code, detail) = b.api_get(&format!("/v1/deployments/{}", last[0].id)).await;
    assert_eq!(code, 200, "{detail}");
    detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "lb_endpoint")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_and_drain_through_haproxy_go_host_by_host_and_lose_no_request() {
    let health = free_port();
    let b = Baton::start(&CONFIG.replace("@HEALTH@", &health.to_string()));
    let host_port = b.apps["other"].port();
    let agents = Agents::join_all(&b, &TWO_HOSTS);
    b.release("web", "1.0.0", &[]);
    b.release("web", "1.1.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    let lb = Haproxy::start(b.dir.path(), host_port, health);
    // HAProxy takes both hosts in once their endpoints pass (rise 2 x 5 s).
    let up = wait_until(Duration::from_secs(60), || lb.all_up());
    assert!(up, "HAProxy servers: {:?}", lb.states());

    let load = load_at(lb.front);
    b.deploy_ok("web", "1.1.0", &["--strategy", "rolling"])
        .await;
    let report = load.stop().await;
    assert_no_failures(&report, "through HAProxy during the rolling deploy");
    assert!(
        report.stats.by_version.contains_key("1.1.0"),
        "{:?}",
        report.stats.by_version
    );
    // Each host left the load balancer and came back, one after the other.
    let events = lb_events(&b).await;
    let order: Vec<&str> = events
        .iter()
        .map(|m| {
            let host = if m.starts_with("web-1") {
                "web-1"
            } else {
                "web-2"
            };
            let how = if m.contains("fails (503)") {
                "out"
            } else {
                "in"
            };
            match (host, how) {
                ("web-1", "out") => "web-1 out",
                ("web-1", _) => "web-1 in",
                (_, "out") => "web-2 out",
                _ => "web-2 in",
            }
        })
        .collect();
    assert_eq!(
        order,
        ["web-1 out", "web-1 in", "web-2 out", "web-2 in"],
        "{events:#?}"
    );
    let up = wait_until(Duration::from_secs(60), || lb.all_up());
    assert!(up, "HAProxy servers after the rollout: {:?}", lb.states());

    // Maintenance: drain web-1 under load. Its endpoint fails first; its instance moves to
    // web-2 and leaves web-1 only once HAProxy stopped sending there.
    let load = load_at(lb.front);
    let o = b.cli(&["host", "drain", "web-1"]);
    assert!(o.status.success(), "{}", text(&o));
    let moved = wait_until(Duration::from_secs(90), || {
        let s = b.status("web");
        let on = |ip: &str| {
            s.instances
                .iter()
                .filter(|i| i.state == "healthy" && i.address.starts_with(ip))
                .count()
        };
        on("127.0.0.2:") == 0 && on("127.0.0.3:") == 2
    });
    assert!(moved, "{:?}\n{}", b.status("web").instances, b.log());
    let report = load.stop().await;
    assert_no_failures(&report, "through HAProxy while web-1 was drained");
    assert!(
        lb.states()
            .iter()
            .any(|(name, state)| name == "web-1" && state.starts_with("DOWN")),
        "{:?}",
        lb.states()
    );

    // Back: web-1 passes again and gets its share.
    let o = b.cli(&["host", "undrain", "web-1"]);
    assert!(o.status.success(), "{}", text(&o));
    let up = wait_until(Duration::from_secs(60), || lb.all_up());
    assert!(up, "HAProxy servers after undrain: {:?}", lb.states());
    drop(lb);
    drop(agents);
}
