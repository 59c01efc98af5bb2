//! The host's health endpoints for external load balancers (`external_lb`,
//! docs/design-notes.md "Many hosts and containers"): for each such app, a listener on the
//! host's address at `health_port`, never the app's own port, answering any request with 200
//! while the controller wants the host to get traffic and the host's proxy has a healthy
//! instance of the app, else 503. It reads no more than a request head and closes the
//! connection after each answer: a load balancer's check needs nothing else.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use baton_proxy::Router;
use baton_proxy::handoff::Sockets;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The most of a request the endpoint reads before it answers.
const MAX_HEAD: usize = 8192;
/// The longest it waits for a request head before it answers anyway.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest it takes to write the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections answered at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// One app's endpoint on this host.
pub(crate) struct Endpoint {
    pub(crate) port: u16,
    passing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    /// Listens on `address:port` (the socket a restarted agent handed over, if it had one
    /// there) and answers for `app` from now on.
    pub(crate) async fn bind(
        sockets: &Sockets,
        address: IpAddr,
        port: u16,
        app: &str,
        router: Arc<Router>,
        passing: bool,
    ) -> std::io::Result<Endpoint> {
        let listener = sockets
            .listen(&socket_name(app), SocketAddr::new(address, port))
            .await?;
        tracing::info!(app, listen = %listener.local_addr()?, "load-balancer health endpoint listening");
        let flag = Arc::new(AtomicBool::new(passing));
        let task = tokio::spawn(serve(listener, app.to_string(), router, flag.clone()));
        Ok(Endpoint {
            port,
            passing: flag,
            task,
        })
    }

    /// Whether the controller wants the host to get traffic.
    pub(crate) fn set_passing(&self, passing: bool) {
        self.passing.store(passing, Ordering::Relaxed);
    }
}

async fn serve(listener: TcpListener, app: String, router: Arc<Router>, passing: Arc<AtomicBool>) {
    let app: Arc<str> = app.into();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(app = %app, error = %e, "health endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (app, router, passing) = (app.clone(), router.clone(), passing.clone());
        tokio::spawn(async move {
            let up = passing.load(Ordering::Relaxed) && serves(&router, &app);
            answer(stream, up).await;
            drop(permit);
        });
    }
}

/// The name of `app`'s endpoint among the sockets a restart hands over.
pub(crate) fn socket_name(app: &str) -> String {
    format!("lb:{app}")
}

/// Whether the host's proxy has an instance of `app` it would route to.
fn serves(router: &Router, app: &str) -> bool {
    router.current().apps.get(app).is_some_and(|route| {
        route
            .releases
            .iter()
            .any(|r| r.weight > 0 && r.backends.iter().any(|b| b.is_eligible()))
    })
}

async fn answer(mut stream: TcpStream, up: bool) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = async {
        while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(HEAD_TIMEOUT, read).await;
    let response: &[u8] = if up {
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: close\r\n\r\nup\n"
    } else {
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\ndown\n"
    };
    let write = async {
        stream.write_all(response).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /anything HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_503_without_a_healthy_instance_or_when_failed() {
        let router = Router::new();
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let ep = Endpoint::bind(
            &Sockets::default(),
            "127.0.0.1".parse().unwrap(),
            port,
            "web",
            router.clone(),
            true,
        )
        .await
        .unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Passing, but the host routes to nothing yet.
        assert!(get(addr).await.starts_with("HTTP/1.1 503"));
        let backend = baton_proxy::Backend::new(
            "web-1".into(),
            "1.0.0".into(),
            "127.0.0.1:1".parse().unwrap(),
            3,
        );
        backend.set_health(baton_proxy::Health::Healthy);
        let mut table = baton_proxy::RoutingTable::default();
        table.apps.insert(
            "web".into(),
            baton_proxy::AppRoute {
                releases: vec![baton_proxy::ReleaseRoute {
                    release: "1.0.0".into(),
                    weight: 100,
                    backends: vec![backend],
                }],
                affinity: None,
                mirror: None,
            },
        );
        router.publish(table);
        assert!(get(addr).await.starts_with("HTTP/1.1 200"));
        ep.set_passing(false);
        assert!(get(addr).await.starts_with("HTTP/1.1 503"));
        // A client that sends nothing still gets its answer, after the head timeout.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut out = String::new();
        silent.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    }
}
