//! The keep-alive connections to one backend: HTTP/1.1 connections parked while idle, taken
//! one per exchange, and parked again once the response body has been read to its end.
//!
//! Cheaper than a general-purpose client: one uncontended lock per checkout and per return, no
//! boxed futures, no task per request, and the request is never copied: a parked connection
//! that turns out to be closed hands the unsent request back, and it goes out on a fresh one.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::RequestBody;
use crate::error::UpstreamError;

/// The idle connections of one backend.
#[derive(Debug)]
pub(crate) struct Pool {
    addr: SocketAddr,
    /// Which worker's pool this is (see [`crate::workers`]).
    slot: usize,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    /// Bumped by [`Pool::close_idle`]: a connection taken under an older generation is closed
    /// instead of being parked again.
    generation: u64,
    /// Oldest first: connections are parked at the end and taken from the end, so the front
    /// holds the ones idle the longest, which the reaper closes.
    parked: Vec<(SendRequest<RequestBody>, Instant)>,
    reaper: bool,
}

/// A connection taken from the pool (or just opened) for one exchange.
#[derive(Debug)]
pub(crate) struct Conn {
    sender: SendRequest<RequestBody>,
    generation: u64,
    slot: usize,
}

impl Conn {
    /// The slot of the pool it came from, and goes back to.
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }
}

/// A failed exchange, with the request if it was never sent.
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) error: UpstreamError,
    pub(crate) request: Option<Request<RequestBody>>,
}

impl Pool {
    pub(crate) fn new(
        addr: SocketAddr,
        slot: usize,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            addr,
            slot,
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(Idle::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // The critical sections cannot panic halfway; a poisoned lock still holds a valid list.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `request` on a parked connection, or on a new one if none is parked or every
    /// parked one turns out closed. `Err` carries the request back when it was not sent.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Conn), SendError> {
        loop {
            let (mut conn, parked) = match self.take() {
                Some(conn) => (conn, true),
                None => match self.connect().await {
                    Ok(conn) => (conn, false),
                    Err(error) => {
                        return Err(SendError {
                            error,
                            request: Some(request),
                        });
                    }
                },
            };
            match conn.sender.try_send_request(request).await {
                Ok(response) => return Ok((response, conn)),
                Err(mut failed) => match failed.take_message() {
                    // The backend closed an idle connection: nothing was sent, try the next.
                    Some(unsent) if parked => request = unsent,
                    Some(unsent) => {
                        let error = UpstreamError::Closed(failed.into_error());
                        return Err(SendError {
                            error,
                            request: Some(unsent),
                        });
                    }
                    None => {
                        return Err(SendError {
                            error: UpstreamError::Exchange(failed.into_error()),
                            request: None,
                        });
                    }
                },
            }
        }
    }

    /// The most recently parked connection that is still open and ready.
    fn take(&self) -> Option<Conn> {
        let mut idle = self.lock();
        while let Some((sender, _)) = idle.parked.pop() {
            // Parked connections are ready when parked; one that is not any more has closed.
            if sender.is_ready() {
                return Some(Conn {
                    sender,
                    generation: idle.generation,
                    slot: self.slot,
                });
            }
        }
        None
    }

    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let generation = self.lock().generation;
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return Err(UpstreamError::Connect(error)),
                Err(_elapsed) => return Err(UpstreamError::ConnectTimeout(self.connect_timeout)),
            };
        // Heads are small writes: they must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Closed)?;
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%addr, %error, "backend connection ended with an error");
            }
        });
        Ok(Conn {
            sender,
            generation,
            slot: self.slot,
        })
    }

    /// Parks `conn` after its exchange is complete, unless [`Pool::close_idle`] ran since it
    /// was taken. A connection whose task has not yet seen the end of the exchange is parked
    /// once it has, by a small task (rare: the body usually ends in the same read as the head).
    pub(crate) fn put(self: &Arc<Self>, mut conn: Conn) {
        if conn.sender.is_ready() {
            self.park(conn);
        } else if !conn.sender.is_closed() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let pool = Arc::downgrade(self);
            runtime.spawn(async move {
                if poll_fn(|cx| conn.sender.poll_ready(cx)).await.is_ok()
                    && let Some(pool) = pool.upgrade()
                {
                    pool.park(conn);
                }
            });
        }
    }

    fn park(self: &Arc<Self>, conn: Conn) {
        let mut idle = self.lock();
        if conn.generation != idle.generation {
            return;
        }
        idle.parked.push((conn.sender, Instant::now()));
        if !idle.reaper
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            idle.reaper = true;
            runtime.spawn(reap(Arc::downgrade(self)));
        }
    }

    /// Closes every parked connection; connections in use are closed after their exchange.
    pub(crate) fn close_idle(&self) {
        let mut idle = self.lock();
        idle.generation += 1;
        idle.parked.clear();
    }

    #[cfg(test)]
    fn parked(&self) -> usize {
        self.lock().parked.len()
    }
}

