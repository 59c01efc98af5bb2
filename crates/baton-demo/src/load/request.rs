//! One HTTP/1.1 GET as the load generator makes it, and `wait_until_serving` built on it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A client connection that requests can be sent on.
pub(crate) type Conn = SendRequest<Empty<Bytes>>;

/// A complete response as far as the load generator cares.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) version: Option<String>,
}

/// Opens a TCP connection and runs the HTTP/1.1 handshake; the connection task is spawned.
pub(crate) async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        // Errors surface on the sender side as failed requests.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one GET on `conn` and reads the whole body.
pub(crate) async fn get(
    conn: &mut Conn,
    addr: SocketAddr,
    path: &str,
    worker: usize,
    close: bool,
) -> Result<Answer, String> {
    let mut req = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header("x-load-worker", worker.to_string());
    if close {
        req = req.header(header::CONNECTION, "close");
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("bad request for {path:?}: {e}"))?;
    let resp = conn
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        version: version_of(&body),
    })
}

/// The `"version"` string of a JSON body, if it is one.
pub(crate) fn version_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Versioned {
        version: Option<String>,
    }
    serde_json::from_slice::<Versioned>(body).ok()?.version
}

/// Polls `GET path` on fresh connections until one answers 2xx (true) or `deadline` passes
/// (false).
pub async fn wait_until_serving(addr: SocketAddr, path: &str, deadline: Duration) -> bool {
    const POLL_EVERY: Duration = Duration::from_millis(20);
    let until = Instant::now() + deadline;
    loop {
        let remaining = until.saturating_duration_since(Instant::now());
        let attempt = async {
            let mut conn = connect(addr).await?;
            get(&mut conn, addr, path, 0, true).await
        };
        if let Ok(Ok(answer)) = tokio::time::timeout(remaining, attempt).await
            && (200..300).contains(&answer.status)
        {
            return true;
        }
        if Instant::now() + POLL_EVERY >= until {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_json_bodies_only() {
        assert_eq!(
            version_of(br#"{"version":"1.2","pid":3}"#).as_deref(),
            Some("1.2")
        );
        assert_eq!(version_of(br#"{"pid":3}"#), None);
        assert_eq!(version_of(b"not json"), None);
    }

    #[tokio::test]
    async fn wait_until_serving_gives_up_on_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(!wait_until_serving(addr, "/", Duration::from_millis(100)).await);
    }
}
