//! Requests from an outsider's attack on the proxy (`tests/data/http-probes.jsonl`: each probe's
//! name and the exact bytes its client sent), replayed against the real proxy on both HTTP/1.1
//! server sides ([`Path`]), and h2c requests breaking the same rules.
//!
//! The rule every probe checks: one client request in, at most one unambiguous request out,
//! with the same body boundary the proxy used, and nothing RFC 9112 forbids passed on. Every
//! read is bounded by [`DEADLINE`], which only a hang reaches.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::wire::*;
use support::*;

/// Which HTTP/1.1 server side serves a request (see `tests/parity.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Baton,
    Hyper,
}

impl Path {
    const BOTH: [Path; 2] = [Path::Baton, Path::Hyper];

    /// `raw` with, on hyper's path, a header line after the request line that hands the
    /// connection to hyper (`Connection` naming another header).
    fn put(self, raw: &[u8]) -> Vec<u8> {
        match self {
            Path::Baton => raw.to_vec(),
            Path::Hyper => {
                let end = raw
                    .iter()
                    .position(|b| *b == b'\n')
                    .expect("a request line")
                    + 1;
                let mut out = raw[..end].to_vec();
                out.extend_from_slice(b"Connection: keep-alive, x-hyper\r\n");
                out.extend_from_slice(&raw[end..]);
                out
            }
        }
    }
}

/// The probes: name and client bytes.
fn probes() -> Vec<(String, Vec<u8>)> {
    include_str!("data/http-probes.jsonl")
        .lines()
        .map(|line| {
            let probe: serde_json::Value = serde_json::from_str(line).unwrap();
            // The bytes are stored one character each (Latin-1).
            let client = probe["client"]
                .as_str()
                .unwrap()
                .chars()
                .map(|c| u8::try_from(u32::from(c)).expect("a byte"))
                .collect();
            (probe["name"].as_str().unwrap().to_string(), client)
        })
        .collect()
}

/// The client bytes of the probe called `name`.
fn probe(name: &str) -> Vec<u8> {
    probes()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no probe {name}"))
        .1
}

/// A backend answering every request with a short 200.
async fn echo() -> Scripted {
    Scripted::start(|_| Reply::Keep(ok(b"ok"))).await
}

/// Sends `raw` on a fresh connection and returns the first response (to a request of
/// `method`), and the connection.
async fn first_response(
    addr: std::net::SocketAddr,
    raw: &[u8],
    method: &str,
) -> (Response, Client) {
    let mut client = Client::connect(addr).await;
    client.send(raw).await;
    let response = client.response_to(method).await;
    (response, client)
}

/// A probe the proxy must refuse with `status` on both paths, sending nothing to the instance
/// and closing the connection (the bytes after it cannot be trusted to start a request).
async fn refused(name: &str, status: u16) {
    let backend = echo().await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    for path in Path::BOTH {
        let (response, mut client) =
            first_response(proxy.addr, &path.put(&probe(name)), "GET").await;
        let closed = client.wire.until_close().await.is_empty();
        assert_eq!(
            response.status, status,
            "{name} on {path:?}: {:?}",
            response.head
        );
        assert!(response.head.connection_has("close"), "{name} on {path:?}");
        assert!(closed, "{name} on {path:?}: the connection closes");
        let sent = backend.take();
        assert!(
            sent.is_empty(),
            "{name} on {path:?}: the instance got {sent:?}"
        );
    }
}

// RFC 9112 3.2: a server must answer 400 to more than one Host.
#[tokio::test]
async fn a_duplicate_host_is_refused() {
    refused("host_dup_same", 400).await;
    refused("host_dup_diff", 400).await;
}

// RFC 9112 3.2: an HTTP/1.1 request without a Host, or with an invalid one, is a 400.
#[tokio::test]
async fn a_missing_or_invalid_host_is_refused() {
    refused("http11_nohost", 400).await;
    refused("xfh_spoof_nohost", 400).await;
    refused("host_invalid_chars", 400).await;
}

// A client's X-Forwarded-Host must not reach the instance as if the proxy had said it.
#[tokio::test]
async fn without_a_host_a_clients_forwarded_host_is_dropped() {
    let backend = echo().await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    for path in Path::BOTH {
        let raw = path.put(b"GET /h HTTP/1.0\r\nX-Forwarded-Host: evil\r\n\r\n");
        let mut client = Client::connect_lenient(proxy.addr).await;
        client.send(raw).await;
        assert_eq!(client.response().await.status, 200, "{path:?}");
        let sent = backend.take();
        assert_eq!(sent.len(), 1, "{path:?}");
        assert_eq!(
            sent[0].head.all("x-forwarded-host"),
            Vec::<&str>::new(),
            "{path:?}"
        );
        let own = backend.backend.addr().to_string();
        assert_eq!(sent[0].head.all("host"), [own.as_str()], "{path:?}");
    }
}

