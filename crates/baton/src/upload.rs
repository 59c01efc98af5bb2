//! A request body streamed from a file (a packed artifact), read on a blocking thread in
//! fixed-size chunks, so uploading never holds the artifact in memory.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Bytes read from the file at a time.
const CHUNK: usize = 256 * 1024;

/// `head`, then the rest of `file` from its current position, with an exact length.
pub fn file_body(
    head: Vec<u8>,
    file: std::fs::File,
) -> std::io::Result<BoxBody<Bytes, std::io::Error>> {
    use std::io::Seek;
    let mut file = file;
    let left = head.len() as u64 + file.metadata()?.len() - file.stream_position()?;
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
            return;
        }
        loop {
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Ok(FileBody { rx, left }.boxed())
}

struct FileBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    left: u64,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.left = self.left.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
