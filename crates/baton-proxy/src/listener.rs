//! One app's listener: accepts client connections (HTTP/1.1 keep-alive and h2c prior
//! knowledge, or HTTPS with HTTP/2 by ALPN when it terminates TLS), serves them through the
//! proxy, and shuts down gracefully.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::forward::{ClientConn, Proxy, handle};
use crate::h1::{self, ClientIo};
use crate::router::Router;
use crate::signals::{Client, Clients, Stage};
use crate::tls::{HANDSHAKE_TIMEOUT, Tls};
use crate::workers::Workers;

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
    /// TLS termination: clients speak HTTPS (none: plain HTTP).
    pub tls: Option<Arc<Tls>>,
    /// How long a shutdown (a stop, or the old process of a restart) lets upgraded connections
    /// (WebSocket tunnels) go on after the requests finished: the app's `drain.timeout`.
    pub upgrade_grace: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        use baton_core::config::defaults;
        Self {
            request_timeout: defaults::REQUEST_TIMEOUT.std(),
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            tls: None,
            upgrade_grace: defaults::DRAIN_TIMEOUT.std(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires; then stops accepting, lets in-flight
/// requests finish (bounded by `request_timeout`), closes what is left, and returns.
///
/// Accepting happens here; each connection is then served on one data plane worker
/// ([`crate::workers`]) for its whole life.
pub async fn serve(
    listener: TcpListener,
    app: String,
    router: Arc<Router>,
    cfg: ListenerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let servers = Arc::new(Servers::new(&cfg));
    let workers = Workers::get();
    let clients = Arc::new(Clients::default());
    let closing = CancellationToken::new();
    let proxy = Arc::new(Proxy {
        requests: router.request_counter(&app),
        breakers: router.breakers.of(&app),
        outlier: router.outliers.of(&app),
        app,
        router,
        request_timeout: cfg.request_timeout,
        head_timeout: HEADER_READ_TIMEOUT.min(cfg.request_timeout),
        max_header_bytes: cfg.max_header_bytes.max(MIN_HEADER_BYTES),
        closing: closing.clone(),
        https: cfg.tls.is_some(),
        tunnels: Arc::new(Clients::default()),
    });
    tracing::info!(app = %proxy.app, addr = ?listener.local_addr().ok(), tls = cfg.tls.is_some(), "listening");
    if let Some(tls) = &cfg.tls {
        tokio::spawn(tls.clone().watch(proxy.app.clone(), closing.clone()));
    }
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
        // Registered with the worker's own reactor there.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "cannot hand the connection to a worker");
                continue;
            }
        };
        let client_ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        let conn = Arc::new(ClientConn {
            proxy: proxy.clone(),
            client_ip,
        });
        let servers = servers.clone();
        let tls = cfg.tls.clone();
        // Registered here, before the hand-over, so that a shutdown never misses it.
        let client = Clients::register(&clients);
        workers.spawn(async move {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%peer, %error, "cannot register a client connection");
                    return;
                }
            };
            let served = match tls {
                None => serve_client(stream, false, conn, &servers, &client).await,
                // The handshake runs here, on the worker, never on the accept loop.
                Some(tls) => match handshake(&tls, stream, &client).await {
                    Ok(stream) => {
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        serve_client(stream, h2, conn, &servers, &client).await
                    }
                    Err(why) => {
                        tracing::debug!(%peer, %why, "no TLS session");
                        return;
                    }
                },
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(app = %proxy.app, connections = clients.count(), "listener shutting down");
    clients.signal_all(Stage::Finish);
    if tokio::time::timeout(cfg.request_timeout, clients.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(app = %proxy.app, "requests still running after the grace period; closing them");
    }
    clients.signal_all(Stage::Close);
    if tokio::time::timeout(cfg.upgrade_grace, proxy.tunnels.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(app = %proxy.app, tunnels = proxy.tunnels.count(), "upgraded connections still open after the drain timeout; closing them");
    }
    closing.cancel();
    Ok(())
}

