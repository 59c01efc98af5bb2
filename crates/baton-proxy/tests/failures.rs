//! Backend failures: retry on connect errors, passive health, request timeout.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use baton_proxy::{Backend, Health, ListenerConfig, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

#[tokio::test]
async fn connection_refused_is_retried_on_the_other_backend() {
    let live = TestBackend::start("live").await;
    let dead = Backend::new("dead".into(), "1.0".into(), refused_addr().await, 1000);
    dead.set_health(Health::Healthy);
    let router = Router::new();
    router.publish(table(vec![(
        "1.0",
        100,
        vec![dead.clone(), live.backend("1.0")],
    )]));
    let proxy = TestProxy::start(router, config()).await;
    let client = client();
    for _ in 0..30 {
        let answer = get(&client, &proxy.url("/")).await;
        assert_eq!(
            (answer.status.as_u16(), answer.body.as_str()),
            (200, "live")
        );
    }
    assert!(
        dead.metrics().connect_errors > 0,
        "the dead backend was tried at least once"
    );
    assert_eq!(
        dead.metrics().status,
        [0; 5],
        "the client never saw the dead backend's failure"
    );
    assert_eq!(dead.in_flight(), 0);
}

/// A proxy in front of a backend that refuses connections and a live one (kept running by
/// the returned handle), for `/echo` POSTs.
async fn dead_and_live() -> (Arc<Backend>, TestBackend, TestProxy) {
    let live = TestBackend::start("live").await;
    let dead = Backend::new("dead".into(), "1.0".into(), refused_addr().await, 1000);
    dead.set_health(Health::Healthy);
    let router = Router::new();
    router.publish(table(vec![(
        "1.0",
        100,
        vec![dead.clone(), live.backend("1.0")],
    )]));
    let proxy = TestProxy::start(router, config()).await;
    (dead, live, proxy)
}

async fn post(client: &TestClient, proxy: &TestProxy, body: Bytes) -> Answer {
    let request = Request::post(proxy.url("/echo"))
        .body(Full::new(body))
        .unwrap();
    send(client, request).await
}

// A small body is held whole by the proxy, so a request refused by one backend goes to the
// other: the client never sees the refusal, POST or not.
#[tokio::test]
async fn a_small_body_is_retried_on_the_other_backend() {
    let (dead, _live, proxy) = dead_and_live().await;
    let client = client();
    for _ in 0..30 {
        let answer = post(&client, &proxy, Bytes::from_static(b"payload")).await;
        assert_eq!(
            (answer.status.as_u16(), answer.body.as_str()),
            (200, "payload")
        );
    }
    assert!(
        dead.metrics().connect_errors > 0,
        "the dead backend was tried at least once"
    );
}

// A body streamed through (over 64 KiB) cannot be sent again once it was taken from the
// client: a refused connect answers 502, and only then.
#[tokio::test]
async fn a_streamed_body_is_not_retried() {
    let (dead, _live, proxy) = dead_and_live().await;
    let body = vec![b'x'; 100 * 1024];
    let mut request = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let mut refused: u64 = 0;
    for _ in 0..30 {
        // A connection each: after a 502 sent before the body was read, the proxy closes it.
        let mut client = wire::Client::connect_lenient(proxy.addr).await;
        client.send(&request).await;
        let answer = client.response().await;
        match answer.status {
            200 => assert_eq!(answer.body.len(), body.len()),
            502 => refused += 1,
            other => panic!("status {other}"),
        }
    }
    assert!(refused > 0, "the dead backend was tried at least once");
    assert_eq!(dead.metrics().connect_errors, refused);
}

#[tokio::test]
async fn connect_errors_make_a_backend_unhealthy() {
    let dead = Backend::new("dead".into(), "1.0".into(), refused_addr().await, 3);
    dead.set_health(Health::Healthy);
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![dead.clone()])]));
    let proxy = TestProxy::start(router, config()).await;
    let client = client();
    for n in 1..=3 {
        assert_eq!(
            get(&client, &proxy.url("/")).await.status,
            502,
            "request {n}"
        );
    }
    assert_eq!(dead.health(), Health::Unhealthy);
    assert_eq!(get(&client, &proxy.url("/")).await.status, 503);
    assert_eq!(dead.metrics().connect_errors, 3);
}

#[tokio::test]
async fn slow_backend_gets_504_after_request_timeout() {
    let b = TestBackend::start("a").await;
    let backend = b.backend("1.0");
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![backend.clone()])]));
    let cfg = ListenerConfig {
        request_timeout: Duration::from_millis(200),
        ..config()
    };
    let proxy = TestProxy::start(router, cfg).await;
    let client = client();
    assert_eq!(get(&client, &proxy.url("/hang")).await.status, 504);
    let m = backend.metrics();
    assert_eq!((m.requests, m.timeouts, m.status[4]), (1, 1, 1));
    eventually("the timed-out request to leave the in-flight count", || {
        backend.in_flight() == 0
    })
    .await;
    // The backend still serves after a timeout.
    assert_eq!(get(&client, &proxy.url("/")).await.status, 200);
    assert_eq!(b.hits.load(SeqCst), 2);
}

#[tokio::test]
async fn metrics_count_requests_status_and_latency() {
    let b = TestBackend::start("a").await;
    let backend = b.backend("1.0");
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![backend.clone()])]));
    let proxy = TestProxy::start(router, config()).await;
    let client = client();
    for _ in 0..10 {
        get(&client, &proxy.url("/")).await;
    }
    eventually("all bodies to finish", || backend.in_flight() == 0).await;
    let m = backend.metrics();
    assert_eq!((m.requests, m.status[1], m.samples()), (10, 10, 10));
    assert!(m.percentile(0.99).is_some());
}
