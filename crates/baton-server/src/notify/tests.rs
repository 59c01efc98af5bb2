//! Notifier tests over real sockets: tiny webhook servers (http, or https with
//! `tls_tests.rs`) that answer as scripted, a dead port and a server that accepts connections
//! and never answers.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::model::Event;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::*;

/// One request a test webhook received, and what it answered.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub body: Value,
    content_type: Option<String>,
    user_agent: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
}

/// A webhook server: answers the scripted statuses in turn, then 200; when `gate` is set,
/// each request waits for a permit before it is answered.
pub(super) struct Hook {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// TCP connections accepted, whether or not a request followed.
    pub connections: Arc<Mutex<usize>>,
}

impl Hook {
    async fn start(script: Vec<u16>, gate: Option<Arc<Semaphore>>) -> Hook {
        Hook::serve(script, gate, None).await
    }

    /// [`Hook::start`] with each connection served in TLS by `tls` when given.
    pub async fn serve(
        script: Vec<u16>,
        gate: Option<Arc<Semaphore>>,
        tls: Option<TlsAcceptor>,
    ) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let log = Arc::clone(&received);
        let accepted = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                *accepted.lock().unwrap() += 1;
                let (log, script, gate) = (Arc::clone(&log), Arc::clone(&script), gate.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (log, script, gate) = (Arc::clone(&log), Arc::clone(&script), gate.clone());
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .map(|v| v.to_str().unwrap().to_owned())
                        };
                        let (content_type, user_agent, authorization) = (
                            header("content-type"),
                            header("user-agent"),
                            header("authorization"),
                        );
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = script.lock().unwrap().pop_front().unwrap_or(200);
                        let body = serde_json::from_slice(&body).unwrap();
                        log.lock().unwrap().push(Received {
                            body,
                            content_type,
                            user_agent,
                            authorization,
                            status,
                        });
                        if let Some(gate) = gate {
                            gate.acquire().await.unwrap().forget();
                        }
                        let response = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls.clone() {
                    None => drop(tokio::spawn(
                        http.serve_connection(TokioIo::new(stream), svc),
                    )),
                    Some(tls) => drop(tokio::spawn(async move {
                        // A refused handshake is what some tests are about: it just ends here.
                        if let Ok(stream) = tls.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    })),
                }
            }
        });
        Hook {
            addr,
            received,
            connections,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn attempts(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Ids of the events answered 2xx, in the order they arrived.
    pub fn delivered(&self) -> Vec<i64> {
        self.attempts()
            .iter()
            .filter(|r| StatusCode::from_u16(r.status).unwrap().is_success())
            .map(|r| r.body["id"].as_i64().unwrap())
            .collect()
    }
}

/// A port with nothing listening on it.
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

/// A server that accepts connections and never reads or answers.
async fn hanging_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{addr}/hook")
}

/// Polls `condition` until it holds; panics with `what` after a generous deadline.
pub(super) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) fn event(id: i64) -> Event {
    Event {
        id,
        at: 1_700_000_000_000 + id,
        app: "web".into(),
        deployment: Some(7),
        kind: "deployment_step".into(),
        message: format!("step {id}"),
    }
}

/// Fast retries, so tests that exercise them finish quickly; no assertion depends on timing.
/// The attempt timeout stays long: a loaded test machine must not turn a slow 200 into a retry.
pub(super) fn quick() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(5),
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        max_attempts: 8,
    }
}

#[tokio::test]
async fn events_arrive_in_order_with_the_documented_body_and_headers() {
    let hook = Hook::start(vec![], None).await;
    let notifier = Notifier::new(vec![hook.url()], quick()).unwrap();
    for id in 1..=20 {
        notifier.notify(&event(id));
    }
    eventually("20 deliveries", || hook.delivered().len() == 20).await;
    assert_eq!(hook.delivered(), (1..=20).collect::<Vec<_>>());
    let first = &hook.attempts()[0];
    assert_eq!(
        first.body,
        serde_json::json!({"id": 1, "at": 1_700_000_000_001_i64, "app": "web", "env": "production", "deployment": 7, "kind": "deployment_step", "message": "step 1", "source": "baton"})
    );
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    assert_eq!(first.user_agent.as_deref(), Some("baton"));
    assert_eq!(first.authorization, None);
}

#[tokio::test]
async fn a_failing_event_is_retried_and_holds_back_later_ones() {
    let hook = Hook::start(vec![500, 500], None).await;
    let notifier = Notifier::new(vec![hook.url()], quick()).unwrap();
    for id in 1..=3 {
        notifier.notify(&event(id));
    }
    eventually("3 deliveries", || hook.delivered().len() == 3).await;
    let attempts: Vec<_> = hook
        .attempts()
        .iter()
        .map(|r| (r.body["id"].as_i64().unwrap(), r.status))
        .collect();
    assert_eq!(attempts, [(1, 500), (1, 500), (1, 200), (2, 200), (3, 200)]);
}

