//! The bodies the proxy moves: requests to backends, and responses to clients that hold the
//! backend's in-flight count until they are fully sent or dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::backend::InFlight;

/// A request body sent to a backend: the client's own, or nothing (for a retry, which only
/// happens when the client's body was empty).
#[derive(Debug)]
pub enum RequestBody {
    /// The body the client sent, streamed through.
    Incoming(Incoming),
    /// No body.
    Empty,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Incoming(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(body) => body.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(body) => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A response body sent to a client.
#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The backend's body; the guard is released at its end, on error, or when hyper drops it.
    Upstream { body: Incoming, guard: Option<InFlight> },
    /// A body the proxy wrote itself (errors).
    Full(Option<Bytes>),
}

impl ResponseBody {
    pub(crate) fn upstream(body: Incoming, guard: InFlight) -> Self {
        Self { kind: Kind::Upstream { body, guard: Some(guard) } }
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        Self { kind: Kind::Full(Some(bytes)) }
    }

    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Full(None) }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Upstream { body, guard } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                    // The exchange is over as soon as the last frame is out; releasing here
                    // rather than on drop lets a drain finish without waiting for hyper.
                    guard.take();
                }
                polled
            }
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