/// The server side of a TLS handshake, within [`HANDSHAKE_TIMEOUT`], given up when the
/// listener says to close now.
async fn handshake(
    tls: &Tls,
    stream: tokio::net::TcpStream,
    client: &Client,
) -> Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, String> {
    let accept = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    tokio::pin!(accept);
    let mut watch = client.watch();
    std::future::poll_fn(|cx| {
        if client.stage() == Stage::Close {
            return Poll::Ready(Err("the listener closed".to_string()));
        }
        while let Poll::Ready(stage) = watch.poll(cx) {
            if stage == Stage::Close {
                return Poll::Ready(Err("the listener closed".to_string()));
            }
        }
        accept.as_mut().poll(cx).map(|accepted| match accepted {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(format!("handshake failed: {error}")),
            Err(_) => Err("handshake timed out".to_string()),
        })
    })
    .await
}

/// Serves one client connection: HTTP/2 (`h2`, chosen by ALPN) with hyper, else Baton's own
/// HTTP/1.1 server first and hyper for what it does not take.
async fn serve_client<S: ClientIo>(
    stream: S,
    h2: bool,
    conn: Arc<ClientConn>,
    servers: &Servers,
    client: &Client,
) -> Result<(), hyper::Error> {
    let (stream, read) = if h2 {
        (stream, BytesMut::new())
    } else {
        let mut watch = client.watch();
        match h1::serve(stream, &conn, &mut watch).await {
            h1::Served::Closed => return Ok(()),
            h1::Served::Handoff(stream, read) => (stream, read),
        }
    };
    let service = service_fn(move |req| handle(conn.clone(), req));
    let h2 = h2 || is_h2_preface(&read);
    let io = TokioIo::new(Prefixed { read, stream });
    if h2 {
        let connection = servers.http2.serve_connection(io, service);
        until_closed(connection, client, |c| c.graceful_shutdown()).await
    } else {
        let connection = servers.http1.serve_connection(io, service).with_upgrades();
        until_closed(connection, client, |c| c.graceful_shutdown()).await
    }
}

/// A client connection hyper serves after Baton's own server has read from it: the bytes
/// read come first.
struct Prefixed<S> {
    read: BytesMut,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        if self.read.is_empty() {
            // hyper has its own buffer: this one's memory goes.
            self.read = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// hyper's servers, for the connections Baton's own HTTP/1.1 server hands over.
struct Servers {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Servers {
    fn new(cfg: &ListenerConfig) -> Servers {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT.min(cfg.request_timeout))
            .max_buf_size(cfg.max_header_bytes.max(MIN_HEADER_BYTES))
            // Also a head completed by the read that crosses the limit (max_buf_size alone
            // only bounds an incomplete one).
            .max_header_size(cfg.max_header_bytes.max(MIN_HEADER_BYTES))
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX));
        Servers { http1, http2 }
    }
}

/// HTTP/2's connection preface (RFC 9113 3.4), or as much of it as was read: Baton's
/// HTTP/1.1 server hands a connection over as soon as the request line is not HTTP/1.1.
fn is_h2_preface(read: &[u8]) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let n = read.len().min(PREFACE.len());
    n > 0 && read[..n] == PREFACE[..n]
}

/// Serves a hyper connection until it ends, passing on the listener's signals: finish the
/// request in flight (`shutdown`), or close now.
async fn until_closed<C>(
    connection: C,
    client: &Client,
    shutdown: impl Fn(Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(connection);
    // A signal Baton's own server took is not sent again.
    match client.stage() {
        Stage::Serve => {}
        Stage::Finish => shutdown(connection.as_mut()),
        Stage::Close => return Ok(()),
    }
    let mut watch = client.watch();
    std::future::poll_fn(|cx| {
        while let Poll::Ready(stage) = watch.poll(cx) {
            if stage == Stage::Close {
                return Poll::Ready(Ok(()));
            }
            shutdown(connection.as_mut());
        }
        connection.as_mut().poll(cx)
    })
    .await
}
