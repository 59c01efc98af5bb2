//! Webhooks: every deployment event POSTed in order; a dead webhook delays nothing; https
//! webhooks verified against their `ca_file`, and a bad `ca_file` refused at start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::harness::{BATON, Baton, THREE_WEB, free_port, text, wait_until};

/// A webhook receiver that records every JSON body it gets.
pub(crate) async fn receiver() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    receiver_on(None).await
}

/// [`receiver`], serving each connection in TLS with `tls` when given.
async fn receiver_on(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
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
            let tls = tls.clone();
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
                let http = http1::Builder::new();
                let _ = match tls {
                    None => http.serve_connection(TokioIo::new(stream), svc).await,
                    Some(tls) => match tls.accept(stream).await {
                        Ok(stream) => http.serve_connection(TokioIo::new(stream), svc).await,
                        Err(_) => return,
                    },
                };
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

/// A CA's PEM and a TLS acceptor presenting a certificate it issued for `localhost`.
fn https_identity() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_trusts_its_ca_file_and_a_missing_one_is_refused_at_its_line() {
    let (ca_pem, acceptor) = https_identity();
    let (port, got) = receiver_on(Some(acceptor)).await;
    let cas = tempfile::tempdir().unwrap();
    let ca_file = cas.path().join("hooks-ca.pem");
    let notify = format!(
        "[[notify]]\nwebhook = \"https://baton:s3cret@localhost:{port}/hooks/baton\"\nca_file = \"{}\"\n",
        ca_file.display()
    );

    // Before the CA file exists, `baton up` refuses the config at the key naming it.
    let config = cas.path().join("baton.toml");
    let refused = format!("{notify}{THREE_WEB}")
        .replace("@API@", &free_port().to_string())
        .replace("@WEB@", &free_port().to_string());
    std::fs::write(&config, refused).unwrap();
    let o = std::process::Command::new(BATON)
        .args(["up", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}:3:1: notify[0].ca_file", config.display()))
            && err.contains(&ca_file.display().to_string())
            && err.contains("cannot read it"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");

    std::fs::write(&ca_file, ca_pem).unwrap();
    let baton = Baton::start(&format!("{notify}{THREE_WEB}"));
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let delivered = wait_until(Duration::from_secs(20), || {
        got.lock()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "deployment_succeeded")
    });
    assert!(
        delivered,
        "the outcome delivered over https: {:?}; log:\n{}",
        got.lock().unwrap(),
        baton.log()
    );
    assert!(!baton.log().contains("s3cret"));
}