// RFC 9112 3.2.2: the authority of an absolute-form target replaces the Host.
#[tokio::test]
async fn an_absolute_form_targets_authority_is_the_host() {
    let backend = echo().await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    for path in Path::BOTH {
        let (response, mut client) =
            first_response(proxy.addr, &path.put(&probe("absolute_form")), "GET").await;
        assert_eq!(response.status, 200, "{path:?}");
        // The probe's second request, so that both are in the log.
        assert_eq!(client.response().await.status, 200, "{path:?}");
        let sent = backend.take();
        assert_eq!(sent[0].target_str(), "/abs?q=1", "{path:?}");
        assert_eq!(sent[0].head.all("host"), ["evil.example"], "{path:?}");
        assert_eq!(
            sent[0].head.all("x-forwarded-host"),
            ["evil.example"],
            "{path:?}"
        );
    }
    // RFC 9110 4.2.4: userinfo in the target is an error.
    refused("absolute_form_userinfo", 400).await;
}

// A coding the proxy does not apply must not reach the instance undecoded and unlabelled.
#[tokio::test]
async fn transfer_codings_other_than_one_chunked_are_refused() {
    refused("te_gzip_chunked", 501).await;
    refused("te_gzip_chunked_nocl", 501).await;
    refused("te_identity_chunked_nocl", 501).await;
    refused("te_dup_chunked_chunked", 400).await;
    refused("te_chunked_chunked_nocl", 400).await;
    refused("te_dup_chunked_nocl", 400).await;
}

// RFC 9112 3.2: authority-form is CONNECT's, asterisk-form OPTIONS's; a reverse proxy opens no
// tunnels; a target is visible ASCII.
#[tokio::test]
async fn targets_rfc_9112_rejects_are_refused() {
    refused("connect", 501).await;
    refused("connect_path", 501).await;
    refused("authority_form_get", 400).await;
    refused("asterisk_get", 400).await;
    refused("target_utf8", 400).await;
    let backend = echo().await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    for path in Path::BOTH {
        let (response, mut client) =
            first_response(proxy.addr, &path.put(&probe("asterisk_options")), "OPTIONS").await;
        assert_eq!(response.status, 200, "{path:?}");
        assert_eq!(client.response().await.status, 200, "{path:?}");
        assert_eq!(backend.take()[0].target_str(), "*", "{path:?}");
    }
}

// RFC 9112 2.3: a higher HTTP/1.x minor version is served as 1.1.
#[tokio::test]
async fn http_1_2_is_served_as_http_1_1() {
    let backend = echo().await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect(proxy.addr).await;
    client.send(probe("http_1_2")).await;
    assert_eq!(client.response().await.status, 200);
    assert_eq!(client.response().await.status, 200);
    let sent = backend.take();
    let targets: Vec<&str> = sent.iter().map(|r| r.target_str()).collect();
    assert_eq!(targets, ["/a", "/next"]);
}

// httpoxy, and claims about the client the proxy cannot check.
#[tokio::test]
async fn proxy_and_forwarded_are_dropped_and_x_real_ip_is_the_peer() {
    let backend = echo().await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    for path in Path::BOTH {
        for name in ["hop_by_hop_set", "forwarded_spoof"] {
            let (response, _) = first_response(proxy.addr, &path.put(&probe(name)), "GET").await;
            assert_eq!(response.status, 200, "{name} on {path:?}");
        }
        for sent in backend.take().iter().filter(|r| r.target_str() != "/next") {
            let head = &sent.head;
            assert_eq!(head.all("proxy"), Vec::<&str>::new(), "{path:?}: {head:?}");
            assert_eq!(
                head.all("forwarded"),
                Vec::<&str>::new(),
                "{path:?}: {head:?}"
            );
            assert_eq!(head.all("x-real-ip"), ["127.0.0.1"], "{path:?}: {head:?}");
        }
    }
}

