//! The API under connection load: silent connections are closed, and while 1,000 connections
//! hammer the API the app listeners keep serving, also when the open-file limit is low.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Baton, THREE_WEB, text, wait_until};

/// Bound for one thing that must happen; only reached when the test fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// Connections the hammer opens, and holds.
const HAMMER: usize = 1000;

/// Lets this test process hold the hammer's connections.
fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Reads until the server closes the connection; false if `DEADLINE` passes first.
async fn closed_by_server(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// One request on a new connection to the app: its status line, or what went wrong.
async fn app_get(addr: SocketAddr) -> Result<String, String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out);
        Ok(text.lines().next().unwrap_or("").to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 10s".into()))
}

/// Opens `HAMMER` connections to `api` and holds them, sending nothing; a connect that does
/// not complete within a second counts as refused.
async fn hammer(api: SocketAddr) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(HAMMER);
    for _ in 0..HAMMER {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(api)).await
        {
            held.push(s);
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_silent_api_connections_are_closed_within_30_seconds() {
    // The default [api] header_timeout.
    let baton = Baton::start(THREE_WEB);
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(baton.api).await.unwrap());
    }
    let closed = futures_all(silent.into_iter().map(closed_by_server)).await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "{open} of 50 silent connections still open after 30s"
    );
}

async fn futures_all<F: std::future::Future<Output = bool> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<bool> {
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_listeners_keep_serving_while_1000_connections_hammer_the_api_at_a_low_fd_limit() {
    raise_own_fd_limit();
    // 256 open files in all for Baton: the hammer alone could take every one of them.
    let mut baton = Baton::start_with_nofile(THREE_WEB, 256);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", baton.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 256 ")),
        "{limits}"
    );

    let api = baton.api;
    let hammering = tokio::spawn(hammer(api));
    let mut failures = Vec::new();
    let mut served = 0;
    // A few failures prove the point; each costs up to 10 s.
    while (!hammering.is_finished() || served < 20) && failures.len() < 3 {
        match app_get(baton.web()).await {
            Ok(line) if line.starts_with("HTTP/1.1 200") => {}
            other => failures.push(format!("{other:?}")),
        }
        served += 1;
    }
    let held = hammering.await.unwrap();
    // The app still serves with every connection the hammer got still held.
    for _ in 0..20 {
        if failures.len() >= 3 {
            break;
        }
        match app_get(baton.web()).await {
            Ok(line) if line.starts_with("HTTP/1.1 200") => {}
            other => failures.push(format!("{other:?}")),
        }
        served += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {served} app requests failed while {} API connections were held: {:?}\nlog:\n{}",
        failures.len(),
        held.len(),
        &failures[..failures.len().min(5)],
        baton.log()
    );
    eprintln!(
        "{served} app requests served while the hammer held {} API connections",
        held.len()
    );
    drop(held);
    // And the API itself serves again once the hammer is gone.
    let ok = wait_until(DEADLINE, || baton.cli(&["status", "web"]).status.success());
    assert!(ok, "{}", text(&baton.cli(&["status", "web"])));
    baton.stop();
}
