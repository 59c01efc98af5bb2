//! One app across two hosts (agents on 127.0.0.2 and 127.0.0.3, a real `baton up`, real TLS):
//! instances spread evenly, rolling, blue-green and canary through the edge proxy lose no
//! request, a drained host's instances move off and come back, an instance killed on a host
//! is reported with its signal and restarted, a host cut off under load is replaced on the
//! other host; when it comes back, nothing stale serves and the spread evens out again; a
//! rollout holds while a host is lost and resumes when it is back (docs/design-notes.md,
//! "Many hosts and containers").

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use baton_server::views::AppStatus;
use nix::sys::signal::Signal;

use crate::deploys::{assert_no_failures, load};
use crate::harness::{Baton, text, wait_until};
use crate::hosts::{Agents, TWO_HOSTS, host, wait_state};

const FLEET: &str = r#"
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
instances = 4
command = ["{artifact}/baton-demo"]

[apps.web.health]
interval = "200ms"
timeout = "2s"
healthy_threshold = 2
unhealthy_threshold = 2
deadline = "60s"

[apps.web.drain]
timeout = "10s"
stop_timeout = "5s"

[apps.web.blue_green]
keep_previous = "0s"

[apps.web.canary]
steps = [ { weight = 25, pause = "1s" }, { weight = 100 } ]

[apps.web.analysis]
interval = "250ms"
"#;

/// A controller with two joined, connected hosts.
fn fleet() -> (Baton, Agents) {
    let b = Baton::start(FLEET);
    let agents = Agents::join_all(&b, &TWO_HOSTS);
    (b, agents)
}

/// Healthy instances of `release` per host address, from the status.
pub(crate) fn spread(s: &AppStatus, release: &str) -> BTreeMap<String, usize> {
    let mut by_host = BTreeMap::new();
    for i in s
        .instances
        .iter()
        .filter(|i| i.release == release && i.state == "healthy")
    {
        let ip = i.address.rsplit_once(':').unwrap().0.to_string();
        *by_host.entry(ip).or_default() += 1;
    }
    by_host
}

