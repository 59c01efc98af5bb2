//! The bodies the wire code moves: a request body to send to an instance ([`RequestBody`]),
//! and a response body read from the instance's connection as the client takes it
//! ([`UpstreamBody`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::chunked::{ChunkedDecoder, Decoded};
use crate::pool::Conn;

/// Spare room made in a connection's read buffer before each read.
pub(crate) const READ_CHUNK: usize = 8 * 1024;

/// A request body sent to a backend: the client's own (a retry on another backend sends the
/// same one, untouched while nothing was sent), or nothing.
#[derive(Debug)]
pub enum RequestBody {
    /// The body the client sent, streamed through.
    Incoming(Incoming),
    /// A body read whole before the request is sent (Baton's HTTP/1.1 server side buffers
    /// small ones): it goes out with the head, in one write.
    Inline(Bytes),
    /// No body (hyper's `Incoming` has no public constructor).
    Empty,
    /// A body a test feeds piece by piece.
    #[cfg(test)]
    Test(http_body_util::channel::Channel<Bytes, std::io::Error>),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            RequestBody::Incoming(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(Into::into))),
            RequestBody::Inline(bytes) if bytes.is_empty() => Poll::Ready(None),
            RequestBody::Inline(bytes) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(bytes))))),
            RequestBody::Empty => Poll::Ready(None),
            #[cfg(test)]
            RequestBody::Test(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(body) => body.is_end_stream(),
            RequestBody::Inline(bytes) => bytes.is_empty(),
            RequestBody::Empty => true,
            #[cfg(test)]
            RequestBody::Test(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(body) => body.size_hint(),
            RequestBody::Inline(bytes) => SizeHint::with_exact(bytes.len() as u64),
            RequestBody::Empty => SizeHint::with_exact(0),
            #[cfg(test)]
            RequestBody::Test(body) => body.size_hint(),
        }
    }
}

/// How a response body is delimited.
#[derive(Debug)]
pub(crate) enum Framing {
    /// This many bytes are left (0: none, or all read).
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the backend closes the connection.
    Close,
}

/// A response body read from the backend's connection as the client takes it.
#[derive(Debug)]
pub struct UpstreamBody {
    /// `None` once the body has failed (the connection is then closed).
    conn: Option<Conn>,
    framing: Framing,
    /// The backend allows another exchange on the connection once this one is complete.
    keep_alive: bool,
}

impl UpstreamBody {
    /// The body after a response head read from `conn`.
    pub(crate) fn new(conn: Conn, framing: Framing, keep_alive: bool) -> UpstreamBody {
        UpstreamBody {
            conn: Some(conn),
            framing,
            keep_alive,
        }
    }

    /// The next piece of the body, `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let result = ready!(self.poll_data_inner(cx));
        if let Some(Err(_)) = &result {
            // The connection is in an unknown state: close it.
            self.conn = None;
        }
        Poll::Ready(result)
    }

    fn poll_data_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            if self.is_end_stream() {
                return Poll::Ready(None);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.read_buf;
            match &mut self.framing {
                Framing::Length(left) => {
                    if !buf.is_empty() {
                        let n = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                        *left -= n as u64;
                        return Poll::Ready(Some(Ok(buf.split_to(n).freeze())));
                    }
                }
                Framing::Chunked(decoder) => match decoder.decode(buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(data))),
                    Ok(Decoded::Done) => return Poll::Ready(None),
                    Ok(Decoded::NeedMore) => {}
                    Err(error) => {
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            error,
                        ))));
                    }
                },
                Framing::Close => {
                    if !buf.is_empty() {
                        return Poll::Ready(Some(Ok(buf.split().freeze())));
                    }
                }
            }
            buf.reserve(READ_CHUNK);
            let n = ready!(conn.poll_read_more(cx))?;
            if n == 0 {
                return Poll::Ready(match self.framing {
                    Framing::Close => {
                        // The end of the connection is the end of the body.
                        self.conn = None;
                        None
                    }
                    _ => Some(Err(io::ErrorKind::UnexpectedEof.into())),
                });
            }
        }
    }

    /// Whether the whole body has been read (or there is none).
    pub fn is_end_stream(&self) -> bool {
        match &self.framing {
            Framing::Length(left) => *left == 0,
            Framing::Chunked(decoder) => decoder.is_done(),
            Framing::Close => self.conn.is_none(),
        }
    }

    /// The body's exact size when it is known.
    pub fn exact_size(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(left) => Some(left),
            _ => None,
        }
    }

    /// The connection, if the body has been read to its end and the connection may carry
    /// another exchange (the request body, if any, fully sent too).
    pub fn take_reusable(&mut self) -> Option<Conn> {
        if !self.keep_alive || !self.is_end_stream() {
            return None;
        }
        self.conn.take().and_then(Conn::into_reusable)
    }

    /// The connection and the bytes already read past the head, for a protocol switch.
    pub fn into_upgraded(mut self) -> Option<(tokio::net::TcpStream, Bytes)> {
        let conn = self.conn.take()?;
        let stream = conn.io.into_whole()?;
        Some((stream, conn.read_buf.freeze()))
    }
}
