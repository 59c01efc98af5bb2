//! The keep-alive connections to one backend (one pool per data plane worker): TCP streams
//! parked while idle, taken one per exchange, and parked again once the response has been read
//! to its end. The exchange itself is [`crate::client`].
//!
//! One uncontended lock per checkout and per return; a parked connection that the backend has
//! closed meanwhile is noticed from the reactor's readiness, without a syscall in the common
//! case, and skipped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::UpstreamError;

/// Room for a typical response head in one read; the buffer grows for larger ones.
const READ_BUF: usize = 8 * 1024;

/// Opens a connection to a backend some other way than a TCP connect to its address: the
/// edge reaches an instance on another host through that host's tunnel (`baton-server`'s
/// `tunnel.rs`), which hands back a loopback stream already spliced to the instance.
pub trait Dial: std::fmt::Debug + Send + Sync {
    /// A new stream to the backend; an error means nothing reached it.
    fn dial(&self) -> Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send + '_>>;

    /// Which of its streams may still be reused: one opened under an older epoch is closed
    /// instead of being taken or parked again, because its far end is going away (a
    /// restarted agent's old tunnel waits for the edge to close its connections). Always 0
    /// unless the dialer says otherwise.
    fn epoch(&self) -> u64 {
        0
    }
}

/// The idle connections of one backend.
#[derive(Debug)]
pub struct Pool {
    addr: SocketAddr,
    /// How new connections are opened; `None`: a TCP connect to `addr`.
    dial: Option<Arc<dyn Dial>>,
    /// Which of the caller's pools this is (the proxy keeps one per data plane worker).
    slot: usize,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Most connections parked at once; past it the one idle the longest is closed.
    max_idle: usize,
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    /// Bumped by [`Pool::close_idle`]: a connection taken under an older generation is closed
    /// instead of being parked again.
    generation: u64,
    /// Oldest first: connections are parked at the end and taken from the end, so the front
    /// holds the ones idle the longest, which the reaper closes.
    parked: Vec<(Conn, Instant)>,
    reaper: bool,
}

/// A connection taken from the pool (or just opened) for one exchange.
#[derive(Debug)]
pub struct Conn {
    pub(crate) io: Io,
    /// Bytes read from the backend and not yet consumed.
    pub(crate) read_buf: BytesMut,
    generation: u64,
    /// The dialer's epoch when it was opened ([`Dial::epoch`]).
    epoch: u64,
    slot: usize,
    /// Taken from the pool rather than just opened: the backend may have closed it meanwhile.
    pub(crate) reused: bool,
}

/// The connection's stream: whole, or split while a task of its own writes the request body,
/// so that the response can be read at the same time (an instance may answer before it has
/// read the whole body, or stream its answer while it reads).
#[derive(Debug)]
pub(crate) enum Io {
    Whole(TcpStream),
    Split { read: OwnedReadHalf, writer: Writer },
}

/// The task writing a request body; aborted if dropped before it is done.
#[derive(Debug)]
pub(crate) enum Writer {
    Running(AbortOnDrop),
    /// The whole body is sent.
    Done(OwnedWriteHalf),
    /// It failed; the error was handed out (see [`Conn::poll_client_body_failed`]).
    Failed,
}

/// The body-writing task, aborted if the exchange is dropped before it is done.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<Result<OwnedWriteHalf, UpstreamError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Writer {
    /// Moves a finished task's outcome into the state; `Some(error)` if it failed.
    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<Option<UpstreamError>> {
        let Writer::Running(task) = self else {
            return Poll::Ready(None);
        };
        let outcome = ready!(Pin::new(&mut task.0).poll(cx));
        match outcome {
            Ok(Ok(write)) => {
                *self = Writer::Done(write);
                Poll::Ready(None)
            }
            Ok(Err(error)) => {
                *self = Writer::Failed;
                Poll::Ready(Some(error))
            }
            Err(join_error) => {
                *self = Writer::Failed;
                Poll::Ready(Some(UpstreamError::Exchange(std::io::Error::other(
                    join_error,
                ))))
            }
        }
    }
}

