//! The API's listener: accepts connections under a cap, serves each with hyper's HTTP/1.1
//! under a header timeout and an idle timeout, and shuts down gracefully. The data plane's
//! listeners (crates/baton-proxy/src/listener.rs) keep the same discipline; this cap is what
//! keeps API load from taking the file descriptors the proxies need.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

/// Pause after an accept error such as "too many open files", so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait, at shutdown, for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How the API treats its clients (`[api]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a request head, also between two requests of one connection.
    pub header_timeout: Duration,
    /// Longest a request body may send nothing, or an answer may wait for the client to read.
    pub idle_timeout: Duration,
    /// Most connections served at once; those over it are closed as soon as accepted.
    pub max_connections: usize,
}

impl Limits {
    /// `[api]`'s limits, with the connection cap kept to a quarter of the file descriptors
    /// this process may open (`fd_limit`): the other three quarters stay for the data plane.
    pub fn new(api: &baton_core::config::ApiConfig, fd_limit: u64) -> Limits {
        let share = usize::try_from(fd_limit / 4).unwrap_or(usize::MAX).max(1);
        Limits {
            header_timeout: api.header_timeout.std(),
            idle_timeout: api.idle_timeout.std(),
            max_connections: api.max_connections.min(share),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting and lets the
/// requests in flight finish (for a while).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.idle_timeout,
        stalled_bodies_fail,
    ));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "API accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closed at once: a client over the cap gets an answer (a reset), not a hang,
            // and holds no descriptor.
            tracing::debug!(%peer, max = limits.max_connections, "API connection cap reached; closed");
            drop(stream);
            continue;
        };
        let io = TokioIo::new(WriteDeadline::new(stream, limits.idle_timeout));
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "API connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API requests still running after the grace period; closing them");
    }
}

/// Fails a request body that sends nothing for `idle` (axum answers it as a bad request).
async fn stalled_bodies_fail(
    axum::extract::State(idle): axum::extract::State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let req = req.map(|body| Body::new(StallLimit::new(body, idle)));
    next.run(req).await
}

/// A request body whose every wait for data is bounded.
struct StallLimit {
    inner: Body,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl StallLimit {
    fn new(inner: Body, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
        }
    }
}

impl http_body::Body for StallLimit {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame);
        }
        if !this.armed {
            this.armed = true;
            this.timer.as_mut().reset(Instant::now() + this.idle);
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(format!(
                "the request body sent nothing for {:?} ([api] idle_timeout)",
                this.idle
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes may wait for the client at most `idle`: a client that stops
/// reading its answer does not hold a connection (and its descriptor) forever.
struct WriteDeadline {
    stream: TcpStream,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl WriteDeadline {
    fn new(stream: TcpStream, idle: Duration) -> Self {
        Self {
            stream,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
        }
    }

    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(r) = poll(Pin::new(&mut self.stream), cx) {
            self.armed = false;
            return Poll::Ready(r);
        }
        if !self.armed {
            self.armed = true;
            self.timer.as_mut().reset(Instant::now() + self.idle);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the answer for [api] idle_timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.bounded(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.bounded(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.bounded(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
