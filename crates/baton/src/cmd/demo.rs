//! `baton demo`: the whole story on embedded defaults, and `baton demo artifact`.
//!
//! It starts Baton in this process on a temporary data dir, builds demo artifacts, drives
//! steady load at the proxy, rolls, fails a broken release, switches blue-green and back, runs
//! canaries, then a dark launch, a feature flag and a circuit breaker (`demo_acts`), and
//! prints what users got.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_demo::DemoOptions;
use baton_demo::load::{Load, LoadConfig};
use baton_server::views::{DeployRequest, DeploymentDetail, DeploymentView, ReleaseCreated};
use tokio::sync::oneshot;

use crate::client::Client;
use crate::cmd::deploy::follow;
use crate::exit::{Failure, Result};

const CONFIG: &str = r#"
[api]
listen = "127.0.0.1:0"

[apps.web]
listen = "127.0.0.1:0"
instances = 3
command = ["{artifact}/baton-demo", "--port", "{port}"]
env = { GREETING = "hello", BATON_DEMO_FAULT_FILE = @FAULT_FILE@ }
strategy = "rolling"

[apps.web.health]
path = "/health"
interval = "250ms"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 3
deadline = "8s"

[apps.web.drain]
timeout = "10s"
stop_timeout = "5s"

[apps.web.blue_green]
keep_previous = "5m"

[apps.web.canary]
steps = [
  { weight = 5, pause = "4s" },
  { weight = 25, pause = "4s" },
  { weight = 50, pause = "4s" },
  { weight = 100 },
]
sticky = { header = "x-user-id" }

[apps.web.analysis]
interval = "500ms"
min_requests = 50
max_error_rate = 0.02

[apps.web.dark]
max_diff_rate = 0.1
min_requests = 40
duration = "20s"

[apps.web.flags.new-checkout]
percent = 0

[[apps.web.breakers]]
name = "checkout"
path = "/checkout"
window = "1s"
min_requests = 10
max_error_rate = 0.25
cooldown = "2s"
probes = 3
flag = "new-checkout"

[apps.web.breakers.fallback]
status = 503
body = '{"checkout": "resting: try again in a moment"}'
retry_after = "2s"
"#;

pub fn artifact(out: &Path, opts: DemoOptions) -> Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed(format!("cannot find the baton executable: {e}")))?;
    baton_demo::write_artifact(out, &exe, &opts).map_err(|e| Failure::usage(e.to_string()))?;
    println!(
        "wrote demo artifact {} (version {}) to {}",
        opts.version,
        opts.version,
        out.display()
    );
    Ok(())
}

/// Baton running in this process for a demo.
pub(super) struct InProcess {
    /// Its addresses, data dir and token.
    pub(super) ready: baton_server::Daemon,
    /// Send to stop it.
    pub(super) stop: oneshot::Sender<()>,
    /// Ends when it stopped.
    pub(super) daemon: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Writes `config` to `dir/baton.toml` and runs Baton on it in this process.
pub(super) async fn start_in_process(dir: &Path, config: &str) -> Result<InProcess> {
    let config_path = dir.join("baton.toml");
    std::fs::write(&config_path, config).map_err(|e| Failure::failed(e.to_string()))?;
    let config =
        baton_server::load_config(&config_path).map_err(|e| Failure::failed(e.to_string()))?;
    let (stop, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let daemon = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop_rx.await;
        };
        baton_server::run(&config_path, config, stopped, Some(ready_tx)).await
    });
    match ready_rx.await {
        Ok(ready) => Ok(InProcess {
            ready,
            stop,
            daemon,
        }),
        Err(_) => {
            let err = daemon.await.ok().and_then(|r| r.err());
            Err(Failure::failed(format!(
                "baton did not start: {}",
                err.map(|e| format!("{e:#}")).unwrap_or_default()
            )))
        }
    }
}

/// The file that makes the demo's `/checkout` fail while it exists (`BATON_DEMO_FAULT_FILE`).
fn fault_file(dir: &Path) -> std::path::PathBuf {
    dir.join("fault")
}

/// The demo's config, its instances failing `/checkout` while `fault` exists.
fn config(fault: &Path) -> String {
    let quoted = serde_json::to_string(&fault.display().to_string()).expect("a string");
    CONFIG.replace("@FAULT_FILE@", &quoted)
}

pub(super) struct Switch {
    pub(super) what: String,
    pub(super) outcome: String,
    pub(super) took: Duration,
}

