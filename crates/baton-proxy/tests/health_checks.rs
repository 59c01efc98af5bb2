//! Active health checks against a real backend.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use baton_proxy::{Backend, Health, HealthCheck, spawn_health_checker};
use support::*;

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
