//! Active health checks against a real backend.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_proxy::{Backend, CHECKS_PER_CONNECTION, Health, HealthCheck, spawn_health_checker};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn check() -> HealthCheck {
    HealthCheck {
        path: "/health".into(),
        interval: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
        healthy_threshold: 3,
        unhealthy_threshold: 2,
    }
}

#[tokio::test]
async fn checker_follows_the_backend_with_thresholds() {
    let b = TestBackend::start("a").await;
    let backend = Backend::new("a".into(), "1.0".into(), b.addr, 3);
    assert_eq!(backend.health(), Health::Starting);
    let checker = spawn_health_checker(backend.clone(), check());

    eventually("healthy", || backend.health() == Health::Healthy).await;
    assert!(
        b.health_hits.load(SeqCst) >= 3,
        "needed healthy_threshold passes"
    );

    b.healthy.store(false, SeqCst);
    let before = b.health_hits.load(SeqCst);
    eventually("unhealthy", || backend.health() == Health::Unhealthy).await;
    assert!(
        b.health_hits.load(SeqCst) >= before + 2,
        "needed unhealthy_threshold failures"
    );

    b.healthy.store(true, SeqCst);
    eventually("healthy again", || backend.health() == Health::Healthy).await;
    checker.abort();
    assert_eq!(b.hits.load(SeqCst), 0, "checks are not user traffic");
}

#[tokio::test]
async fn unreachable_backend_never_becomes_healthy() {
    let backend = Backend::new("gone".into(), "1.0".into(), refused_addr().await, 3);
    assert_eq!(
        backend.health(),
        Health::Starting,
        "a new backend starts unproven"
    );
    let checker = spawn_health_checker(backend.clone(), check());
    let mut seen = vec![backend.health()];
    eventually("unhealthy", || {
        seen.push(backend.health());
        backend.health() == Health::Unhealthy
    })
    .await;
    // Sampled over many more check intervals (10 ms each): it stays out.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen.push(backend.health());
    }
    checker.abort();
    assert!(
        !seen.contains(&Health::Healthy),
        "a refused connection never counts as a pass: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&Health::Unhealthy));
}

// === Checks over a kept connection ===

/// How a [`RawBackend`] answers `GET /health`.
#[derive(Clone, Copy, PartialEq)]
enum Answers {
    /// 200 on a keep-alive connection.
    KeepAlive,
    /// 200, then closes the connection without saying so (no `Connection: close`).
    CloseSilently,
    /// 200 with `Connection: close`, then closes.
    CloseSaid,
}

/// An HTTP/1.1 backend on raw sockets that counts the connections it accepted and the
/// requests it answered; it can stall (read requests, answer none), stop accepting (its
/// listener closed, the open connections still served), or die (everything closed).
struct RawBackend {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    stalled: Arc<AtomicBool>,
    acceptor: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl RawBackend {
    async fn start(answers: Answers) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let stalled = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (acc, ans, st, conns) = (
            accepted.clone(),
            answered.clone(),
            stalled.clone(),
            connections.clone(),
        );
        let acceptor = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                acc.fetch_add(1, SeqCst);
                let task = tokio::spawn(serve(stream, answers, ans.clone(), st.clone()));
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        RawBackend {
            addr,
            accepted,
            answered,
            stalled,
            acceptor,
            connections,
        }
    }

    /// Closes the listener: new connections are refused, open ones still served.
    fn stop_accepting(&self) {
        self.acceptor.abort();
    }

