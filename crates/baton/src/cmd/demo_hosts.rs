//! `baton demo --hosts N`: the many-hosts story on loopback aliases (127.0.0.2 ...), which
//! need no root. Baton runs in this process with a cluster; N real `baton agent` processes
//! join it as hosts; one app spreads over them, with a listener on every host (`host_port`)
//! and a health endpoint for a load balancer (`external_lb`). Under steady load it rolls a
//! release host by host, then kills one host (its agent and its instances, with SIGKILL) and
//! shows the instances replaced on the others, drains it (a deployment would hold for a lost
//! host), and rolls again on what is left. The requests in flight
//! on the killed host are counted apart; every other failure fails the demo.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_demo::DemoOptions;
use baton_demo::load::{Load, LoadConfig, LoadReport};
use baton_server::cluster::view::{DrainView, HostView, TokenCreated, TokenRequest};
use baton_server::views::{AppStatus, ReleaseCreated};

use super::demo::{InProcess, Switch, start_in_process, step};
use crate::client::Client;
use crate::exit::{Failure, Result};

/// The most hosts the demo runs (127.0.0.2 to 127.0.0.9).
pub const MAX_HOSTS: u8 = 8;

/// Two ports free on the loopback for the hosts' listeners and load-balancer endpoints
/// (picked by the kernel on 127.0.0.1; the aliases' ports are as free).
fn free_ports() -> Result<(u16, u16)> {
    let bind =
        || std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Failure::failed(e.to_string()));
    let (a, b) = (bind()?, bind()?);
    let port = |l: &std::net::TcpListener| {
        l.local_addr()
            .map(|a| a.port())
            .map_err(|e| Failure::failed(e.to_string()))
    };
    Ok((port(&a)?, port(&b)?))
}

fn config(hosts: u8, host_port: u16, health_port: u16) -> String {
    let mut c = String::from(
        "[api]\nlisten = \"127.0.0.1:0\"\n\n[cluster]\nlisten = \"127.0.0.1:0\"\nheartbeat_timeout = \"2s\"\n",
    );
    let names: Vec<String> = (1..=hosts).map(|h| format!("\"host-{h}\"")).collect();
    for h in 1..=hosts {
        c.push_str(&format!(
            "\n[hosts.host-{h}]\naddress = \"127.0.0.{}\"\n",
            h + 1
        ));
    }
    c.push_str(&format!(
        r#"
[apps.web]
listen = "127.0.0.1:0"
hosts = [{}]
instances = {}
command = ["{{artifact}}/baton-demo"]
strategy = "rolling"
host_port = {host_port}

# Each host also answers a load balancer's health checks: rolling goes host by host, each
# host out of the load balancer while its instances change (fast settings: no real load
# balancer runs in the demo).
[apps.web.external_lb]
health_port = {health_port}
interval = "1s"
timeout = "500ms"
fall = 2
rise = 1
quiet = "1s"

[apps.web.health]
interval = "250ms"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 2
deadline = "30s"

[apps.web.drain]
timeout = "10s"
stop_timeout = "5s"
"#,
        names.join(", "),
        2 * u32::from(hosts)
    ));
    c
}

/// The agents, killed (with their instances) when the demo ends, however it ends.
struct Agents {
    dir: PathBuf,
    children: Vec<(u8, Child)>,
}

impl Agents {
    fn data_dir(&self, host: u8) -> PathBuf {
        self.dir.join(format!("host-{host}"))
    }