#[tokio::test]
async fn an_event_is_given_up_after_max_attempts_and_the_next_goes_on() {
    let hook = Hook::start(vec![503, 503, 503], None).await;
    let notifier = Notifier::new(
        vec![hook.url()],
        RetryPolicy {
            max_attempts: 3,
            ..quick()
        },
    )
    .unwrap();
    notifier.notify(&event(1));
    notifier.notify(&event(2));
    eventually("event 2", || hook.delivered() == [2]).await;
    let ids: Vec<_> = hook
        .attempts()
        .iter()
        .map(|r| r.body["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 1, 1, 2]);
}

#[tokio::test]
async fn dead_and_hanging_webhooks_block_neither_notify_nor_a_healthy_webhook() {
    let healthy = Hook::start(vec![], None).await;
    let urls = vec![dead_url().await, hanging_url().await, healthy.url()];
    let notifier = Notifier::new(
        urls,
        RetryPolicy {
            max_attempts: 2,
            ..quick()
        },
    )
    .unwrap();
    for id in 1..=1000 {
        notifier.notify(&event(id));
    }
    eventually("1000 deliveries to the healthy webhook", || {
        healthy.delivered().len() == 1000
    })
    .await;
    assert_eq!(healthy.delivered(), (1..=1000).collect::<Vec<_>>());
    assert!(
        notifier.pending() > 0,
        "the dead and hanging webhooks cannot have caught up yet"
    );
    // Bounded by its grace, whatever the hanging webhook does.
    notifier.flush(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn a_hanging_attempt_is_bounded_by_the_attempt_timeout() {
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(100),
        max_attempts: 2,
        ..quick()
    };
    let notifier = Notifier::new(vec![hanging_url().await], policy).unwrap();
    notifier.notify(&event(1));
    // Two attempts that each time out, then the event is given up and the queue is empty.
    notifier.flush(Duration::from_secs(20)).await;
    assert_eq!(notifier.pending(), 0);
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_undelivered_events() {
    let gate = Arc::new(Semaphore::new(0));
    let hook = Hook::start(vec![], Some(Arc::clone(&gate))).await;
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_secs(60),
        ..quick()
    };
    let notifier = Notifier::with_queue_capacity(vec![hook.url()], policy, 4).unwrap();
    notifier.notify(&event(1));
    eventually("event 1 in flight", || hook.attempts().len() == 1).await;
    for id in 2..=10 {
        notifier.notify(&event(id));
    }
    assert_eq!(
        notifier.pending(),
        5,
        "event 1 in flight and the 4 newest waiting"
    );
    gate.add_permits(100);
    eventually("the kept events", || hook.delivered().len() == 5).await;
    assert_eq!(hook.delivered(), [1, 7, 8, 9, 10]);
}

#[tokio::test]
async fn flush_waits_until_the_queues_are_drained() {
    let a = Hook::start(vec![500], None).await;
    let b = Hook::start(vec![], None).await;
    let notifier = Notifier::new(vec![a.url(), b.url()], quick()).unwrap();
    for id in 1..=10 {
        notifier.notify(&event(id));
    }
    notifier.flush(Duration::from_secs(20)).await;
    assert_eq!(notifier.pending(), 0);
    assert_eq!(a.delivered(), (1..=10).collect::<Vec<_>>());
    assert_eq!(b.delivered(), (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn userinfo_is_sent_as_basic_auth() {
    let hook = Hook::start(vec![], None).await;
    let url = format!("http://baton:s3cret@{}/hook?token=x", hook.addr);
    let notifier = Notifier::new(vec![url], quick()).unwrap();
    notifier.notify(&event(1));
    eventually("one delivery", || hook.delivered().len() == 1).await;
    // base64("baton:s3cret")
    assert_eq!(
        hook.attempts()[0].authorization.as_deref(),
        Some("Basic YmF0b246czNjcmV0")
    );
    assert!(!format!("{notifier:?}").contains("s3cret"));
}

#[tokio::test]
async fn malformed_urls_are_refused_at_construction() {
    let healthy = Hook::start(vec![], None).await;
    let err = Notifier::new(
        vec![healthy.url(), "hooks.example/x".into()],
        RetryPolicy::default(),
    )
    .unwrap_err();
    assert!(matches!(err, NotifyError::InvalidUrl { .. }), "{err}");
}

#[test]
fn construction_outside_a_runtime_is_an_error_not_a_panic() {
    let err =
        Notifier::new(vec!["http://127.0.0.1:9/".into()], RetryPolicy::default()).unwrap_err();
    assert!(matches!(err, NotifyError::NoRuntime), "{err}");
}

#[test]
fn disabled_notifier_accepts_events_and_has_nothing_pending() {
    let notifier = Notifier::disabled();
    notifier.notify(&event(1));
    assert_eq!(notifier.pending(), 0);
}

#[test]
fn deployment_events_are_told_from_instance_events() {
    for kind in [
        "deployment_started",
        "deployment_step",
        "deployment_paused",
        "deployment_held",
        "verdict_failed",
        "deployment_promoted",
        "deployment_aborting",
        "deployment_rolled_back",
        "deployment_succeeded",
        "config_reloaded",
        "flag_changed",
    ] {
        assert!(is_deployment_event(kind), "{kind}");
    }
    for kind in ["instance_started", "split_changed", "drain_timed_out"] {
        assert!(!is_deployment_event(kind), "{kind}");
    }
}