impl Io {
    /// The whole stream again, if the body writer (if any) has finished and succeeded.
    pub(crate) fn into_whole(self) -> Option<TcpStream> {
        match self {
            Io::Whole(stream) => Some(stream),
            Io::Split { read, mut writer } => {
                let mut cx = Context::from_waker(Waker::noop());
                if let Writer::Running(task) = &writer
                    && !task.0.is_finished()
                {
                    return None;
                }
                let _ = writer.poll_finished(&mut cx);
                match std::mem::replace(&mut writer, Writer::Failed) {
                    Writer::Done(write) => read.reunite(write).ok(),
                    _ => None,
                }
            }
        }
    }
}

impl Conn {
    /// The slot of the pool it came from, and goes back to.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// `Ready(error)` once the client's request body has failed (the client went away or sent
    /// a malformed body): the instance will never get the rest, so waiting for its answer
    /// is pointless. Failures writing to the instance are not reported here: its answer
    /// may already be on the way.
    pub(crate) fn poll_client_body_failed(&mut self, cx: &mut Context<'_>) -> Poll<UpstreamError> {
        let Io::Split { writer, .. } = &mut self.io else {
            return Poll::Pending;
        };
        match writer.poll_finished(cx) {
            Poll::Ready(Some(error @ UpstreamError::ClientBody(_))) => Poll::Ready(error),
            _ => Poll::Pending,
        }
    }

    /// Reads more of the response into `read_buf`.
    pub(crate) fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        match &mut self.io {
            Io::Whole(stream) => {
                tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut self.read_buf)
            }
            Io::Split { read, .. } => {
                tokio_util::io::poll_read_buf(Pin::new(read), cx, &mut self.read_buf)
            }
        }
    }

    /// Splits the stream and starts `spawn_writer` on the write half (see [`Io::Split`]).
    pub(crate) fn split(
        self,
        spawn_writer: impl FnOnce(OwnedWriteHalf) -> JoinHandle<Result<OwnedWriteHalf, UpstreamError>>,
    ) -> Conn {
        let Io::Whole(stream) = self.io else {
            return self;
        };
        let (read, write) = stream.into_split();
        Conn {
            io: Io::Split {
                read,
                writer: Writer::Running(AbortOnDrop(spawn_writer(write))),
            },
            ..self
        }
    }

    /// Whether the exchange left it fit for another: the body writer (if any) is done and
    /// succeeded, and nothing unasked was read.
    pub(crate) fn into_reusable(self) -> Option<Conn> {
        if !self.read_buf.is_empty() {
            return None;
        }
        let stream = self.io.into_whole()?;
        Some(Conn {
            io: Io::Whole(stream),
            ..self
        })
    }
}

