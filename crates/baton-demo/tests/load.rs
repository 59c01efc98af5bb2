//! The load generator against the real demo service: counts, failures, stop and bounds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baton_demo::load::{Load, LoadConfig, wait_until_serving};
use baton_demo::{DemoOptions, ServiceOptions, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

async fn start(demo: DemoOptions) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = ServiceOptions::new(demo);
    tokio::spawn(serve(listener, opts, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn config(addr: SocketAddr) -> LoadConfig {
    LoadConfig {
        keepalive_workers: 2,
        fresh_conn_workers: 2,
        max_duration: Duration::from_secs(30),
        ..LoadConfig::new(addr)
    }
}

#[tokio::test]
async fn counts_every_request_by_version_with_no_failures() {
    let (addr, _stop) = start(DemoOptions::new("1.0.0")).await;
    let report = Load::start(LoadConfig {
        max_requests: 200,
        ..config(addr)
    })
    .wait()
    .await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    assert_eq!(report.stats.sent, 200);
    assert_eq!(report.stats.ok, 200);
    assert_eq!(report.stats.failed, 0);
    assert_eq!(report.stats.by_version.get("1.0.0"), Some(&200));
    assert_eq!(report.samples.len(), 200);
    assert!(report.samples.iter().any(|s| s.keepalive));
    assert!(report.samples.iter().any(|s| !s.keepalive));
    assert!(
        report
            .samples
            .windows(2)
            .all(|w| w[0].started <= w[1].started)
    );
    assert!(report.latency_percentile(0.5).is_some());
    assert!(report.served_old_after_new("1.0.0").is_empty());
}

#[tokio::test]
async fn stop_returns_what_was_seen_so_far() {
    let (addr, _stop) = start(DemoOptions::new("2")).await;
    let load = Load::start(config(addr));
    let deadline = Instant::now() + Duration::from_secs(10);
    while load.snapshot().ok < 50 {
        assert!(
            Instant::now() < deadline,
            "load made no progress: {:?}",
            load.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = load.stop().await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    assert!(report.stats.ok >= 50);
    assert_eq!(report.stats.ok, report.samples.len() as u64);
    assert_eq!(report.stats.sent, report.stats.ok);
    assert_eq!(report.stats.by_version.get("2"), Some(&report.stats.ok));
}

#[tokio::test]
async fn injected_errors_are_failures_that_still_carry_the_version() {
    let mut opts = DemoOptions::new("bad");
    opts.error_rate = 1.0;
    let (addr, _stop) = start(opts).await;
    let report = Load::start(LoadConfig {
        max_requests: 20,
        ..config(addr)
    })
    .wait()
    .await;
    assert_eq!(report.failures().len(), 20);
    assert!(
        report
            .samples
            .iter()
            .all(|s| s.status == Some(500) && s.error.is_none())
    );
    assert_eq!(report.stats.failed, 20);
    assert_eq!(report.stats.by_version.get("bad"), Some(&20));
}

#[tokio::test]
async fn connection_errors_are_failures() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let report = Load::start(LoadConfig {
        max_requests: 6,
        ..config(addr)
    })
    .wait()
    .await;
    assert_eq!(report.failures().len(), 6);
    assert!(
        report
            .samples
            .iter()
            .all(|s| s.error.as_deref().is_some_and(|e| e.starts_with("connect")))
    );
}

#[tokio::test]
async fn paced_load_stops_at_max_duration() {
    let (addr, _stop) = start(DemoOptions::new("1")).await;
    let cfg = LoadConfig {
        keepalive_workers: 1,
        fresh_conn_workers: 0,
        rate_per_worker: Some(50.0),
        max_duration: Duration::from_millis(200),
        ..LoadConfig::new(addr)
    };
    let report = Load::start(cfg).wait().await;
    assert!(report.failures().is_empty());
    // Bounded by time, not by the (unlimited) request budget.
    assert!(report.stats.sent >= 1);
    assert!(
        report
            .samples
            .iter()
            .all(|s| s.started < Duration::from_millis(200))
    );
}

#[tokio::test]
async fn wait_until_serving_sees_a_2xx() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let waiter = tokio::spawn(wait_until_serving(addr, "/health", Duration::from_secs(10)));
    // Rebinding the same port models a service that was still starting up.
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(serve(
        listener,
        ServiceOptions::new(DemoOptions::new("1")),
        std::future::pending(),
    ));
    assert!(waiter.await.unwrap());
}

/// A raw HTTP/1.1 server: drops its first connection unanswered, then answers one request per
/// connection with `connection: close`. Returns its address and a count of accepted connections.
async fn flaky_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                continue; // dropped: the client sees the connection close mid-request
            }
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                assert!(String::from_utf8_lossy(&buf).contains("x-load-worker: 0"));
                let body = r#"{"version":"raw"}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(resp.as_bytes()).await.unwrap();
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn keepalive_worker_reconnects_after_errors_and_closed_connections() {
    let (addr, accepted) = flaky_server().await;
    let cfg = LoadConfig {
        keepalive_workers: 1,
        fresh_conn_workers: 0,
        max_requests: 5,
        ..LoadConfig::new(addr)
    };
    let report = Load::start(cfg).wait().await;
    assert_eq!(report.failures().len(), 1, "{:?}", report.samples);
    assert!(report.samples[0].error.is_some());
    assert_eq!(report.stats.by_version.get("raw"), Some(&4));
    // One connection per request: the dropped one, then one per `connection: close` answer.
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}
