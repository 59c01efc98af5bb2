//! Sending one copy to one instance, off the request path: within the copy timeout, reading at
//! most [`MAX_BODY`] of the answer. Not counted in the instance's metrics: users never see it.

use std::collections::BTreeMap;

use baton_h1::RequestBody;
use baton_h1::client::{self as upstream, BodyFraming, Outgoing};
use bytes::BytesMut;
use http::header;

use super::compare::{Answer, MAX_BODY};
use super::{Copy, MirrorConfig};
use crate::backend::Backend;

/// The instance's answer, or none if it failed or did not answer within the timeout.
pub(super) async fn send(backend: &Backend, copy: &Copy, config: &MirrorConfig) -> Option<Answer> {
    tokio::time::timeout(config.timeout, exchange(backend, copy, config))
        .await
        .ok()
        .flatten()
}

async fn exchange(backend: &Backend, copy: &Copy, config: &MirrorConfig) -> Option<Answer> {
    let (framing, mut body) = if copy.body.is_empty() {
        (BodyFraming::None, RequestBody::Empty)
    } else {
        (
            BodyFraming::Length(copy.body.len() as u64),
            RequestBody::Inline(copy.body.clone()),
        )
    };
    let mut headers = copy.headers.clone();
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, backend.host().clone());
    }
    let head = upstream::encode_head(
        &Outgoing {
            method: &copy.method,
            target: &copy.target,
            headers: &headers,
        },
        framing,
    );
    let pool = &backend.local().pool;
    let incoming = upstream::send_encoded(pool, &head, &copy.method, framing, &mut body)
        .await
        .ok()?;
    let upstream::Incoming { head, mut body } = incoming;
    let mut compared = BTreeMap::new();
    for (name, value) in head.headers() {
        if let Some(h) = config
            .compare_headers
            .iter()
            .find(|h| h.as_str().as_bytes().eq_ignore_ascii_case(name))
        {
            compared.insert(
                h.as_str().to_string(),
                String::from_utf8_lossy(value).into_owned(),
            );
        }
    }
    let mut buf = BytesMut::new();
    let mut whole = true;
    while let Some(piece) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
        let piece = piece.ok()?;
        if buf.len() + piece.len() > MAX_BODY {
            whole = false;
            break;
        }
        buf.extend_from_slice(&piece);
    }
    if whole && let Some(conn) = body.take_reusable() {
        backend.put_conn(conn);
    }
    Some(Answer {
        status: head.status,
        headers: compared,
        body: whole.then(|| buf.freeze()),
    })
}
