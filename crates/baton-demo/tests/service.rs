//! The demo service over real sockets: routes, error injection, h2c and graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use baton_demo::{DemoOptions, ServiceOptions, serve};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A service on 127.0.0.1:0 that stops when `stop` is sent or dropped.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: JoinHandle<()>,
}

async fn start(demo: DemoOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = ServiceOptions {
        demo,
        instance: "test-1".into(),
    };
    let done = tokio::spawn(serve(listener, opts, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, done }
}

type Conn = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> (Conn, JoinHandle<()>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

async fn send(conn: &mut Conn, method: Method, path: &str, body: Bytes) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "demo")
        .body(Full::new(body))
        .unwrap();
    let resp = conn.send_request(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, Bytes) {
    let (mut conn, _task) = connect(addr).await;
    send(&mut conn, Method::GET, path, Bytes::new()).await
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

/// Polls `cond` every few milliseconds until it holds; panics after a generous deadline.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn root_reports_version_instance_and_pid() {
    let svc = start(DemoOptions::new("1.2.3")).await;
    let (status, body) = get(svc.addr, "/").await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["version"], "1.2.3");
    assert_eq!(v["instance"], "test-1");
    assert_eq!(v["pid"], std::process::id());
    assert!(v.get("error").is_none());
    let (status, _) = get(svc.addr, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(svc.addr, "/slow?ms=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = get(svc.addr, "/slow?ms=1").await;
    assert_eq!(
        (status, json(&body)["version"].clone()),
        (StatusCode::OK, "1.2.3".into())
    );
}

#[tokio::test]
async fn health_follows_the_unhealthy_option() {
    let healthy = start(DemoOptions::new("1")).await;
    assert_eq!(
        get(healthy.addr, "/health").await,
        (StatusCode::OK, Bytes::from("ok"))
    );
    let mut opts = DemoOptions::new("1");
    opts.unhealthy = true;
    let sick = start(opts).await;
    assert_eq!(
        get(sick.addr, "/health").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn error_rate_one_answers_500_with_the_version() {
    let mut opts = DemoOptions::new("9.9.9");
    opts.error_rate = 1.0;
    let svc = start(opts).await;
    let (mut conn, _task) = connect(svc.addr).await;
    for _ in 0..5 {
        let (status, body) = send(&mut conn, Method::GET, "/", Bytes::new()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let v = json(&body);
        assert_eq!(
            (v["version"].as_str(), v["error"].as_str()),
            (Some("9.9.9"), Some("injected"))
        );
    }
    // Only `/` is affected.
    assert_eq!(
        send(&mut conn, Method::GET, "/health", Bytes::new())
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_count_requests_and_signups() {
    let svc = start(DemoOptions::new("1")).await;
    let (mut conn, _task) = connect(svc.addr).await;
    send(&mut conn, Method::GET, "/", Bytes::new()).await;
    let (status, _) = send(&mut conn, Method::POST, "/signup", Bytes::from("name=ada")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = send(&mut conn, Method::GET, "/metrics", Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("demo_signups_total 1\n"), "{text}");
    assert!(
        text.contains("demo_requests_total{path=\"/\",code=\"200\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("demo_requests_total{path=\"/signup\",code=\"201\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn echo_streams_any_body_back() {
    let svc = start(DemoOptions::new("1")).await;
    let (mut conn, _task) = connect(svc.addr).await;
    let big: Bytes = (0..4 * 1024 * 1024u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let (status, body) = send(&mut conn, Method::POST, "/echo", big.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), big.len());
    assert!(body == big);
    // The connection is still usable afterwards.
    let (status, body) = send(&mut conn, Method::POST, "/echo", Bytes::from("hi")).await;
    assert_eq!((status, body), (StatusCode::OK, Bytes::from("hi")));
}

#[tokio::test]
async fn speaks_h2c_with_prior_knowledge() {
    let svc = start(DemoOptions::new("2.0.0")).await;
    let stream = TcpStream::connect(svc.addr).await.unwrap();
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("http://{}/", svc.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["version"], "2.0.0");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_and_refuses_new() {
    let svc = start(DemoOptions::new("1")).await;
    let addr = svc.addr;

    let slow = tokio::spawn(async move {
        let (mut conn, _task) = connect(addr).await;
        send(&mut conn, Method::GET, "/slow?ms=500", Bytes::new()).await
    });
    // An idle keep-alive connection that shutdown must close.
    let (mut idle, idle_task) = connect(addr).await;
    eventually("the slow request to be in flight", async || {
        let (_, body) = send(&mut idle, Method::GET, "/metrics", Bytes::new()).await;
        // The scrape counts itself.
        String::from_utf8_lossy(&body).contains("demo_requests_in_flight 2\n")
    })
    .await;

    svc.stop.send(()).unwrap();
    eventually("new connections to be refused", async || {
        TcpStream::connect(addr).await.is_err()
    })
    .await;

    let (status, body) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["version"], "1");
    svc.done.await.unwrap();
    // The idle connection was closed by the server, so its driver task ends.
    idle_task.await.unwrap();
    assert!(idle.is_closed());
}
