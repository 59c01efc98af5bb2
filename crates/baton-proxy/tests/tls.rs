//! HTTPS on a listener: Baton's own HTTP/1.1 server over TLS, the hand-over to hyper (a
//! chunked body) over TLS, and HTTP/2 chosen by ALPN; every request tells the instance
//! `X-Forwarded-Proto: https`.

mod support;

use std::sync::Arc;

use baton_core::config::CertConfig;
use baton_proxy::{ListenerConfig, Tls};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use support::{TestBackend, config, proxy_to};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A self-signed certificate for `web.test` in `dir`: the listener's TLS, and a client
/// trusting it and offering `alpn`.
fn tls(dir: &std::path::Path) -> (Arc<Tls>, rustls::RootCertStore) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["web.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("web.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("web.key"), key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let tls = Tls::load(vec![CertConfig {
        cert: dir.join("web.pem"),
        key: dir.join("web.key"),
        names: Vec::new(),
    }])
    .unwrap();
    (tls, roots)
}

async fn connect(
    addr: std::net::SocketAddr,
    roots: &rustls::RootCertStore,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("web.test").unwrap(), tcp)
        .await
        .unwrap()
}

async fn body(res: hyper::Response<hyper::body::Incoming>) -> String {
    assert_eq!(res.status(), 200);
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn http1_and_h2_over_tls_forward_https() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, roots) = tls(dir.path());
    let b = TestBackend::start("a").await;
    let cfg = ListenerConfig {
        tls: Some(tls),
        ..config()
    };
    let proxy = proxy_to(b.backend("1.0"), cfg).await;

    // HTTP/1.1 (ALPN), keep-alive: Baton's own server, then hyper for a chunked body.
    let stream = connect(proxy.addr, &roots, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("/headers")
            .header("host", "web.test")
            .header("x-forwarded-proto", "http")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let seen = body(sender.send_request(req).await.unwrap()).await;
        assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
        assert!(!seen.contains("x-forwarded-proto: http\n"), "{seen}");
    }
    let (mut tx, chunked) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
    tokio::spawn(async move {
        for part in ["hello ", "over ", "tls"] {
            let _ = tx.send_data(Bytes::from(part)).await;
        }
    });
    let (mut sender2, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(connect(proxy.addr, &roots, &[]).await))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/echo")
        .header("host", "web.test")
        .header("transfer-encoding", "chunked")
        .body(chunked)
        .unwrap();
    assert_eq!(
        body(sender2.send_request(req).await.unwrap()).await,
        "hello over tls"
    );

    // HTTP/2 by ALPN.
    let stream = connect(proxy.addr, &roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://web.test/headers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let seen = body(h2.send_request(req).await.unwrap()).await;
    assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_with_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, roots) = tls(dir.path());
    let b = TestBackend::start("a").await;
    let cfg = ListenerConfig {
        tls: Some(tls),
        request_timeout: std::time::Duration::from_millis(200),
        ..config()
    };
    let mut proxy = proxy_to(b.backend("1.0"), cfg).await;
    // Connected, and never a ClientHello.
    let mut stalled = TcpStream::connect(proxy.addr).await.unwrap();
    // Accepted in order: once a later connection has its handshake, this one was accepted.
    connect(proxy.addr, &roots, &[]).await;
    proxy.shutdown().await.unwrap().unwrap();
    // After the grace (request_timeout) the listener says "close now": the handshake gives up
    // then, long before HANDSHAKE_TIMEOUT.
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(
        baton_proxy::HANDSHAKE_TIMEOUT / 2,
        tokio::io::AsyncReadExt::read(&mut stalled, &mut byte),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the stalled handshake outlived the listener: {closed:?}"
    );
}