pub async fn run(keep_running: bool) -> Result<()> {
    super::init_logs("error");
    let tmp = tempfile::Builder::new()
        .prefix("baton-demo-")
        .tempdir()
        .map_err(|e| Failure::failed(e.to_string()))?;
    let InProcess {
        ready,
        stop: stop_tx,
        daemon,
    } = start_in_process(tmp.path(), &config(&fault_file(tmp.path()))).await?;
    let proxy = ready.apps["web@production"];
    println!(
        "baton is up: proxy for `web` on http://{proxy}  (API {}, data {})",
        ready.api,
        ready.data_dir.display()
    );
    let client = Client::new(ready.api, ready.token.clone());

    let story = story(&client, tmp.path(), proxy);
    let result = tokio::select! {
        r = story => r,
        _ = super::interrupted() => Err(Failure::failed("interrupted: stopping baton and every instance")),
    };
    if result.is_ok() && keep_running {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "baton".into());
        println!("\nbaton keeps running; try, in another terminal:");
        println!(
            "  export BATON_API={} BATON_TOKEN={}",
            ready.api, ready.token
        );
        println!("  {exe} status web");
        println!("  {exe} history web");
        println!("  {exe} rollback web --wait");
        println!("  {exe} dark web");
        println!("  {exe} flags web");
        println!("  {exe} breakers web");
        println!("  curl http://{proxy}/");
        println!("press Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(());
    let _ = daemon.await;
    // Last resort: nothing may outlive the demo, even if a stop above failed.
    baton_runtime::kill_pid_files(&ready.data_dir.join("run"));
    result
}

async fn story(client: &Client, dir: &Path, proxy: std::net::SocketAddr) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Failure::failed(e.to_string()))?;
    let releases = [
        ("1.0.0", false, 0.0, ""),
        ("1.1.0", false, 0.0, ""),
        ("1.2.0", true, 0.0, "  (broken: fails its health checks)"),
        ("1.3.0", false, 0.0, "  (healthy, for the canary)"),
        ("1.4.0", false, 0.3, "  (bad: 30 % of its answers are 500)"),
        (
            "1.5.0",
            false,
            0.0,
            "  (answers GET /item/{id} with another price, for the dark launch)",
        ),
    ];
    for (version, unhealthy, error_rate, note) in releases {
        let out = dir.join("artifacts-src").join(version);
        let opts = DemoOptions {
            unhealthy,
            error_rate,
            item_price: if version == "1.5.0" { 12 } else { 10 },
            ..DemoOptions::new(version)
        };
        baton_demo::write_artifact(&out, &exe, &opts)
            .map_err(|e| Failure::failed(e.to_string()))?;
        let archive = baton_store::pack(&out).map_err(|e| Failure::failed(e.to_string()))?;
        let r: ReleaseCreated = client
            .post_bytes(
                &format!("/v1/apps/web/releases?version={version}"),
                archive,
                "application/x-tar",
            )
            .await?;
        println!(
            "release {version} stored as {}{note}",
            &r.release.digest[..19]
        );
    }

    let mut switches = Vec::new();
    println!("\n== deploy 1.0.0 (first release, 3 instances)");
    switches.push(
        step(
            client,
            "deploy 1.0.0",
            "/v1/apps/web/deployments",
            "1.0.0",
            None,
        )
        .await?,
    );

    let load = Load::start(LoadConfig {
        keepalive_workers: 4,
        fresh_conn_workers: 2,
        rate_per_worker: Some(50.0),
        max_duration: Duration::from_secs(600),
        max_requests: 1_000_000,
        ..LoadConfig::new(proxy)
    });
    println!(
        "\nload: 6 clients (4 keep-alive, 2 new connection per request), ~300 req/s at http://{proxy}/"
    );
    println!("\n== rolling update 1.0.0 -> 1.1.0 (max_surge 1, max_unavailable 0)");
    let progress = |load: &Load| {
        let s = load.snapshot();
        println!(
            "   load so far: {} sent, {} failed, by release {:?}",
            s.sent, s.failed, s.by_version
        );
    };
    switches.push(
        step(
            client,
            "rolling 1.0.0 -> 1.1.0",
            "/v1/apps/web/deployments",
            "1.1.0",
            Some("rolling"),
        )
        .await?,
    );
    progress(&load);
    println!("\n== deploy broken 1.2.0: it never passes its health checks");
    switches.push(
        step(
            client,
            "rolling 1.1.0 -> 1.2.0 (broken)",
            "/v1/apps/web/deployments",
            "1.2.0",
            Some("rolling"),
        )
        .await?,
    );
    progress(&load);
    println!("\n== blue-green switch 1.1.0 -> 1.0.0");
    switches.push(
        step(
            client,
            "blue-green 1.1.0 -> 1.0.0",
            "/v1/apps/web/deployments",
            "1.0.0",
            Some("blue-green"),
        )
        .await?,
    );
    progress(&load);
    println!("\n== rollback: blue-green back to 1.1.0 (its instances are still warm)");
    switches.push(
        step(
            client,
            "rollback -> 1.1.0 (warm)",
            "/v1/apps/web/rollback",
            "1.1.0",
            Some("blue-green"),
        )
        .await?,
    );
    progress(&load);
    println!(
        "\n== canary 1.1.0 -> 1.3.0: 5 % -> 25 % -> 50 % -> 100 %, each step judged against 1.1.0"
    );
    switches.push(
        step(
            client,
            "canary 1.1.0 -> 1.3.0",
            "/v1/apps/web/deployments",
            "1.3.0",
            Some("canary"),
        )
        .await?,
    );
    progress(&load);
    let report = load.stop().await;

    // The bad canary gets its own load, so its (deliberate) failures are counted apart.
    println!(
        "\n== canary 1.3.0 -> 1.4.0: a bad release; the analysis must catch it and roll back by itself"
    );
    let bad_load = Load::start(LoadConfig {
        keepalive_workers: 4,
        rate_per_worker: Some(50.0),
        max_duration: Duration::from_secs(300),
        max_requests: 1_000_000,
        ..LoadConfig::new(proxy)
    });
    switches.push(
        step(
            client,
            "canary 1.3.0 -> 1.4.0 (bad)",
            "/v1/apps/web/deployments",
            "1.4.0",
            Some("canary"),
        )
        .await?,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bad = bad_load.stop().await;

    let (dark, dark_line) = super::demo_acts::dark(client, proxy).await?;
    switches.push(dark);
    let flag_line = super::demo_acts::flag(client, proxy).await?;
    let breaker_line = super::demo_acts::breaker(client, proxy, &fault_file(dir)).await?;
    println!("\n== summary");
    println!("{:<34} {:<12} {:>9}", "switch", "outcome", "took");
    for s in &switches {
        println!(
            "{:<34} {:<12} {:>8.2}s",
            s.what,
            s.outcome,
            s.took.as_secs_f64()
        );
    }
    println!();
    let bad_failures = bad.failures();
    let to_bad = bad
        .samples
        .iter()
        .filter(|s| s.version.as_deref() == Some("1.4.0"))
        .count();
    let first_bad = bad_failures.iter().map(|f| f.finished).min();
    let last_on_bad = bad
        .samples
        .iter()
        .filter(|s| s.version.as_deref() == Some("1.4.0"))
        .map(|s| s.started)
        .max();
    if let (Some(first), Some(last)) = (first_bad, last_on_bad) {
        println!(
            "bad canary 1.4.0: first bad response -> 100 % back on 1.3.0 in {:.1}s; it failed {} user requests ({} were sent to it, {} in all during that act)",
            last.saturating_sub(first).as_secs_f64(),
            bad_failures.len(),
            to_bad,
            bad.stats.sent
        );
    }
    println!("{dark_line}");
    println!("{flag_line}");
    println!("{breaker_line}");
    println!();
    println!(
        "requests sent:    {} (rolling, broken release, blue-green, rollback, healthy canary)",
        report.stats.sent
    );
    println!("failed requests:  {}", report.stats.failed);
    for (version, n) in &report.stats.by_version {
        println!("  served by {version:<8} {n}");
    }
    if let Some(p99) = report.latency_percentile(0.99) {
        println!("p99 latency:      {:.1} ms", p99.as_secs_f64() * 1000.0);
    }
    let failures = report.failures();
    if !failures.is_empty() {
        for f in failures.iter().take(5) {
            println!(
                "  failure at {:.3}s: status {:?} {}",
                f.started.as_secs_f64(),
                f.status,
                f.error.as_deref().unwrap_or("")
            );
        }
        return Err(Failure::failed(format!(
            "{} requests failed",
            failures.len()
        )));
    }
    Ok(())
}

pub(super) async fn step(
    client: &Client,
    what: &str,
    path: &str,
    version: &str,
    strategy: Option<&str>,
) -> Result<Switch> {
    let started = Instant::now();
    let req = DeployRequest {
        release: Some(version.to_string()),
        strategy: strategy.map(String::from),
        ..Default::default()
    };
    let d: DeploymentView = client.post_json(path, &req).await?;
    let outcome = follow(client, d.id, true).await;
    let detail: DeploymentDetail = client.get(&format!("/v1/deployments/{}", d.id)).await?;
    let expected_failure = matches!(version, "1.2.0" | "1.4.0" | "1.5.0");
    match (&outcome, expected_failure) {
        (Ok(()), _) => {}
        (Err(e), true) => println!("as expected: {}", e.message),
        (Err(e), false) => return Err(Failure::failed(e.message.clone())),
    }
    Ok(Switch {
        what: what.to_string(),
        outcome: detail.deployment.phase,
        took: started.elapsed(),
    })
}