    /// A host dies: its agent and every instance on it, at once.
    fn kill_host(&mut self, host: u8) {
        if let Some(i) = self.children.iter().position(|(h, _)| *h == host) {
            let (_, mut child) = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
        baton_runtime::kill_pid_files(&self.data_dir(host).join("run"));
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        let hosts: Vec<u8> = self.children.iter().map(|(h, _)| *h).collect();
        for h in hosts {
            self.kill_host(h);
        }
    }
}

pub async fn run(hosts: u8) -> Result<()> {
    if !(2..=MAX_HOSTS).contains(&hosts) {
        return Err(Failure::usage(format!(
            "--hosts {hosts}: use 2 to {MAX_HOSTS} (they run on 127.0.0.2 to 127.0.0.{})",
            MAX_HOSTS + 1
        )));
    }
    super::init_logs("error");
    let (host_port, health_port) = free_ports()?;
    let tmp = tempfile::Builder::new()
        .prefix("baton-demo-hosts-")
        .tempdir()
        .map_err(|e| Failure::failed(e.to_string()))?;
    let InProcess {
        ready,
        stop: stop_tx,
        daemon,
    } = start_in_process(tmp.path(), &config(hosts, host_port, health_port)).await?;
    let proxy = ready.apps["web@production"];
    let cluster = ready.cluster.expect("the demo config has [cluster]");
    println!("baton is up: edge proxy for `web` on http://{proxy}, agents join at {cluster}");
    let client = Client::new(ready.api, ready.token.clone());
    let mut agents = Agents {
        dir: tmp.path().join("agents"),
        children: Vec::new(),
    };
    let story = story(&client, tmp.path(), proxy, cluster, hosts, &mut agents);
    let result = tokio::select! {
        r = story => r,
        _ = super::interrupted() => Err(Failure::failed("interrupted: stopping baton, the agents and every instance")),
    };
    let _ = stop_tx.send(());
    let _ = daemon.await;
    drop(agents);
    baton_runtime::kill_pid_files(&ready.data_dir.join("run"));
    result
}

async fn story(
    client: &Client,
    dir: &Path,
    proxy: std::net::SocketAddr,
    cluster: std::net::SocketAddr,
    hosts: u8,
    agents: &mut Agents,
) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Failure::failed(e.to_string()))?;
    for h in 1..=hosts {
        join(client, &exe, cluster, h, agents).await?;
    }
    wait_for(
        client,
        "every host to connect",
        Duration::from_secs(30),
        |s| s.1.iter().all(|h| h.state == "connected"),
    )
    .await?;
    println!("{hosts} hosts joined: 127.0.0.2 to 127.0.0.{}", hosts + 1);
    for version in ["1.0.0", "1.1.0", "1.3.0"] {
        store_release(client, &exe, dir, version).await?;
    }

    let n = 2 * u32::from(hosts);
    let mut switches = Vec::new();
    println!("\n== deploy 1.0.0: {n} instances, 2 on each host");
    let deploy = "/v1/apps/web/deployments";
    switches.push(step(client, "deploy 1.0.0", deploy, "1.0.0", None).await?);
    print_spread(client).await?;

    let load = start_load(proxy);
    println!(
        "\nload: 6 clients (4 keep-alive, 2 new connection per request) through the edge proxy"
    );
    println!("\n== rolling update 1.0.0 -> 1.1.0, host by host");
    switches.push(
        step(
            client,
            "rolling 1.0.0 -> 1.1.0",
            deploy,
            "1.1.0",
            Some("rolling"),
        )
        .await?,
    );
    let rolling = load.stop().await;
    print_spread(client).await?;

    let victim = hosts;
    println!("\n== host-{victim} dies: its agent and its instances are killed (SIGKILL)");
    let load_started = Instant::now();
    let load = start_load(proxy);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    agents.kill_host(victim);
    let lost_name = format!("host-{victim}");
    wait_for(
        client,
        "the host to be lost",
        Duration::from_secs(30),
        |s| s.1.iter().any(|h| h.name == lost_name && h.state == "lost"),
    )
    .await?;
    let lost_after = killed.elapsed();
    wait_for(
        client,
        "replacements on the other hosts",
        Duration::from_secs(60),
        |s| {
            let healthy =
                s.0.instances
                    .iter()
                    .filter(|i| i.state == "healthy")
                    .count();
            healthy == n as usize && s.0.instances.iter().all(|i| i.host != lost_name)
        },
    )
    .await?;
    let whole_after = killed.elapsed();
    let death = load.stop().await;
    let kill_at = killed.duration_since(load_started);
    if let Some(last) = death.failures().iter().map(|f| f.finished).max() {
        println!(
            "the last failed request ended {:.2}s after the kill (the edge's health checks: every 250 ms, out after 2 failures)",
            last.saturating_sub(kill_at).as_secs_f64()
        );
    }
    println!(
        "host-{victim} lost after {:.1}s (its session closed); its instances fenced after the 2 s heartbeat timeout; {n} instances healthy again on the other hosts after {:.1}s",
        lost_after.as_secs_f64(),
        whole_after.as_secs_f64()
    );
    print_spread(client).await?;

    // A deployment holds while a host of its app is lost; this one will not come back, and
    // the operator says so by draining it.
    let _: DrainView = client
        .post_json(
            &format!("/v1/hosts/{lost_name}/drain"),
            &serde_json::json!({}),
        )
        .await?;
    println!(
        "\n`baton host drain {lost_name}`: it will not come back, so deployments do not hold for it"
    );
    let load = start_load(proxy);
    println!(
        "\n== rolling update 1.1.0 -> 1.3.0 on the {} hosts left",
        hosts - 1
    );
    switches.push(
        step(
            client,
            "rolling 1.1.0 -> 1.3.0",
            deploy,
            "1.3.0",
            Some("rolling"),
        )
        .await?,
    );
    let after = load.stop().await;
    print_spread(client).await?;

    summary(&switches, &rolling, &death, &after)
}