impl Pool {
    /// A pool of connections to `addr`: each connect bounded by `connect_timeout`, each idle
    /// connection closed after `idle_timeout`, at most `max_idle` of them kept (the least
    /// recently used goes first). `slot` tells the caller's pools apart (see [`Conn::slot`]).
    pub fn new(
        addr: SocketAddr,
        slot: usize,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Pool> {
        Pool::dialed(addr, None, slot, connect_timeout, idle_timeout, max_idle)
    }

    /// [`Pool::new`] whose connections `dial` opens (when given) instead of a TCP connect to
    /// `addr`.
    pub fn dialed(
        addr: SocketAddr,
        dial: Option<Arc<dyn Dial>>,
        slot: usize,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            addr,
            dial,
            slot,
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Mutex::new(Idle::default()),
        })
    }

    /// Whether its connections are opened by a [`Dial`] rather than a TCP connect.
    pub fn is_dialed(&self) -> bool {
        self.dial.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // The critical sections cannot panic halfway; a poisoned lock still holds a valid list.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recently parked connection that is still open, or a new one.
    pub async fn checkout(&self) -> Result<Conn, UpstreamError> {
        match self.take() {
            Some(conn) => Ok(conn),
            None => self.connect().await,
        }
    }

    /// The dialer's epoch now (0 for a TCP connect).
    fn epoch(&self) -> u64 {
        self.dial.as_ref().map_or(0, |d| d.epoch())
    }

    /// The most recently parked connection that is still open (and of the current epoch).
    fn take(&self) -> Option<Conn> {
        let epoch = self.epoch();
        let mut idle = self.lock();
        while let Some((mut conn, _)) = idle.parked.pop() {
            let open = match &conn.io {
                Io::Whole(stream) => is_open(stream),
                Io::Split { .. } => false,
            };
            if conn.generation == idle.generation && conn.epoch == epoch && open {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// A new connection.
    pub async fn connect(&self) -> Result<Conn, UpstreamError> {
        let generation = self.lock().generation;
        // Read before dialing: a stream opened while the epoch moves counts as the old one's.
        let epoch = self.epoch();
        let connect = async {
            match &self.dial {
                Some(dial) => dial.dial().await,
                None => TcpStream::connect(self.addr).await,
            }
        };
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(UpstreamError::Connect(error)),
            Err(_elapsed) => return Err(UpstreamError::ConnectTimeout(self.connect_timeout)),
        };
        // Heads are small writes: they must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            io: Io::Whole(stream),
            read_buf: BytesMut::with_capacity(READ_BUF),
            generation,
            epoch,
            slot: self.slot,
            reused: false,
        })
    }

    /// Parks `conn` after a complete exchange, unless [`Pool::close_idle`] ran since it was
    /// taken.
    pub fn put(self: &Arc<Self>, conn: Conn) {
        let mut idle = self.lock();
        // Read under the lock: a sweep (`close_stale`) cannot run between this check and the
        // park, so nothing of an older epoch is parked after it.
        if conn.generation != idle.generation || conn.epoch != self.epoch() {
            return;
        }
        if idle.parked.len() >= self.max_idle {
            // As nginx's `keepalive`: the least recently used goes.
            idle.parked.remove(0);
        }
        if self.max_idle == 0 {
            return;
        }
        idle.parked.push((conn, Instant::now()));
        if !idle.reaper
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            idle.reaper = true;
            runtime.spawn(reap(Arc::downgrade(self)));
        }
    }

    /// Closes every parked connection; connections in use are closed after their exchange.
    pub fn close_idle(&self) {
        let mut idle = self.lock();
        idle.generation += 1;
        idle.parked.clear();
    }

    /// Closes the parked connections of an older epoch ([`Dial::epoch`]) now, rather than at
    /// their next checkout or idle timeout.
    pub fn close_stale(&self) {
        let mut idle = self.lock();
        let epoch = self.epoch();
        idle.parked.retain(|(conn, _)| conn.epoch == epoch);
    }

    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.lock().parked.len()
    }
}

