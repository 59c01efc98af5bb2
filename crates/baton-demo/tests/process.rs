//! `service_main` as a real process: the listening line, SIGTERM drain and exit codes.
//!
//! This test binary plays both roles: with `BATON_DEMO_CHILD` set it runs `service_main` on
//! its arguments and exits with its code (as `baton` does when started as `baton-demo`);
//! otherwise it runs the checks below against such a child.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use baton_demo::load::{Load, LoadConfig};
use baton_demo::{ARTIFACT_CONFIG, DemoOptions};

const CHILD_ENV: &str = "BATON_DEMO_CHILD";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        std::process::exit(baton_demo::service_main(std::env::args().collect()));
    }
    sigterm_drains_in_flight_requests_and_exits_0();
    missing_port_exits_2();
    println!("process tests: ok");
}

/// A child process that is killed if the test fails before it exits.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(args)
        .env(CHILD_ENV, "1")
        .env_remove("PORT")
        .env("BATON_INSTANCE", "child-7");
    cmd
}

fn sigterm_drains_in_flight_requests_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(ARTIFACT_CONFIG);
    let mut opts = DemoOptions::new("7.0.0");
    opts.startup_ms = 50;
    std::fs::write(&config, opts.to_toml().unwrap()).unwrap();

    let mut svc = Service(
        child(&["--port", "0", "--config", config.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(svc.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("baton-demo 7.0.0 listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let slow = Load::start(LoadConfig {
            path: "/slow?ms=500".into(),
            keepalive_workers: 1,
            max_requests: 1,
            ..LoadConfig::new(addr)
        });
        // Scrape until the slow request is being handled (the scrape counts itself).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !metrics_show_in_flight(addr).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "slow request never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let status = Command::new("kill")
            .args(["-TERM", &svc.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let report = slow.wait().await;
        assert!(report.failures().is_empty(), "{:?}", report.failures());
        assert_eq!(report.stats.by_version.get("7.0.0"), Some(&1));
    });
    let code = svc.0.wait().unwrap();
    assert_eq!(code.code(), Some(0), "exit status {code}");
}

async fn metrics_show_in_flight(addr: SocketAddr) -> bool {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header("host", "demo")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).contains("demo_requests_in_flight 2\n")
}

fn missing_port_exits_2() {
    let out = child(&["--config", "/nonexistent/demo.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--port"), "{stderr}");
}
