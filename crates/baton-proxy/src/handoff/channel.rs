//! Lines over a unix stream, with descriptors riding along (`SCM_RIGHTS`, as `OwnedFd`
//! through rustix: the workspace forbids `unsafe`).

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use tokio::net::UnixStream;

use super::HandoffError;

/// The longest line either side accepts.
const MAX_LINE: usize = 64 * 1024;

/// Lines over a unix stream, with descriptors riding along.
pub(super) struct Channel {
    stream: UnixStream,
    read: Vec<u8>,
    /// Descriptors received, in the order they came.
    pub(super) fds: VecDeque<OwnedFd>,
}

impl Channel {
    pub(super) fn new(stream: UnixStream) -> Channel {
        Channel {
            stream,
            read: Vec::new(),
            fds: VecDeque::new(),
        }
    }

    /// Sends `line` (newlines become spaces), with `fd` attached to its first byte.
    pub(super) async fn send(&self, line: &str, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let mut bytes = line.replace(['\n', '\r'], " ").into_bytes();
        bytes.push(b'\n');
        let mut sent = 0;
        while sent < bytes.len() {
            sent += self
                .stream
                .async_io(Interest::WRITABLE, || {
                    let fds: Vec<BorrowedFd<'_>> = fd.filter(|_| sent == 0).into_iter().collect();
                    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                    let mut control = SendAncillaryBuffer::new(&mut space);
                    if !fds.is_empty() {
                        control.push(SendAncillaryMessage::ScmRights(&fds));
                    }
                    let iov = [IoSlice::new(&bytes[sent..])];
                    rustix::net::sendmsg(&self.stream, &iov, &mut control, SendFlags::NOSIGNAL)
                        .map_err(io::Error::from)
                })
                .await?;
        }
        Ok(())
    }

    /// The next line; an error once the other side has closed.
    pub(super) async fn recv(&mut self) -> Result<String, HandoffError> {
        loop {
            if let Some(end) = self.read.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.read.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if self.read.len() > MAX_LINE {
                return Err(HandoffError::Protocol("a line too long".into()));
            }
            let mut chunk = [0u8; 4096];
            let Channel { stream, fds, .. } = self;
            let n = stream
                .async_io(Interest::READABLE, || {
                    // Linux hands over at most one sender's descriptors per read.
                    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
                    let mut control = RecvAncillaryBuffer::new(&mut space);
                    let mut iov = [IoSliceMut::new(&mut chunk)];
                    let msg = rustix::net::recvmsg(
                        &*stream,
                        &mut iov,
                        &mut control,
                        RecvFlags::CMSG_CLOEXEC,
                    )
                    .map_err(io::Error::from)?;
                    for message in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(received) = message {
                            fds.extend(received);
                        }
                    }
                    Ok(msg.bytes)
                })
                .await?;
            if n == 0 {
                return Err(HandoffError::Protocol(
                    "the other process closed the hand-over".into(),
                ));
            }
            self.read.extend_from_slice(&chunk[..n]);
        }
    }
}