/// Closes connections idle for longer than the pool's idle timeout; ends when the pool is
/// empty (the next park starts another) or gone.
async fn reap(pool: Weak<Pool>) {
    loop {
        let next = {
            let Some(pool) = pool.upgrade() else { return };
            let mut idle = pool.lock();
            let now = Instant::now();
            let expired = idle
                .parked
                .iter()
                .take_while(|(_, since)| now.duration_since(*since) >= pool.idle_timeout)
                .count();
            idle.parked.drain(..expired);
            match idle.parked.first() {
                Some((_, since)) => *since + pool.idle_timeout,
                None => {
                    idle.reaper = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tokio::net::TcpListener;

    /// A backend that answers every request with "ok" and counts the connections it accepted.
    async fn backend() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<RequestBody> {
        Request::get("/")
            .header(http::header::HOST, "backend")
            .body(RequestBody::Empty)
            .unwrap()
    }

    async fn exchange(pool: &Arc<Pool>) {
        let (response, conn) = pool.send(get()).await.unwrap();
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "ok"
        );
        pool.put(conn);
    }

    async fn wait_parked(pool: &Pool, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while pool.parked() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} parked, want {n}",
                pool.parked()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn reuses_one_connection_for_sequential_exchanges() {
        let (addr, accepted) = backend().await;
        let pool = Pool::new(addr, 0, Duration::from_secs(2), Duration::from_secs(60));
        for _ in 0..5 {
            exchange(&pool).await;
            wait_parked(&pool, 1).await;
        }
        assert_eq!(accepted.load(SeqCst), 1);
    }

    #[tokio::test]
    async fn close_idle_drops_parked_and_in_use_connections() {
        let (addr, accepted) = backend().await;
        let pool = Pool::new(addr, 0, Duration::from_secs(2), Duration::from_secs(60));
        exchange(&pool).await;
        wait_parked(&pool, 1).await;
        let (response, in_use) = pool.send(get()).await.unwrap();
        pool.close_idle();
        assert_eq!(pool.parked(), 0);
        response.into_body().collect().await.unwrap();
        pool.put(in_use);
        assert_eq!(
            pool.parked(),
            0,
            "taken before close_idle: not parked again"
        );
        exchange(&pool).await;
        assert_eq!(accepted.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_parked_connection_that_closed_is_skipped() {
        let (addr, accepted) = backend().await;
        let pool = Pool::new(addr, 0, Duration::from_secs(2), Duration::from_secs(60));
        let closed = {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (sender, connection) = http1::handshake::<_, RequestBody>(TokioIo::new(stream))
                .await
                .unwrap();
            drop(connection);
            sender
        };
        pool.lock().parked.push((closed, Instant::now()));
        exchange(&pool).await;
        assert_eq!(accepted.load(SeqCst), 2, "the closed one, then a fresh one");
        wait_parked(&pool, 1).await;
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (addr, _) = backend().await;
        let pool = Pool::new(addr, 0, Duration::from_secs(2), Duration::from_millis(50));
        exchange(&pool).await;
        wait_parked(&pool, 1).await;
        wait_parked(&pool, 0).await;
    }

    #[tokio::test]
    async fn a_refused_connect_hands_the_request_back() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let pool = Pool::new(addr, 0, Duration::from_secs(2), Duration::from_secs(60));
        let failed = pool.send(get()).await.unwrap_err();
        assert!(
            matches!(failed.error, UpstreamError::Connect(_)),
            "{:?}",
            failed.error
        );
        assert!(failed.request.is_some());
    }
}
