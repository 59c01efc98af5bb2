//! The response bodies the proxy sends to clients: they hold the backend's in-flight count (and
//! its connection) until they are fully sent or dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::backend::InFlight;
use baton_h1::UpstreamBody;

/// A response body sent to a client.
#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The backend's body, read from its connection; the guard is released at its end, on
    /// error, or when hyper drops it. The connection goes back to the pool at the end, and is
    /// closed otherwise.
    Upstream {
        body: UpstreamBody,
        guard: Option<InFlight>,
    },
    /// A body the proxy wrote itself (errors).
    Full(Option<Bytes>),
}

impl ResponseBody {
    pub(crate) fn upstream(body: UpstreamBody, guard: InFlight) -> Self {
        Self {
            kind: Kind::Upstream {
                body,
                guard: Some(guard),
            },
        }
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes)),
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }
}

/// The exchange is over as soon as the last frame is out: the connection is parked for the
/// next request, and the in-flight count released here rather than on drop, so a drain does
/// not wait for hyper.
fn finish(body: &mut UpstreamBody, guard: &mut Option<InFlight>) {
    if let Some(guard) = guard.take()
        && let Some(conn) = body.take_reusable()
    {
        guard.backend().put_conn(conn);
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper does not poll a body that is empty from the start (HEAD, 204, 304); its
        // connection is still good.
        if let Kind::Upstream { body, guard } = &mut self.kind
            && body.is_end_stream()
        {
            finish(body, guard);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Upstream { body, guard } => {
                let polled = body.poll_data(cx);
                match &polled {
                    Poll::Ready(None) => finish(body, guard),
                    Poll::Ready(Some(Err(_))) => {
                        guard.take();
                    }
                    _ => {}
                }
                polled.map(|data| data.map(|d| d.map(Frame::data)))
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
            Kind::Upstream { body, .. } => body
                .exact_size()
                .map_or_else(SizeHint::default, SizeHint::with_exact),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
