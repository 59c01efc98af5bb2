//! One app's listener: accepts client connections (HTTP/1.1 keep-alive and h2c prior
//! knowledge), serves them through the proxy, and shuts down gracefully.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::forward::{ClientConn, Proxy, handle};
use crate::router::Router;

/// Longest wait for a client's request head (slowloris), unless `request_timeout` is shorter.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The smallest header limit hyper's HTTP/1 parser accepts; smaller limits are raised to it.
pub const MIN_HEADER_BYTES: usize = 8192;
/// Pause after an accept error such as "too many open files", so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// How one listener treats its clients.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Longest wait for a backend's response head (504 after); also bounds the shutdown grace.
    pub request_timeout: Duration,
    /// Largest request head accepted (431 above); at least [`MIN_HEADER_BYTES`] for HTTP/1.
    pub max_header_bytes: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        use baton_core::config::defaults;
        Self {
            request_timeout: defaults::REQUEST_TIMEOUT.std(),
            max_header_bytes: defaults::MAX_HEADER_BYTES,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires; then stops accepting, lets in-flight
/// requests finish (bounded by `request_timeout`), closes what is left, and returns.
pub async fn serve(
    listener: TcpListener,
    app: String,
    router: Arc<Router>,
    cfg: ListenerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let builder = server_builder(&cfg);
    let graceful = GracefulShutdown::new();
    let closing = CancellationToken::new();
    let proxy = Arc::new(Proxy {
        app,
        router,
        request_timeout: cfg.request_timeout,
        closing: closing.clone(),
    });
    tracing::info!(app = %proxy.app, addr = ?listener.local_addr().ok(), "listening");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(app = %proxy.app, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small writes (heads, WebSocket frames) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let client_ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        let conn = Arc::new(ClientConn {
            proxy: proxy.clone(),
            client_ip,
        });
        let service = service_fn(move |req| handle(conn.clone(), req));
        let connection = graceful.watch(
            builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned(),
        );
        let closing = closing.clone();
        tokio::spawn(async move {
            tokio::select! {
                served = connection => if let Err(error) = served {
                    tracing::debug!(%peer, %error, "client connection ended with an error");
                },
                () = closing.cancelled() => {}
            }
        });
    }
    drop(listener);
    tracing::info!(app = %proxy.app, connections = graceful.count(), "listener shutting down");
    if tokio::time::timeout(cfg.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(app = %proxy.app, "requests still running after the grace period; closing them");
    }
    closing.cancel();
    Ok(())
}

fn server_builder(cfg: &ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT.min(cfg.request_timeout))
        .max_buf_size(cfg.max_header_bytes.max(MIN_HEADER_BYTES))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX));
    builder
}
