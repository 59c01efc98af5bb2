//! Test fixtures: tiny hyper backends on port 0, a proxy on port 0, a client, a polling helper;
//! raw HTTP/1.x on the wire in [`wire`].
#![allow(dead_code)]

pub mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use baton_proxy::{AppRoute, Backend, Health, ListenerConfig, ReleaseRoute, Router, RoutingTable};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

/// Polls `cond` until it holds, failing the test after a generous deadline.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A backend that answers:
/// `/` with its name (also in `x-backend`), `/headers` with the headers it received,
/// `/slow` once the test adds a permit to `gate`, `/stream` with one chunk at once and one
/// after a permit, `/hang` never, `/health` 200 or 500 per
/// `healthy`, and `Connection: upgrade` with 101 then an echo of every byte.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub gate: Arc<Semaphore>,
    pub healthy: Arc<AtomicBool>,
    pub health_hits: Arc<AtomicU64>,
    pub hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    name: String,
    gate: Arc<Semaphore>,
    healthy: Arc<AtomicBool>,
    health_hits: Arc<AtomicU64>,
    hits: Arc<AtomicU64>,
}

impl TestBackend {
    pub async fn start(name: &str) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            name: name.to_string(),
            gate: Arc::new(Semaphore::new(0)),
            healthy: Arc::new(AtomicBool::new(true)),
            health_hits: Arc::new(AtomicU64::new(0)),
            hits: Arc::new(AtomicU64::new(0)),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        TestBackend {
            name: name.to_string(),
            addr,
            gate: state.gate.clone(),
            healthy: state.healthy.clone(),
            health_hits: state.health_hits.clone(),
            hits: state.hits.clone(),
            task,
        }
    }

    /// A proxy-side backend for it, already healthy.
    pub fn backend(&self, release: &str) -> Arc<Backend> {
        let b = Backend::new(self.name.clone(), release.to_string(), self.addr, 3);
        b.set_health(Health::Healthy);
        b
    }
}

type TestBody = Either<Full<Bytes>, Channel<Bytes>>;

async fn answer(
    s: Arc<State>,
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("x-backend", s.name.as_str())
            .body(Either::Left(Full::new(Bytes::from(body))))
            .unwrap()
    };
    if req.uri().path() == "/health" {
        s.health_hits.fetch_add(1, SeqCst);
        let status = if s.healthy.load(SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return Ok(text(status, String::new()));
    }
    s.hits.fetch_add(1, SeqCst);
    if req.headers().contains_key("upgrade") {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Either::Left(Full::new(Bytes::new())))
            .unwrap();
        return Ok(response);
    }
    Ok(match req.uri().path() {
        "/headers" => {
            let mut body = String::new();
            for (k, v) in req.headers() {
                body.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            text(StatusCode::OK, body)
        }
        "/slow" => {
            s.gate.acquire().await.unwrap().forget();
            text(StatusCode::OK, format!("slow {}", s.name))
        }
        "/hang" => std::future::pending().await,
        "/stream" => {
            let (mut tx, body) = Channel::new(1);
            let gate = s.gate.clone();
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"first ")).await;
                gate.acquire().await.unwrap().forget();
                let _ = tx.send_data(Bytes::from_static(b"second")).await;
            });
            Response::new(Either::Right(body))
        }
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            text(StatusCode::OK, String::from_utf8_lossy(&body).into_owned())
        }
        _ => text(StatusCode::OK, s.name.clone()),
    })
}

/// An address nothing listens on (bound, then closed).
pub async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// One app `web` with the given releases.
pub fn table(releases: Vec<(&str, u32, Vec<Arc<Backend>>)>) -> RoutingTable {
    let releases = releases
        .into_iter()
        .map(|(release, weight, backends)| ReleaseRoute {
            release: release.to_string(),
            weight,
            backends,
        })
        .collect();
    RoutingTable {
        apps: [(
            "web".to_string(),
            AppRoute {
                releases,
                affinity: None,
                mirror: None,
            },
        )]
        .into_iter()
        .collect(),
    }
}

/// A proxy for app `web` with `backend` as its only instance.
pub async fn proxy_to(backend: Arc<Backend>, cfg: ListenerConfig) -> TestProxy {
    let router = Router::new();
    router.publish(table(vec![("1.0", 100, vec![backend])]));
    TestProxy::start(router, cfg).await
}

/// A running proxy for app `web`; shuts down on drop.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub router: Arc<Router>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestProxy {
    pub async fn start(router: Arc<Router>, cfg: ListenerConfig) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(baton_proxy::serve(
            listener,
            "web".into(),
            router.clone(),
            cfg,
            shutdown,
        ));
        TestProxy {
            addr,
            router,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and returns the serve task.
    pub fn shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn config() -> ListenerConfig {
    ListenerConfig {
        request_timeout: Duration::from_secs(30),
        max_header_bytes: 16 * 1024,
        tls: None,
        upgrade_grace: Duration::from_secs(30),
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Status, headers and body text of one request.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Answer {
    let response = client.request(req).await.expect("proxy answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &TestClient, url: &str) -> Answer {
    send(
        client,
        Request::get(url).body(Full::new(Bytes::new())).unwrap(),
    )
    .await
}

/// Sends raw bytes on a fresh connection and returns everything read until the server closes
/// or the head ends (`\r\n\r\n`), whichever first.
pub async fn raw_head(addr: SocketAddr, request: &[u8]) -> (TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

/// Runs `f` on a spawned task (so a test can hold a request open while doing other things).
pub fn spawn<F: Future + Send + 'static>(f: F) -> JoinHandle<F::Output>
where
    F::Output: Send + 'static,
{
    tokio::spawn(f)
}