    /// Closes the listener and every connection, as the death of its process would.
    fn kill(&self) {
        self.acceptor.abort();
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn counts(&self) -> (u64, u64) {
        // Answered first: a connection is accepted before its request is answered, so the
        // pair read this way never shows more answers than the connections account for.
        let answered = self.answered.load(SeqCst);
        (self.accepted.load(SeqCst), answered)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve(
    mut stream: TcpStream,
    answers: Answers,
    answered: Arc<AtomicU64>,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = Vec::new();
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        if stalled.load(SeqCst) {
            // Keeps the connection open and answers nothing.
            std::future::pending::<()>().await;
        }
        let response: &[u8] = match answers {
            Answers::CloseSaid => {
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
            }
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        };
        if stream.write_all(response).await.is_err() {
            return;
        }
        answered.fetch_add(1, SeqCst);
        if answers != Answers::KeepAlive {
            return;
        }
    }
}

/// Checks every 5 ms, one failure enough to mark unhealthy: any spurious failure shows.
fn strict() -> HealthCheck {
    HealthCheck {
        path: "/health".into(),
        interval: Duration::from_millis(5),
        timeout: Duration::from_secs(5),
        healthy_threshold: 2,
        unhealthy_threshold: 1,
    }
}

/// Starts a checker of `b` and waits until it made `b` healthy.
async fn healthy(b: &RawBackend, check: HealthCheck) -> (Arc<Backend>, AbortOnDrop) {
    let backend = Backend::new("raw".into(), "1.0".into(), b.addr, 0);
    let checker = AbortOnDrop(spawn_health_checker(backend.clone(), check));
    eventually("healthy", || backend.health() == Health::Healthy).await;
    (backend, checker)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test]
async fn a_healthy_backend_is_checked_over_one_kept_connection() {
    let b = RawBackend::start(Answers::KeepAlive).await;
    let check = strict();
    let fresh = u64::from(check.healthy_threshold);
    let (backend, _checker) = healthy(&b, check).await;
    let per_connection = u64::from(CHECKS_PER_CONNECTION);
    eventually("three connections' worth of checks", || {
        b.counts().1 >= fresh + 3 * per_connection
    })
    .await;
    let (accepted, answered) = b.counts();
    // Until healthy, one connection per check; then one per CHECKS_PER_CONNECTION checks
    // (and perhaps one opened for a check not answered yet).
    let most = fresh + answered.div_ceil(per_connection) + 1;
    assert!(
        accepted <= most,
        "{accepted} connections for {answered} checks (at most {most})"
    );
    assert!(
        accepted >= fresh + 2,
        "the kept connection is replaced now and then: {accepted} connections for {answered} checks"
    );
    assert_eq!(backend.health(), Health::Healthy);
}

#[tokio::test]
async fn a_backend_that_closes_each_connection_after_answering_stays_healthy() {
    for answers in [Answers::CloseSilently, Answers::CloseSaid] {
        let b = RawBackend::start(answers).await;
        let (backend, _checker) = healthy(&b, strict()).await;
        let mut seen = Vec::new();
        eventually("100 more checks", || {
            seen.push(backend.health());
            b.counts().1 >= 100
        })
        .await;
        assert!(
            seen.iter().all(|h| *h == Health::Healthy),
            "a connection the backend closed after its answer is no failure: {seen:?}"
        );
        let (accepted, answered) = b.counts();
        assert!(accepted >= answered, "one connection per check");
    }
}

#[tokio::test]
async fn a_backend_that_stalls_on_the_kept_connection_fails_by_timeout() {
    let b = RawBackend::start(Answers::KeepAlive).await;
    let check = HealthCheck {
        timeout: Duration::from_millis(100),
        ..strict()
    };
    let (backend, _checker) = healthy(&b, check).await;
    let (accepted, _) = b.counts();
    b.stalled.store(true, SeqCst);
    eventually("unhealthy", || backend.health() == Health::Unhealthy).await;
    assert!(
        b.counts().0 <= accepted + 1,
        "the stalled check was sent on the kept connection (or its replacement)"
    );
}

#[tokio::test]
async fn a_killed_backend_is_detected() {
    let b = RawBackend::start(Answers::KeepAlive).await;
    // A timeout no test run reaches: the close of the kept connection and the refused
    // reconnect must be what fails the check.
    let check = HealthCheck {
        timeout: Duration::from_secs(60),
        ..strict()
    };
    let (backend, _checker) = healthy(&b, check).await;
    b.kill();
    eventually("unhealthy", || backend.health() == Health::Unhealthy).await;
}

#[tokio::test]
async fn a_backend_that_stops_accepting_connections_is_detected_and_kept_out() {
    let b = RawBackend::start(Answers::KeepAlive).await;
    let (backend, _checker) = healthy(&b, strict()).await;
    b.stop_accepting();
    // The kept connection still answers; the periodic fresh one is refused.
    eventually("unhealthy", || backend.health() == Health::Unhealthy).await;
    let (_, answered) = b.counts();
    let mut seen = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        seen.push(backend.health());
    }
    assert!(
        seen.iter().all(|h| *h == Health::Unhealthy),
        "a backend that is not healthy is checked on fresh connections only: {seen:?}"
    );
    assert_eq!(
        b.counts().1,
        answered,
        "no check went to the kept connection once unhealthy"
    );
}

#[tokio::test]
async fn a_backend_marked_unhealthy_elsewhere_comes_back_only_over_new_connections() {
    let b = RawBackend::start(Answers::KeepAlive).await;
    let (backend, _checker) = healthy(&b, strict()).await;
    b.stop_accepting();
    // As the passive checks do when users' connections are refused; the checker's kept
    // connection would still pass.
    backend.set_health(Health::Unhealthy);
    let mut seen = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        seen.push(backend.health());
    }
    assert!(
        seen.iter().all(|h| *h == Health::Unhealthy),
        "passes on the kept connection do not make it healthy: {seen:?}"
    );
}
