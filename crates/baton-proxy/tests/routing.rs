//! Routing through a real proxy: atomic publish, 503 without an eligible backend, forwarded
//! headers, drain.

mod support;

use std::time::Duration;

use baton_proxy::{Backend, Health, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

#[tokio::test]
async fn publish_switches_every_new_request() {
    let blue = TestBackend::start("blue").await;
    let green = TestBackend::start("green").await;
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![blue.backend("1.0")])]));
    let proxy = TestProxy::start(router.clone(), config()).await;
    let client = client();
    for _ in 0..5 {
        assert_eq!(get(&client, &proxy.url("/")).await.body, "blue");
    }
    router.publish(table(vec![("2.0", 100, vec![green.backend("2.0")])]));
    for _ in 0..50 {
        let answer = get(&client, &proxy.url("/")).await;
        assert_eq!(
            (answer.status.as_u16(), answer.body.as_str()),
            (200, "green")
        );
    }
}

#[tokio::test]
async fn no_eligible_backend_is_503() {
    let b = TestBackend::start("a").await;
    let starting = Backend::new("a".into(), "1.0".into(), b.addr, 3);
    let router = Router::new();
    let proxy = TestProxy::start(router.clone(), config()).await;
    let client = client();
    // No app in the table at all.
    assert_eq!(get(&client, &proxy.url("/")).await.status, 503);
    // A backend that has not passed its checks yet.
    router.publish(table(vec![("1.0", 100, vec![starting.clone()])]));
    let answer = get(&client, &proxy.url("/")).await;
    assert_eq!(answer.status, 503);
    assert!(!answer.body.is_empty());
    starting.set_health(Health::Healthy);
    assert_eq!(get(&client, &proxy.url("/")).await.status, 200);
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn backend_sees_forwarded_headers_and_no_hop_by_hop() {
    let b = TestBackend::start("a").await;
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![b.backend("1.0")])]));
    let proxy = TestProxy::start(router, config()).await;
    let client = client();

    let request = Request::get(proxy.url("/headers"))
        .header("host", "shop.example")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .header("proxy-authorization", "basic eA==")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let seen = send(&client, request).await.body;
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(seen.contains("x-forwarded-host: shop.example\n"), "{seen}");
    assert!(seen.contains("host: shop.example\n"), "{seen}");
    let id = seen
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("a request id");
    assert!(
        id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(!seen.contains("x-secret"), "{seen}");
    assert!(!seen.contains("proxy-authorization"), "{seen}");

    let request = Request::get(proxy.url("/headers"))
        .header("x-request-id", "client-chosen")
        .header("x-forwarded-for", "10.1.2.3")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let seen = send(&client, request).await.body;
    assert!(seen.contains("x-request-id: client-chosen\n"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1\n"),
        "{seen}"
    );
}

#[tokio::test]
async fn draining_backend_gets_nothing_new_and_finishes_what_it_has() {
    let old = TestBackend::start("old").await;
    let new = TestBackend::start("new").await;
    let old_backend = old.backend("1.0");
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![old_backend.clone()])]));
    let proxy = TestProxy::start(router.clone(), config()).await;
    let client = client();

    let slow = spawn({
        let client = client.clone();
        let url = proxy.url("/slow");
        async move { get(&client, &url).await }
    });
    eventually("the slow request to reach the old backend", || {
        old_backend.in_flight() == 1
    })
    .await;

    // The drain starts while the old table (which still names the old backend) is published.
    old_backend.start_drain();
    router.publish(table(vec![(
        "1.0",
        100,
        vec![old_backend.clone(), new.backend("1.0")],
    )]));
    assert!(
        !old_backend.wait_idle(Duration::from_millis(1)).await,
        "the slow request is still in flight"
    );
    for _ in 0..20 {
        assert_eq!(get(&client, &proxy.url("/")).await.body, "new");
    }

    let idle = spawn({
        let b = old_backend.clone();
        async move { b.wait_idle(Duration::from_secs(30)).await }
    });
    old.gate.add_permits(1);
    let answer = slow.await.unwrap();
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "slow old")
    );
    assert!(
        idle.await.unwrap(),
        "wait_idle returns true once the request finished"
    );
    assert_eq!(old_backend.in_flight(), 0);
    assert_eq!(old.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn in_flight_lasts_until_the_response_body_is_sent() {
    use http_body_util::BodyExt;

    let b = TestBackend::start("a").await;
    let backend = b.backend("1.0");
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![backend.clone()])]));
    let proxy = TestProxy::start(router, config()).await;
    let client = client();

    let response = client
        .request(
            Request::get(proxy.url("/stream"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first ");
    backend.start_drain();
    assert_eq!(
        backend.in_flight(),
        1,
        "headers and a chunk arrived, but the body is not done"
    );
    assert!(!backend.wait_idle(Duration::from_millis(1)).await);

    b.gate.add_permits(1);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
    assert!(backend.wait_idle(Duration::from_secs(30)).await);
}