pub(crate) fn two_and_two() -> BTreeMap<String, usize> {
    [("127.0.0.2".to_string(), 2), ("127.0.0.3".to_string(), 2)].into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_blue_green_and_canary_across_two_hosts_lose_no_request() {
    let (b, agents) = fleet();
    for v in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] {
        b.release("web", v, &[]);
    }
    b.deploy_ok("web", "1.0.0", &[]).await;
    let s = b.status("web");
    assert_eq!(spread(&s, "1.0.0"), two_and_two(), "{s:?}");
    let shown = text(&b.cli(&["status", "web"]));
    assert!(
        shown.contains("on web-1") && shown.contains("on web-2"),
        "{shown}"
    );
    // The instances listen on their hosts' loopback, not on the hosts' addresses: other
    // machines reach them only through the hosts' tunnels (crate::tunnel has the rest).
    for i in &s.instances {
        let at: std::net::SocketAddr = i.address.parse().unwrap();
        assert!(TcpStream::connect(at).is_err(), "{} at {}", i.id, i.address);
        assert!(
            TcpStream::connect(("127.0.0.1", at.port())).is_ok(),
            "{} on loopback",
            i.id
        );
        assert!(["web-1", "web-2"].contains(&i.host.as_str()), "{i:?}");
    }

    for (version, strategy) in [
        ("1.1.0", "rolling"),
        ("1.2.0", "blue-green"),
        ("1.3.0", "canary"),
    ] {
        let l = load(&b);
        b.deploy_ok("web", version, &["--strategy", strategy]).await;
        let report = l.stop().await;
        assert_no_failures(&report, strategy);
        assert!(report.stats.by_version.contains_key(version), "{strategy}");
        let s = b.status("web");
        assert_eq!(s.release.as_deref(), Some(version));
        assert_eq!(spread(&s, version), two_and_two(), "{strategy}: {s:?}");
    }
    // `baton hosts` counts what runs on each host, once the previous release has left.
    let counted = wait_until(Duration::from_secs(30), || {
        [host(&b, "web-1"), host(&b, "web-2")]
            .iter()
            .all(|h| h.instances == 2)
    });
    assert!(counted, "{:?}", [host(&b, "web-1"), host(&b, "web-2")]);

    // Maintenance: drain web-2 (its instances move to web-1, new ones first), then undrain
    // it (the spread evens out again), all under load without a failed request.
    let l = load(&b);
    let o = b.cli(&["host", "drain", "web-2"]);
    assert!(o.status.success(), "drain: {}", text(&o));
    let all_on_web1 = [("127.0.0.2".to_string(), 4)].into();
    let moved = wait_until(Duration::from_secs(60), || {
        let s = b.status("web");
        spread(&s, "1.3.0") == all_on_web1 && s.instances.iter().all(|i| i.host == "web-1")
    });
    assert!(moved, "{:?}", b.status("web"));
    assert!(host(&b, "web-2").drained);
    let o = b.cli(&["host", "undrain", "web-2"]);
    assert!(o.status.success(), "undrain: {}", text(&o));
    let back = wait_until(Duration::from_secs(90), || {
        let s = b.status("web");
        spread(&s, "1.3.0") == two_and_two() && s.instances.len() == 4
    });
    assert!(back, "{:?}", b.status("web"));
    let report = l.stop().await;
    assert_no_failures(&report, "drain and undrain");
    let o = b.cli(&["host", "drain", "web-9"]);
    assert!(
        !o.status.success() && text(&o).contains("web-9"),
        "{}",
        text(&o)
    );
    drop(agents);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_off_under_load_is_replaced_and_serves_nothing_stale_when_back() {
    let (b, agents) = fleet();
    b.release("web", "1.0.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;

    // An instance on web-1 killed from outside: its agent reports how it ended, and the
    // event says so; it is restarted there.
    let victim = b
        .status("web")
        .instances
        .into_iter()
        .find(|i| i.host == "web-1")
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(victim.pid.unwrap() as i32);
    nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
    let db = b.data_dir().join("baton.db");
    let wanted = format!(
        "{} (1.0.0) pid {} on host web-1 killed by signal 9;",
        victim.id,
        victim.pid.unwrap()
    );
    let reported = wait_until(Duration::from_secs(30), || {
        exit_events(&db).iter().any(|m| m.starts_with(&wanted))
    });
    assert!(reported, "{wanted:?} in {:?}", exit_events(&db));
    let restarted = wait_until(Duration::from_secs(30), || {
        let s = b.status("web");
        s.instances
            .iter()
            .filter(|i| i.state == "healthy" && i.in_split)
            .count()
            == 4
    });
    assert!(restarted, "{:?}", b.status("web"));
    let before = b.status("web");
    let on_web2: Vec<(String, u32)> = before
        .instances
        .iter()
        .filter(|i| i.host == "web-2")
        .map(|i| (i.id.clone(), i.pid.unwrap()))
        .collect();
    assert_eq!(on_web2.len(), 2, "{before:?}");

    // web-2's agent stops answering (its instances keep running, as on a host cut off from
    // the controller): after the heartbeat timeout it is lost and replaced on web-1.
    let l = load(&b);
    agents.signal("web-2", Signal::SIGSTOP);
    wait_state(&b, &agents, "web-2", "lost");
    let replaced = wait_until(Duration::from_secs(60), || {
        spread(&b.status("web"), "1.0.0").get("127.0.0.2") == Some(&4)
    });
    assert!(replaced, "{:?}\n{}", b.status("web"), b.log());
    let report = l.stop().await;
    // The instances on web-2 never failed: the edge kept routing to them until they left
    // the split, and they finished what they had.
    assert_no_failures(&report, "host cut off");

    // Back: the agent reconnects, and the controller, which replaced them, stops its
    // instances there.
    agents.signal("web-2", Signal::SIGCONT);
    wait_state(&b, &agents, "web-2", "connected");
    let gone = wait_until(Duration::from_secs(30), || {
        on_web2
            .iter()
            .all(|(_, pid)| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    });
    assert!(
        gone,
        "stale instances still run on web-2: {on_web2:?}\nagent log:\n{}",
        agents.log("web-2")
    );
    // The spread evens out again with new instances, never with the stale ones.
    let even = wait_until(Duration::from_secs(90), || {
        let s = b.status("web");
        spread(&s, "1.0.0") == two_and_two() && s.instances.len() == 4
    });
    assert!(even, "{:?}", b.status("web"));
    let s = b.status("web");
    assert!(
        s.instances
            .iter()
            .all(|i| !on_web2.iter().any(|(id, _)| *id == i.id)),
        "a stale instance serves again: {s:?}"
    );
    let o = b.cli(&["hosts"]);
    assert!(o.status.success(), "{}", text(&o));
    drop(agents);
}

/// The messages of `instance_exited` events, oldest first.
fn exit_events(db: &std::path::Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT message FROM events WHERE kind = 'instance_exited' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The active deployment's events (kind, message), oldest first.
async fn deployment_events(b: &Baton, id: i64) -> Vec<(String, String)> {
    let (code, detail) = b.api_get(&format!("/v1/deployments/{id}")).await;
    assert_eq!(code, 200, "{detail}");
    detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap().to_string();
            (field("kind"), field("message"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deployment_holds_while_a_host_is_lost_and_resumes_when_it_is_back() {
    let (b, agents) = fleet();
    b.release("web", "1.0.0", &[]);
    // Each instance of 1.1.0 takes 4 s to listen: four of them, one at a time, outlast the
    // ~6 s it takes to declare web-2 lost, so the rollout is in progress then.
    b.release("web", "1.1.0", &["--startup-ms", "4000"]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    let before: Vec<String> = b
        .status("web")
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();

    let l = load(&b);
    let o = b.cli_async(&["deploy", "web", "1.1.0"]).await;
    assert!(o.status.success(), "{}", text(&o));
    agents.signal("web-2", Signal::SIGSTOP);
    wait_state(&b, &agents, "web-2", "lost");

    // It holds, says so once, and `baton status` shows it.
    let held = wait_until(Duration::from_secs(30), || {
        b.status("web")
            .deployment
            .is_some_and(|d| d.hold.lost == ["web-2"])
    });
    assert!(held, "{:?}\n{}", b.status("web"), b.log());
    let d = b.status("web").deployment.unwrap();
    assert_eq!(d.phase, "progressing");
    let shown = text(&b.cli(&["status", "web"]));
    assert!(shown.contains("holding: host web-2 is lost"), "{shown}");
    let events = deployment_events(&b, d.id).await;
    let holds: Vec<&(String, String)> = events
        .iter()
        .filter(|(k, _)| k == "deployment_held")
        .collect();
    assert_eq!(holds.len(), 1, "{events:?}");
    assert!(holds[0].1.contains("host web-2 is lost"), "{events:?}");

    // Meanwhile what web-2 took of the serving release is replaced on web-1: four instances
    // serve there, new 1.0.0 ones among them, and the rollout takes no step.
    let serving_on_web1 = wait_until(Duration::from_secs(30), || {
        let s = b.status("web");
        let serving = s
            .instances
            .iter()
            .filter(|i| i.state == "healthy" && i.in_split);
        serving.clone().count() == 4 && serving.clone().all(|i| i.host == "web-1")
    });
    assert!(serving_on_web1, "{:?}", b.status("web"));
    let s = b.status("web");
    assert!(
        s.instances
            .iter()
            .any(|i| i.release == "1.0.0" && !before.contains(&i.id)),
        "no replacement of 1.0.0 started: {s:?}"
    );
    let still = s.deployment.as_ref().unwrap();
    assert_eq!(
        (still.step, still.hold.lost.clone()),
        (d.step, d.hold.lost.clone())
    );
    assert!(
        s.instances
            .iter()
            .filter(|i| i.release == "1.1.0" && i.in_split)
            .count()
            <= d.step as usize,
        "no new instance joined the split while it held: {s:?}"
    );

    // web-2 is back: the deployment resumes and succeeds.
    agents.signal("web-2", Signal::SIGCONT);
    wait_state(&b, &agents, "web-2", "connected");
    let done = wait_until(Duration::from_secs(120), || {
        let s = b.status("web");
        s.deployment.is_none() && s.release.as_deref() == Some("1.1.0")
    });
    assert!(done, "{:?}\n{}", b.status("web"), b.log());
    let report = l.stop().await;
    // SIGSTOP leaves web-2's instances running: the edge kept routing to them until they left
    // the split, and they finished what they had, so nothing failed.
    assert_no_failures(&report, "a host lost during a rollout");
    let events = deployment_events(&b, d.id).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        events
            .iter()
            .any(|(k, m)| k == "deployment_resumed" && m.contains("host web-2 is back")),
        "{events:?}"
    );
    let at = |kind: &str| kinds.iter().position(|k| *k == kind);
    assert!(
        at("deployment_held") < at("deployment_resumed") && at("deployment_succeeded").is_some(),
        "{events:?}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "deployment_held").count(), 1);
    drop(agents);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_leaves_the_hosts_serving_and_re_adopts_them() {
    let (mut b, agents) = fleet();
    b.release("web", "1.0.0", &[]);
    b.release("web", "1.1.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    let before: Vec<(String, Option<u32>)> = b
        .status("web")
        .instances
        .iter()
        .map(|i| (i.id.clone(), i.pid))
        .collect();

    // The controller dies (kill -9): the instances on the hosts keep running, and answer.
    b.kill9();
    for (id, pid) in &before {
        let pid = pid.expect("running instances have a pid");
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{id} died with the controller"
        );
    }
    b.up();
    // Re-adopted, not restarted or duplicated: the same instances with the same pids, and
    // the hosts reconnect by themselves.
    wait_state(&b, &agents, "web-1", "connected");
    wait_state(&b, &agents, "web-2", "connected");
    let healthy = wait_until(Duration::from_secs(30), || {
        let s = b.status("web");
        s.instances.len() == 4
            && s.instances
                .iter()
                .all(|i| i.state == "healthy" && i.in_split)
    });
    assert!(healthy, "{:?}\n{}", b.status("web"), b.log());
    let mut after: Vec<(String, Option<u32>)> = b
        .status("web")
        .instances
        .iter()
        .map(|i| (i.id.clone(), i.pid))
        .collect();
    after.sort();
    let mut expected = before.clone();
    expected.sort();
    assert_eq!(after, expected, "the same instances, the same processes");

    // A rollout started now runs across the hosts as before, under load.
    let l = load(&b);
    b.deploy_ok("web", "1.1.0", &[]).await;
    let report = l.stop().await;
    assert_no_failures(&report, "rolling after a controller restart");
    assert_eq!(spread(&b.status("web"), "1.1.0"), two_and_two());
    drop(agents);
}

/// `baton restart` with every instance on another host: the new controller reaches them
/// through their hosts' tunnels at once, before the agents' sessions are back (it keeps where
/// each tunnel listens in its store), so no request fails while the sessions reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_restarts_under_load_reach_the_hosts_instances_at_once() {
    let (b, agents) = fleet();
    b.release("web", "1.0.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    let pids = |b: &Baton| {
        let mut p: Vec<Option<u32>> = b.status("web").instances.iter().map(|i| i.pid).collect();
        p.sort();
        p
    };
    let before = pids(&b);
    let l = load(&b);
    for _ in 0..3 {
        crate::restart::restart_ok(&b).await;
        wait_state(&b, &agents, "web-1", "connected");
        wait_state(&b, &agents, "web-2", "connected");
    }
    let report = l.stop().await;
    assert_no_failures(
        &report,
        "3 controller restarts, every instance on another host",
    );
    assert_eq!(pids(&b), before, "re-adopted, never restarted");
    drop(agents);
}

#[test]
fn the_many_hosts_demo_ends_with_no_failed_request() {
    // Alone, as every test that puts load on the machine.
    let _serial = crate::harness::serial();
    let o = std::process::Command::new(crate::harness::BATON)
        .args(["demo", "--hosts", "2"])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("failed requests:  0"), "{out}");
    assert!(out.contains("host-2 lost after"), "{out}");
    assert!(
        out.contains("while a host died:") && out.contains("(in flight on the killed host)"),
        "{out}"
    );
}

/// The same fleet with `host_port`: each host's agent listens on its own address.
fn host_port_fleet() -> (Baton, Agents, u16) {
    let template = FLEET.replace(
        "hosts = [\"web-1\", \"web-2\"]",
        "hosts = [\"web-1\", \"web-2\"]\nhost_port = @OTHER@",
    );
    let b = Baton::start(&template);
    let port = b.apps["other"].port();
    let agents = Agents::join_all(&b, &TWO_HOSTS);
    (b, agents, port)
}

fn load_at(addr: std::net::SocketAddr) -> baton_demo::load::Load {
    baton_demo::load::Load::start(baton_demo::load::LoadConfig {
        keepalive_workers: 2,
        fresh_conn_workers: 1,
        rate_per_worker: Some(40.0),
        max_duration: Duration::from_secs(300),
        max_requests: 500_000,
        request_timeout: Duration::from_secs(10),
        ..baton_demo::load::LoadConfig::new(addr)
    })
}

/// One request to `addr`: the answering release, or why it failed.
fn version_at(addr: std::net::SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(out);
    }
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    Ok(v["version"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_serves_on_host_port_through_a_rollout_and_without_the_controller() {
    let (mut b, mut agents, port) = host_port_fleet();
    b.release("web", "1.0.0", &[]);
    b.release("web", "1.1.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    let hosts: Vec<std::net::SocketAddr> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| format!("{ip}:{port}").parse().unwrap())
        .collect();
    for addr in &hosts {
        let ok = wait_until(Duration::from_secs(30), || {
            version_at(*addr).is_ok_and(|v| v == "1.0.0")
        });
        assert!(ok, "{addr}: {:?}", version_at(*addr));
    }

    // A rolling update under load on each host's listener (as an external load balancer
    // would send it) and on the edge: no request fails anywhere.
    let loads: Vec<_> = hosts.iter().map(|a| load_at(*a)).collect();
    let edge = load(&b);
    b.deploy_ok("web", "1.1.0", &["--strategy", "rolling"])
        .await;
    assert_no_failures(&edge.stop().await, "edge");
    for (l, addr) in loads.into_iter().zip(&hosts) {
        let report = l.stop().await;
        assert_no_failures(&report, &format!("host_port {addr}"));
    }
    for addr in &hosts {
        let only_new = wait_until(Duration::from_secs(10), || {
            version_at(*addr).is_ok_and(|v| v == "1.1.0")
        });
        assert!(only_new, "{addr}: {:?}", version_at(*addr));
    }

    // The controller dies: the hosts keep serving with the split they had (docs/DESIGN.md I8).
    b.kill9();
    let loads: Vec<_> = hosts.iter().map(|a| load_at(*a)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (l, addr) in loads.into_iter().zip(&hosts) {
        let report = l.stop().await;
        assert_no_failures(&report, &format!("host_port {addr} without the controller"));
        assert_eq!(
            report.stats.by_version.keys().cloned().collect::<Vec<_>>(),
            ["1.1.0"]
        );
    }

    // With the controller still down, web-1's agent is killed and restarted: it serves the
    // split it kept, with the instances it re-adopted, without waiting for the controller.
    agents.kill9("web-1");
    let down = version_at(hosts[0]);
    assert!(
        down.is_err(),
        "nothing listens while the agent is dead: {down:?}"
    );
    agents.start(&b, "web-1", "127.0.0.2", None);
    let back = wait_until(Duration::from_secs(30), || {
        version_at(hosts[0]).is_ok_and(|v| v == "1.1.0")
    });
    assert!(back, "{:?}\n{}", version_at(hosts[0]), agents.log("web-1"));
    b.up();
    drop(agents);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_restarted_by_sigusr2_under_load_lose_no_request_and_keep_their_instances() {
    let (b, agents, port) = host_port_fleet();
    b.release("web", "1.0.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    let addr: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let serving = wait_until(Duration::from_secs(30), || {
        version_at(addr).is_ok_and(|v| v == "1.0.0")
    });
    assert!(serving, "{addr}: {:?}", version_at(addr));
    let pids = |b: &Baton| {
        let mut p: Vec<u32> = b
            .status("web")
            .instances
            .iter()
            .filter_map(|i| i.pid)
            .collect();
        p.sort_unstable();
        p
    };
    let before = pids(&b);
    assert_eq!(before.len(), 4, "{:?}", b.status("web"));

    let host_load = load_at(addr);
    let edge = load(&b);
    let dir = agents.dir.join("web-1");
    // Load before, between and after the restarts (each takes well under a second).
    let served = |n: u64| {
        let at = host_load.snapshot().sent + n;
        wait_until(Duration::from_secs(30), || host_load.snapshot().sent >= at)
    };
    assert!(served(100));
    for _ in 0..3 {
        let old = crate::hosts::agent_pid(&dir).expect("DATA/agent.pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(old as i32), Signal::SIGUSR2).unwrap();
        let handed_over = wait_until(Duration::from_secs(30), || {
            crate::hosts::agent_pid(&dir).is_some_and(|p| p != old) && !crate::harness::alive(old)
        });
        assert!(
            handed_over,
            "agent {old} did not hand over\n{}",
            agents.log("web-1")
        );
        wait_state(&b, &agents, "web-1", "connected");
        assert!(served(50));
    }
    assert_no_failures(&host_load.stop().await, "host_port across 3 agent restarts");
    assert_no_failures(&edge.stop().await, "edge across 3 agent restarts");
    assert_eq!(pids(&b), before, "instances re-adopted, never restarted");
}

/// Server-sent events through the edge and another host's tunnel go on across restarts of
/// every agent (SIGUSR2): the old agent keeps splicing until the edge closes the connection,
/// and the edge reuses none of the old tunnel's connections once the new session is up, so
/// a stream that pauses mid-body is not cut, and no other request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_goes_on_across_agent_restarts() {
    use std::io::{Read, Write};
    let (b, agents) = fleet();
    b.release("web", "1.0.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    let edge = load(&b);
    let mut stream = TcpStream::connect(b.web()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /events?n=40&ms=250 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .unwrap();
    // The reader runs beside the restarts and hands back everything it read.
    let (first, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let (mut got, mut buf, mut told) = (Vec::new(), [0u8; 4096], false);
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err((e, got)),
            }
            if !told && got.windows(5).any(|w| w == b"id: 1") {
                told = true;
                let _ = first.send(());
            }
        }
    });
    first_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the first event");
    let mut olds = Vec::new();
    for name in ["web-1", "web-2"] {
        let dir = agents.dir.join(name);
        let old = crate::hosts::agent_pid(&dir).expect("DATA/agent.pid");
        olds.push((name, old));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(old as i32), Signal::SIGUSR2).unwrap();
        let handed_over = wait_until(Duration::from_secs(30), || {
            crate::hosts::agent_pid(&dir).is_some_and(|p| p != old)
        });
        assert!(
            handed_over,
            "agent {old} did not hand over\n{}",
            agents.log(name)
        );
        wait_state(&b, &agents, name, "connected");
    }
    let got = reader.join().unwrap();
    let body = match &got {
        Ok(body) => String::from_utf8_lossy(body).into_owned(),
        Err((e, body)) => panic!("the stream broke: {e}\n{}", String::from_utf8_lossy(body)),
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let ids: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    let expected: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected, "every event, in order, once:\n{body}");
    // Every old agent exits once the edge has closed its connections, while the load goes on:
    // pooled connections in use never idle out, so only the tunnel epoch closes them (well
    // before the pool's 60 s idle timeout or the agent's 5 min cap).
    for (name, old) in olds {
        let gone = wait_until(Duration::from_secs(20), || !crate::harness::alive(old));
        assert!(
            gone,
            "the old agent {old} of {name} is still running\n{}",
            agents.log(name)
        );
    }
    assert_no_failures(&edge.stop().await, "edge across agent restarts");
    drop(agents);
}

/// A breaker on a route of an app with `host_port`: each host's listener runs it as the edge
/// does (opens within one window, serves the fallback, leaves other routes alone, closes
/// after recovery), and each transition reaches the controller as an event naming the host.
/// The host's listener adds the `X-Baton-Flags` header as the edge does, and follows a live
/// flag change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_listener_runs_the_apps_breakers_and_reports_their_transitions() {
    let template = FLEET.replace(
        "hosts = [\"web-1\", \"web-2\"]",
        "hosts = [\"web-1\", \"web-2\"]\nhost_port = @OTHER@\n\
         env = { BATON_DEMO_FAULT_FILE = \"@DIR@/fault\" }",
    ) + r#"
[[apps.web.breakers]]
name = "whoami"
path = "/whoami"
window = "2s"
min_requests = 10
max_error_rate = 0.5
cooldown = "1s"
probes = 3

[apps.web.breakers.fallback]
status = 503
body = "later"

[apps.web.flags.new-checkout]
percent = 100
"#;
    let b = Baton::start(&template);
    let agents = Agents::join_all(&b, &TWO_HOSTS);
    b.release("web", "1.0.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    let addr: std::net::SocketAddr = format!("127.0.0.2:{}", b.apps["other"].port())
        .parse()
        .unwrap();
    let get = |path: &'static str| async move { http_get(addr, path).await };
    let serving = wait_until(Duration::from_secs(30), || version_at(addr).is_ok());
    assert!(serving, "{addr}: {:?}", version_at(addr));
    for _ in 0..20 {
        assert_eq!(get("/whoami").await.0, 200);
    }
    // The host's listener adds the flags header too, and follows a live change.
    let (status, headers) = get("/headers").await;
    assert!(
        status == 200 && headers.contains("x-baton-flags: new-checkout=on"),
        "{status} {headers}"
    );
    let o = b.cli(&["flag", "set", "web", "new-checkout", "--off"]);
    assert!(o.status.success(), "{}", text(&o));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !get("/headers")
        .await
        .1
        .contains("x-baton-flags: new-checkout=off")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the host kept the old flag"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The route starts failing on every instance: web-1's listener opens its breaker.
    std::fs::write(b.dir.path().join("fault"), "/whoami").unwrap();
    let mut errors = 0;
    let fallback = loop {
        let (status, body) = get("/whoami").await;
        if status == 500 {
            errors += 1;
            assert!(errors <= 21, "still not open after {errors} errors");
            continue;
        }
        break (status, body);
    };
    assert!((10..=21).contains(&errors), "opened after {errors} errors");
    assert_eq!(fallback, (503, "later".to_string()));
    assert_eq!(get("/").await.0, 200, "other routes are untouched");
    let reported = |kind: &'static str| {
        let db = b.data_dir().join("baton.db");
        move || {
            breaker_events(&db)
                .iter()
                .any(|(k, m)| k == kind && m.starts_with("on host web-1: breaker whoami"))
        }
    };
    let opened = wait_until(Duration::from_secs(30), reported("breaker_opened"));
    assert!(
        opened,
        "{:?}",
        breaker_events(&b.data_dir().join("baton.db"))
    );

    // Recovered: after the cooldown its probes pass and it closes.
    std::fs::remove_file(b.dir.path().join("fault")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while get("/whoami").await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(get("/whoami").await.0, 200);
    }
    let closed = wait_until(Duration::from_secs(30), reported("breaker_closed"));
    assert!(
        closed,
        "{:?}",
        breaker_events(&b.data_dir().join("baton.db"))
    );
    drop(agents);
}

/// GETs `path` at `addr` on a connection of its own: the status and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The breaker events in the store: (kind, message).
fn breaker_events(db: &std::path::Path) -> Vec<(String, String)> {
    crate::hosts::stored_events(db, "kind LIKE 'breaker_%'")
}
