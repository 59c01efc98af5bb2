//! Frames: a u32 big-endian length, then that many bytes of JSON. A frame above
//! [`MAX_FRAME`] is a protocol error that closes the connection, so a peer never makes the
//! other side hold more than one such frame in memory.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame body, in bytes: 4 MiB.
pub const MAX_FRAME: usize = 4 << 20;
/// How much is read from the connection at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame above [`MAX_FRAME`].
    #[error("frame of {0} bytes is larger than the 4 MiB limit")]
    TooLarge(usize),
    /// The connection ended inside a frame.
    #[error("the connection ended inside a frame ({0} bytes of it received)")]
    Truncated(usize),
    /// The frame is not a message this side knows.
    #[error("not a valid message: {0}")]
    Json(#[from] serde_json::Error),
    /// The peer took none of a frame in time: it stopped reading (or the network did).
    #[error("the peer took no frame for {}ms: it stopped reading", .0.as_millis())]
    Stalled(std::time::Duration),
}

/// Writes `msg` as one frame and flushes it.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// [`write_frame`] within `limit`: a peer that stops reading must not block the writer for
/// ever. A frame cut by the limit leaves the connection unusable: close it.
pub async fn write_frame_within<W, T>(
    w: &mut W,
    msg: &T,
    limit: std::time::Duration,
) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    tokio::time::timeout(limit, write_frame(w, msg))
        .await
        .unwrap_or(Err(FrameError::Stalled(limit)))
}

/// Reads frames from one side of a connection. [`FrameReader::next`] is cancel-safe: a
/// frame half read when it is cancelled (in a `select!`) is completed by the next call.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames from `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    /// The reader and the bytes already read past the last frame, to read a raw body that
    /// follows a frame.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        (self.inner, self.buf)
    }

    /// The next message, or `None` when the peer closed the connection between two frames.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            if let Some(body) = self.take_frame()? {
                return Ok(Some(serde_json::from_slice(&body)?));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = match self.inner.read(&mut chunk).await {
                Ok(n) => n,
                // TLS without close_notify: the peer's process died or the network broke.
                // Between frames nothing is lost (frames carry their length), so it is a close.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return match self.buf.len() {
                    0 => Ok(None),
                    got => Err(FrameError::Truncated(got)),
                };
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A whole frame's body off the front of the buffer, if there is one.
    fn take_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(head) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::AgentMsg;

    #[tokio::test]
    async fn frames_round_trip_in_order_and_a_clean_close_is_none() {
        let (mut a, b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for _ in 0..3 {
                write_frame(&mut a, &AgentMsg::Heartbeat).await.unwrap();
            }
        });
        let mut r = FrameReader::new(b);
        for _ in 0..3 {
            assert_eq!(
                r.next::<AgentMsg>().await.unwrap(),
                Some(AgentMsg::Heartbeat)
            );
        }
        writer.await.unwrap();
        assert!(r.next::<AgentMsg>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_oversize_frame_is_refused_before_its_body_is_read() {
        let (mut a, b) = tokio::io::duplex(64);
        let len = (MAX_FRAME as u32 + 1).to_be_bytes();
        // Only the header is sent: the reader must refuse without waiting for 4 MiB.
        a.write_all(&len).await.unwrap();
        let e = FrameReader::new(b).next::<AgentMsg>().await.unwrap_err();
        assert!(
            matches!(e, FrameError::TooLarge(n) if n == MAX_FRAME + 1),
            "{e}"
        );

        let big = "x".repeat(MAX_FRAME);
        let (mut a, _b) = tokio::io::duplex(64);
        let e = write_frame(&mut a, &big).await.unwrap_err();
        assert!(matches!(e, FrameError::TooLarge(_)), "{e}");
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_an_error_not_a_close() {
        for sent in [&[0u8, 0][..], &[0, 0, 0, 20, b'{', b'"'][..]] {
            let (mut a, b) = tokio::io::duplex(64);
            a.write_all(sent).await.unwrap();
            drop(a);
            let e = FrameReader::new(b).next::<AgentMsg>().await.unwrap_err();
            assert!(
                matches!(e, FrameError::Truncated(n) if n == sent.len()),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn a_write_to_a_peer_that_stops_reading_ends_at_its_limit() {
        let (mut a, _b) = tokio::io::duplex(64);
        let limit = std::time::Duration::from_millis(50);
        let big = "x".repeat(1024);
        let e = write_frame_within(&mut a, &big, limit).await.unwrap_err();
        assert!(matches!(e, FrameError::Stalled(l) if l == limit), "{e}");

        let (mut a, mut b) = tokio::io::duplex(64);
        write_frame_within(&mut a, &AgentMsg::Heartbeat, limit)
            .await
            .unwrap();
        drop(a);
        let mut r = FrameReader::new(&mut b);
        assert_eq!(
            r.next::<AgentMsg>().await.unwrap(),
            Some(AgentMsg::Heartbeat)
        );
    }

    #[tokio::test]
    async fn a_frame_that_is_not_a_known_message_is_an_error() {
        let (mut a, b) = tokio::io::duplex(64);
        write_frame(&mut a, &serde_json::json!({"type": "launch"}))
            .await
            .unwrap();
        let e = FrameReader::new(b).next::<AgentMsg>().await.unwrap_err();
        assert!(matches!(e, FrameError::Json(_)), "{e}");
    }
}
