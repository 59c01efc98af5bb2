//! Webhooks: every deployment event POSTed in order; a dead webhook delays nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::harness::{Baton, THREE_WEB, free_port, wait_until};

/// A webhook receiver that records every JSON body it gets.
pub(crate) async fn receiver() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        seen.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_the_events_in_order_and_a_dead_one_delays_nothing() {
    let (port, got) = receiver().await;
    let dead = free_port();
    let config = format!(
        "[[notify]]\nwebhook = \"http://127.0.0.1:{dead}/hooks/dead\"\n\n[[notify]]\nwebhook = \"http://127.0.0.1:{port}/hooks/baton\"\n{THREE_WEB}"
    );
    let baton = Baton::start(&config);
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    baton
        .deploy_ok("web", "1.1.0", &["--strategy", "blue-green"])
        .await;

    let complete = wait_until(Duration::from_secs(20), || {
        got.lock()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "deployment_succeeded")
            .count()
            == 2
    });
    assert!(
        complete,
        "both outcomes delivered: {:?}",
        got.lock().unwrap()
    );
    let events = got.lock().unwrap().clone();
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "delivered in order");
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["deployment"] == 2)
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "deployment_created",
            "deployment_started",
            "deployment_step",
            "deployment_succeeded"
        ]
    );
    assert!(events.iter().all(|e| e["app"] == "web"
        && e["env"] == "production"
        && e["source"] == "baton"
        && e["message"].is_string()));
}