// RFC 9112 7: chunked is applied at most once; a backend naming it before another coding
// cannot be re-framed without naming it twice.
#[tokio::test]
async fn a_backend_response_with_chunked_not_last_is_a_bad_gateway() {
    let backend = Scripted::start(|_| {
        Reply::Close(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    for path in Path::BOTH {
        let mut client = Client::connect(proxy.addr).await;
        client.send(path.put(get_request("/sse").as_bytes())).await;
        let response = client.response().await;
        assert_eq!(response.status, 502, "{path:?}: {:?}", response.head);
    }
}

// A client gone while its streamed response is idle must not hold the instance's in-flight
// count (drains and graceful shutdowns wait for it) or a socket in CLOSE-WAIT.
#[tokio::test]
async fn a_client_gone_during_an_idle_stream_ends_the_request() {
    let backend = Scripted::start(|_| {
        Reply::Keep(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\nhello\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    for path in Path::BOTH {
        let mut client = Client::connect(proxy.addr).await;
        client
            .send(path.put(get_request("/events").as_bytes()))
            .await;
        let (status, head) = client.next_head().await;
        assert_eq!(status, 200, "{path:?}");
        assert!(head.is_chunked(), "{path:?}");
        assert_eq!(client.wire.chunk().await.unwrap(), b"hello\n", "{path:?}");
        assert_eq!(backend.backend.in_flight(), 1, "{path:?}");
        drop(client);
        eventually(&format!("{path:?}: the request to end"), || {
            backend.backend.in_flight() == 0
        })
        .await;
    }
}

/// An h2c request to the proxy with `host` headers besides `:authority`.
async fn h2c(addr: std::net::SocketAddr, hosts: &[&str]) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = Request::get("http://a.example/a");
    for host in hosts {
        request = request.header("host", *host);
    }
    let response = within(
        "an h2c answer",
        sender.send_request(request.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

// RFC 9113 8.3.1: a Host naming another entity than :authority is malformed; two are too.
#[tokio::test]
async fn h2c_hosts_must_agree_with_the_authority() {
    let backend = echo().await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    assert_eq!(h2c(proxy.addr, &["a", "b"]).await, 400);
    assert_eq!(h2c(proxy.addr, &["b.example"]).await, 400);
    assert!(backend.take().is_empty());
    assert_eq!(h2c(proxy.addr, &["a.example"]).await, 200);
    assert_eq!(backend.take()[0].head.all("host"), ["a.example"]);
}

/// Whether a request as the instance received it is one RFC 9112 allows a proxy to send.
fn check_sent(name: &str, sent: &Received) {
    let head = &sent.head;
    assert_eq!(head.all("host").len(), 1, "{name}: {head:?}");
    let codings = head.all("transfer-encoding");
    assert!(
        codings.is_empty() || codings == ["chunked"],
        "{name}: {head:?}"
    );
    assert!(
        codings.is_empty() || head.all("content-length").is_empty(),
        "{name}: {head:?}"
    );
    assert!(head.all("content-length").len() <= 1, "{name}: {head:?}");
    let target = &sent.target;
    assert!(
        target.starts_with(b"/") || (sent.method == "OPTIONS" && target == b"*"),
        "{name}: {head:?}"
    );
    assert!(target.iter().all(u8::is_ascii_graphic), "{name}: {head:?}");
    for hop in [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy",
        "forwarded",
    ] {
        assert!(
            head.all(hop).is_empty() || (hop == "connection" || hop == "upgrade"),
            "{name}: {hop} passed on: {head:?}"
        );
    }
}

// No probe crashes or hangs the proxy, and nothing RFC 9112 forbids reaches the instance.
#[tokio::test]
async fn every_probe_leaves_the_proxy_serving_and_the_instance_safe() {
    let backend = echo().await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let addr = proxy.addr;
    let probes = probes();
    assert!(probes.len() > 100);
    let mut tasks = Vec::new();
    for (name, raw) in probes {
        let backend_probe = Arc::new(name);
        tasks.push(tokio::spawn(async move {
            for path in Path::BOTH {
                let mut client = Client::connect_lenient(addr).await;
                // A probe may leave the proxy waiting for more; each connection gets until
                // the proxy answers a request of its own on another connection.
                let _ = client.wire.write(&path.put(&raw)).await;
                let mut other = Client::connect(addr).await;
                let answered = other.get("/alive").await;
                assert_eq!(answered.status, 200, "{backend_probe} on {path:?}");
                drop(client);
            }
        }));
    }
    for task in tasks {
        within("a probe", task).await.unwrap();
    }
    eventually("every request to end", || backend.backend.in_flight() == 0).await;
    let sent = backend.take();
    assert!(sent.iter().any(|r| r.target_str() == "/alive"));
    for request in &sent {
        check_sent("a probe", request);
    }
}
