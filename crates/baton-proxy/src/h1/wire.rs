//! The client side of a connection Baton's own HTTP/1.1 server serves: its stream, the bytes
//! waiting to go out, and the listener's signals, which every wait watches (with the client's
//! own end of the connection while the proxy waits on the instance).
//!
//! The stream is a plain TCP connection or a TLS one ([`ClientIo`]): the plain one is read and
//! written through its readiness, straight into and out of Baton's buffers, as before TLS.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::signals::{Stage, Watch};

/// The client side of a connection: its stream, the bytes waiting to go out, and the
/// listener's signals, which every wait watches.
pub(super) struct Wire<'a, 'w, S> {
    pub(super) stream: S,
    pub(super) out: BytesMut,
    pub(super) watch: &'a mut Watch<'w>,
    /// The listener is shutting down: close after the response in flight.
    pub(super) finishing: bool,
    /// The client sent bytes while the proxy waited on the instance (see
    /// [`Wire::poll_client_gone`]).
    pub(super) client_sent_more: bool,
}

impl<S: ClientIo> Wire<'_, '_, S> {
    /// Ready when the listener says to close now; notes a request to finish in between.
    pub(super) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Poll::Ready(stage) = self.watch.poll(cx) {
            if stage == Stage::Close {
                return Poll::Ready(());
            }
            self.finishing = true;
        }
        Poll::Pending
    }

    /// Waits for `fut` (the instance's answer), or `None` if the listener says to close now or
    /// the client has gone.
    pub(super) async fn until<F: Future>(&mut self, mut fut: Pin<&mut F>) -> Option<F::Output> {
        self.client_sent_more = false;
        std::future::poll_fn(|cx| {
            if self.poll_close(cx).is_ready() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(output) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            self.poll_client_gone(cx).map(|()| None)
        })
        .await
    }

    /// Ready once the client has closed its side of the connection (or reset it) while the
    /// proxy waits on the instance: the request is abandoned then, as hyper's server side and
    /// nginx do, so that it holds neither the instance's in-flight count (which drains and
    /// shutdowns wait for) nor a socket in CLOSE-WAIT. Bytes the client sends meanwhile (a
    /// pipelined request) are left unread and end the watch for this exchange: a close after
    /// them shows as a failed write.
    pub(super) fn poll_client_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.client_sent_more {
            return Poll::Pending;
        }
        let mut byte = [MaybeUninit::uninit(); 1];
        let mut probe = ReadBuf::uninit(&mut byte);
        match self.stream.tcp().poll_peek(cx, &mut probe) {
            Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(()),
            Poll::Ready(Ok(_)) => {
                self.client_sent_more = true;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes what `out` holds.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        let result = std::future::poll_fn(|cx| {
            if self.poll_close(cx).is_ready() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
            }
            self.stream.poll_write_all(&self.out, &mut written, cx)
        })
        .await;
        self.out.clear();
        result
    }

    /// Writes `data` after what `out` holds, without copying it there.
    pub(super) async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.flush().await?;
        let mut written = 0;
        std::future::poll_fn(|cx| {
            if self.poll_close(cx).is_ready() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
            }
            self.stream.poll_write_all(data, &mut written, cx)
        })
        .await
    }
}

/// A client connection Baton's own HTTP/1.1 server can serve: plain TCP or TLS over it.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP connection underneath, to notice the client leaving (a TLS client's alerts
    /// and pipelined records count as bytes sent, as a plain client's pipelined requests do).
    fn tcp(&self) -> &TcpStream;

    /// Reads what has arrived into `buf`'s spare room: 0 at the end of the stream.
    fn poll_read_buf(
        &mut self,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>>;

    /// Writes `bytes[*written..]` and flushes it out to the socket.
    fn poll_write_all(
        &mut self,
        bytes: &[u8],
        written: &mut usize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>;
}

impl ClientIo for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    fn poll_read_buf(
        &mut self,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            match self.try_read_buf(buf) {
                // The readiness was stale: wait for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_write_all(
        &mut self,
        bytes: &[u8],
        written: &mut usize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while *written < bytes.len() {
            ready!(self.poll_write_ready(cx))?;
            match self.try_write(&bytes[*written..]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl ClientIo for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }

    fn poll_read_buf(
        &mut self,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(self), cx, buf)
    }

    fn poll_write_all(
        &mut self,
        bytes: &[u8],
        written: &mut usize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while *written < bytes.len() {
            match ready!(Pin::new(&mut *self).poll_write(cx, &bytes[*written..]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => *written += n,
            }
        }
        // rustls holds the records it could not write yet.
        Pin::new(self).poll_flush(cx)
    }
}
