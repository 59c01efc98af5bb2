//! Client protocols: upgrades, h2c prior knowledge, header limits, graceful shutdown.

mod support;

use std::sync::atomic::Ordering::SeqCst;

use baton_proxy::{ListenerConfig, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn upgrade_tunnels_bytes_and_counts_in_flight() {
    let b = TestBackend::start("a").await;
    let backend = b.backend("1.0");
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![backend.clone()])]));
    let proxy = TestProxy::start(router, config()).await;

    let (mut stream, head) = raw_head(
        proxy.addr,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    assert_eq!(backend.in_flight(), 1, "an open tunnel is in flight");
    drop(stream);
    eventually("the closed tunnel to leave the in-flight count", || {
        backend.in_flight() == 0
    })
    .await;
}

// The old process of a restart finishes its WebSocket connections too: a tunnel open at
// shutdown goes on (up to `upgrade_grace`, the app's drain timeout) while the listener is gone.
#[tokio::test]
async fn a_tunnel_open_at_shutdown_goes_on_until_it_closes() {
    let b = TestBackend::start("a").await;
    let backend = b.backend("1.0");
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![backend.clone()])]));
    let cfg = ListenerConfig {
        upgrade_grace: std::time::Duration::from_secs(600),
        ..config()
    };
    let mut proxy = TestProxy::start(router, cfg).await;
    let (mut stream, head) = raw_head(
        proxy.addr,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let serving = proxy.shutdown();
    eventually("the listener to close", || {
        std::net::TcpStream::connect(proxy.addr).is_err()
    })
    .await;
    for _ in 0..3 {
        stream.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
    }
    assert!(!serving.is_finished(), "the shutdown waits for the tunnel");
    drop(stream);
    tokio::time::timeout(std::time::Duration::from_secs(20), serving)
        .await
        .expect("the listener returns once the tunnel closed")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let b = TestBackend::start("a").await;
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![b.backend("1.0")])]));
    let proxy = TestProxy::start(router, config()).await;

    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::get("http://h2.example/headers")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen = String::from_utf8_lossy(&body);
    assert!(seen.contains("host: h2.example\n"), "{seen}");
    assert!(seen.contains("x-forwarded-host: h2.example\n"), "{seen}");
}

#[tokio::test]
async fn oversized_header_is_rejected() {
    let b = TestBackend::start("a").await;
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![b.backend("1.0")])]));
    let cfg = ListenerConfig {
        max_header_bytes: 8192,
        ..config()
    };
    let proxy = TestProxy::start(router, cfg).await;

    let big = "x".repeat(20_000);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let (_, head) = raw_head(proxy.addr, request.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head:?}");
    assert_eq!(b.hits.load(SeqCst), 0);
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let b = TestBackend::start("a").await;
    let backend = b.backend("1.0");
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![backend.clone()])]));
    let mut proxy = TestProxy::start(router, config()).await;
    let client = client();
    let slow = spawn({
        let client = client.clone();
        let url = proxy.url("/slow");
        async move { get(&client, &url).await }
    });
    eventually("the slow request to be in flight", || {
        backend.in_flight() == 1
    })
    .await;
    let serving = proxy.shutdown();
    // New connections are refused once the listener is closed.
    eventually("the listener to close", || {
        std::net::TcpStream::connect(proxy.addr).is_err()
    })
    .await;
    b.gate.add_permits(1);
    assert_eq!(slow.await.unwrap().status, 200);
    serving.await.unwrap().unwrap();
}

// A restart stops the old process's listener while its kept-alive clients go on sending: the
// request that crosses the shutdown is answered (with `Connection: close`), not failed.
#[tokio::test]
async fn shutdown_answers_the_next_request_of_an_idle_connection_then_closes_it() {
    let b = TestBackend::start("a").await;
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![b.backend("1.0")])]));
    let cfg = ListenerConfig {
        request_timeout: std::time::Duration::from_secs(600),
        ..config()
    };
    let mut proxy = TestProxy::start(router, cfg).await;
    // HEAD: a response without a body, so the connection is idle after its head.
    let (mut kept, head) = raw_head(proxy.addr, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    let serving = proxy.shutdown();
    eventually("the listener to close", || {
        std::net::TcpStream::connect(proxy.addr).is_err()
    })
    .await;
    kept.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        kept.read_to_end(&mut answer),
    )
    .await
    .expect("the connection closes after the answer")
    .expect("answered, not reset");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer:?}");
    assert!(answer.contains("connection: close"), "{answer:?}");
    tokio::time::timeout(std::time::Duration::from_secs(20), serving)
        .await
        .expect("the listener returns")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let b = TestBackend::start("a").await;
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![b.backend("1.0")])]));
    // A grace period far longer than the test's deadline: idle connections must not wait for it.
    let cfg = ListenerConfig {
        request_timeout: std::time::Duration::from_secs(600),
        ..config()
    };
    let mut proxy = TestProxy::start(router, cfg).await;
    let (mut idle, head) = raw_head(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    // The connection stays open for the next request until the listener shuts down.
    tokio::time::timeout(std::time::Duration::from_secs(60), proxy.shutdown())
        .await
        .expect("shutdown does not wait for idle connections")
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        idle.read_to_end(&mut rest),
    )
    .await
    .expect("the idle connection is closed by the shutdown");
    // Whatever is left of the first response's body, then the end.
    assert!(read.is_ok(), "{read:?}");
}

#[tokio::test]
async fn shutdown_cuts_a_response_still_streaming_after_the_grace_period() {
    let b = TestBackend::start("a").await;
    let backend = b.backend("1.0");
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![backend.clone()])]));
    // The grace period is the request timeout.
    let cfg = ListenerConfig {
        request_timeout: std::time::Duration::from_millis(300),
        ..config()
    };
    let mut proxy = TestProxy::start(router, cfg).await;
    // /stream sends its head and a first chunk, then waits for a permit that never comes.
    let (mut stream, head) = raw_head(proxy.addr, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    eventually("the stream to be in flight", || backend.in_flight() == 1).await;
    proxy.shutdown().await.unwrap().unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut rest),
    )
    .await
    .expect("the connection is closed once the grace period is over");
    eventually("the backend's in-flight count to be released", || {
        backend.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn naming_content_length_in_connection_cannot_smuggle_a_request() {
    let b = TestBackend::start("a").await;
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![b.backend("1.0")])]));
    let proxy = TestProxy::start(router, config()).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let (mut stream, head) = raw_head(proxy.addr, request.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    // The bytes reached the backend as the POST's body, not as a request of their own.
    let mut echoed = vec![0u8; smuggled.len()];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&echoed), smuggled);
    assert_eq!(b.hits.load(SeqCst), 1);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_disconnected() {
    let b = TestBackend::start("a").await;
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![b.backend("1.0")])]));
    // The header read timeout is capped by request_timeout.
    let cfg = ListenerConfig {
        request_timeout: std::time::Duration::from_millis(200),
        ..config()
    };
    let proxy = TestProxy::start(router, cfg).await;

    // raw_head returns when the proxy closes the connection, as the head never ends.
    let (_, answer) = raw_head(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n").await;
    assert!(!answer.contains("200"), "{answer:?}");
    assert_eq!(b.hits.load(SeqCst), 0);
}