/// Whether an idle connection is still open. The reactor marks it readable once the backend
/// closes it (or sends something, which an idle HTTP/1.1 connection must not); only then does
/// the check cost a read.
fn is_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    match stream.try_read(&mut probe) {
        Err(error) => error.kind() == std::io::ErrorKind::WouldBlock,
        // 0: closed; more: unasked bytes, the connection is out of step.
        Ok(_) => false,
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

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that counts accepted connections and keeps each open until the peer closes it,
    /// or closes it at once with `close_at_once`.
    async fn server(close_at_once: bool) -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, SeqCst);
                if close_at_once {
                    drop(stream);
                    continue;
                }
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn pool(addr: SocketAddr, idle_timeout: Duration) -> Arc<Pool> {
        Pool::new(addr, 0, Duration::from_secs(2), idle_timeout, 64)
    }

    /// Waits until the server has accepted `n` connections (the accept may trail the connect).
    async fn wait_accepted(accepted: &AtomicU64, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while accepted.load(SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "accepted {accepted:?}, want {n}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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

    // An instance must not be left with an unbounded number of idle connections from Baton
    // after a burst (file descriptors on both sides).
    #[tokio::test]
    async fn parked_connections_are_capped_and_the_oldest_goes() {
        let (addr, accepted) = server(false).await;
        let pool = Pool::new(addr, 0, Duration::from_secs(2), Duration::from_secs(60), 2);
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(pool.checkout().await.unwrap());
        }
        wait_accepted(&accepted, 3).await;
        let local = |conn: &Conn| match &conn.io {
            Io::Whole(stream) => stream.local_addr().unwrap(),
            Io::Split { .. } => unreachable!("not split: no body was sent"),
        };
        let newest = local(&conns[2]);
        for conn in conns {
            pool.put(conn);
        }
        assert_eq!(pool.parked(), 2);
        // Taken newest first: the last two parked are the ones kept.
        assert_eq!(local(&pool.checkout().await.unwrap()), newest);
    }

    #[tokio::test]
    async fn reuses_one_connection_for_sequential_exchanges() {
        let (addr, accepted) = server(false).await;
        let pool = pool(addr, Duration::from_secs(60));
        for i in 0..5 {
            let conn = pool.checkout().await.unwrap();
            assert_eq!(conn.reused, i > 0);
            pool.put(conn);
        }
        wait_accepted(&accepted, 1).await;
        assert_eq!(accepted.load(SeqCst), 1);
        assert_eq!(pool.parked(), 1);
    }

    #[tokio::test]
    async fn close_idle_drops_parked_and_in_use_connections() {
        let (addr, accepted) = server(false).await;
        let pool = pool(addr, Duration::from_secs(60));
        let parked = pool.checkout().await.unwrap();
        pool.put(parked);
        let in_use = pool.checkout().await.unwrap();
        let other = pool.checkout().await.unwrap();
        pool.put(other);
        pool.close_idle();
        assert_eq!(pool.parked(), 0);
        pool.put(in_use);
        assert_eq!(
            pool.parked(),
            0,
            "taken before close_idle: not parked again"
        );
        let fresh = pool.checkout().await.unwrap();
        assert!(!fresh.reused);
        wait_accepted(&accepted, 3).await;
        assert_eq!(accepted.load(SeqCst), 3);
    }

    /// A dialer whose epoch the test moves.
    #[derive(Debug)]
    struct Epochs(SocketAddr, AtomicU64);

    impl Dial for Epochs {
        fn dial(&self) -> Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send + '_>> {
            Box::pin(TcpStream::connect(self.0))
        }
        fn epoch(&self) -> u64 {
            self.1.load(SeqCst)
        }
    }

    #[tokio::test]
    async fn connections_of_an_older_epoch_are_never_reused() {
        let (addr, accepted) = server(false).await;
        let dial = Arc::new(Epochs(addr, AtomicU64::new(1)));
        let pool = Pool::dialed(
            addr,
            Some(dial.clone()),
            0,
            Duration::from_secs(2),
            Duration::from_secs(60),
            8,
        );
        let parked = pool.checkout().await.unwrap();
        let in_use = pool.checkout().await.unwrap();
        let stays = pool.checkout().await.unwrap();
        pool.put(parked);
        pool.put(stays);
        assert_eq!(pool.parked(), 2);
        dial.1.store(2, SeqCst);
        // The parked ones go at the next sweep, the one in use when it comes back.
        pool.close_stale();
        assert_eq!(pool.parked(), 0);
        pool.put(in_use);
        assert_eq!(
            pool.parked(),
            0,
            "an older epoch's connection is not parked"
        );
        let fresh = pool.checkout().await.unwrap();
        assert!(!fresh.reused);
        pool.put(fresh);
        let again = pool.checkout().await.unwrap();
        assert!(again.reused, "the new epoch's connection is reused");
        // Without a sweep, a checkout skips an older epoch's parked connection too.
        pool.put(again);
        dial.1.store(3, SeqCst);
        assert!(!pool.checkout().await.unwrap().reused);
        wait_accepted(&accepted, 5).await;
    }

    #[tokio::test]
    async fn a_parked_connection_the_backend_closed_is_skipped() {
        let (addr, accepted) = server(true).await;
        let pool = pool(addr, Duration::from_secs(60));
        let conn = pool.checkout().await.unwrap();
        pool.put(conn);
        // The reactor learns of the close; the pool then skips the connection.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let conn = pool.checkout().await.unwrap();
            if !conn.reused {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "close never seen");
            pool.put(conn);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wait_accepted(&accepted, 2).await;
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (addr, _) = server(false).await;
        let pool = pool(addr, Duration::from_millis(50));
        let conn = pool.checkout().await.unwrap();
        pool.put(conn);
        wait_parked(&pool, 1).await;
        wait_parked(&pool, 0).await;
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let pool = pool(addr, Duration::from_secs(60));
        let failed = pool.checkout().await.unwrap_err();
        assert!(matches!(failed, UpstreamError::Connect(_)), "{failed:?}");
    }
}