fn summary(
    switches: &[Switch],
    rolling: &LoadReport,
    death: &LoadReport,
    after: &LoadReport,
) -> Result<()> {
    println!("\n== summary");
    println!("{:<34} {:<12} {:>9}", "switch", "outcome", "took");
    for s in switches {
        println!(
            "{:<34} {:<12} {:>8.2}s",
            s.what,
            s.outcome,
            s.took.as_secs_f64()
        );
    }
    let sent = rolling.stats.sent + after.stats.sent;
    let failed = rolling.stats.failed + after.stats.failed;
    println!();
    println!("requests sent:    {sent} (the two rolling updates across hosts)");
    println!("failed requests:  {failed}");
    println!(
        "while a host died: {} sent, {} failed (in flight on the killed host)",
        death.stats.sent, death.stats.failed
    );
    if failed > 0 {
        return Err(Failure::failed(format!("{failed} requests failed")));
    }
    Ok(())
}

fn start_load(proxy: std::net::SocketAddr) -> Load {
    Load::start(LoadConfig {
        keepalive_workers: 4,
        fresh_conn_workers: 2,
        rate_per_worker: Some(50.0),
        max_duration: Duration::from_secs(600),
        max_requests: 1_000_000,
        ..LoadConfig::new(proxy)
    })
}

async fn join(
    client: &Client,
    exe: &Path,
    cluster: std::net::SocketAddr,
    host: u8,
    agents: &mut Agents,
) -> Result<()> {
    let req = TokenRequest {
        ttl: Some("10m".into()),
    };
    let token: TokenCreated = client.post_json("/v1/hosts/tokens", &req).await?;
    let data_dir = agents.data_dir(host);
    std::fs::create_dir_all(&data_dir).map_err(|e| Failure::failed(e.to_string()))?;
    let log = std::fs::File::create(agents.dir.join(format!("host-{host}.log")))
        .map_err(|e| Failure::failed(e.to_string()))?;
    let err = log
        .try_clone()
        .map_err(|e| Failure::failed(e.to_string()))?;
    let child = Command::new(exe)
        .args(["agent", "--join", &cluster.to_string()])
        .args(["--name", &format!("host-{host}")])
        .args(["--address", &format!("127.0.0.{}", host + 1)])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("BATON_JOIN_TOKEN", &token.token)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| Failure::failed(format!("cannot start an agent: {e}")))?;
    agents.children.push((host, child));
    Ok(())
}

async fn store_release(client: &Client, exe: &Path, dir: &Path, version: &str) -> Result<()> {
    let out = dir.join("artifacts-src").join(version);
    baton_demo::write_artifact(&out, exe, &DemoOptions::new(version))
        .map_err(|e| Failure::failed(e.to_string()))?;
    let archive = baton_store::pack(&out).map_err(|e| Failure::failed(e.to_string()))?;
    let path = format!("/v1/apps/web/releases?version={version}");
    let r: ReleaseCreated = client
        .post_bytes(&path, archive, "application/x-tar")
        .await?;
    println!("release {version} stored as {}", &r.release.digest[..19]);
    Ok(())
}

async fn state(client: &Client) -> Result<(AppStatus, Vec<HostView>)> {
    let status: AppStatus = client.get("/v1/apps/web").await?;
    let hosts: Vec<HostView> = client.get("/v1/hosts").await?;
    Ok((status, hosts))
}

async fn wait_for(
    client: &Client,
    what: &str,
    limit: Duration,
    done: impl Fn(&(AppStatus, Vec<HostView>)) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if done(&state(client).await?) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::failed(format!("timed out waiting for {what}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn print_spread(client: &Client) -> Result<()> {
    let (status, hosts) = state(client).await?;
    for h in hosts {
        let on: Vec<String> = status
            .instances
            .iter()
            .filter(|i| i.host == h.name && i.state != "draining")
            .map(|i| format!("{} {}", i.release, i.state))
            .collect();
        println!("   {:<8} {:<10} {}", h.name, h.state, on.join(", "));
    }
    Ok(())
}
