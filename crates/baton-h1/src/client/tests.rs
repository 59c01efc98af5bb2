//! The client against scripted instances on real sockets.

use super::*;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::response::Parts;
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A scripted backend: for each accepted connection, reads requests and answers each with
/// the next canned response; sends every request it read (head and body bytes) to the test.
/// A response of `None` closes the connection instead of answering; a response without
/// a length (ending at the close) is followed by closing the connection.
async fn backend(
    responses: Vec<Option<&'static [u8]>>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut responses = responses.into_iter();
        while let Ok((mut stream, _)) = listener.accept().await {
            loop {
                let Some(request) = read_request(&mut stream).await else {
                    break;
                };
                let _ = tx.send(request);
                match responses.next() {
                    Some(Some(response)) => {
                        let head = String::from_utf8_lossy(response).to_lowercase();
                        let delimited = head.contains("content-length")
                            || head.contains("chunked")
                            || head.contains(" 204 ")
                            || head.contains(" 304 ");
                        if stream.write_all(response).await.is_err() || !delimited {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
    });
    (addr, rx)
}

/// A request head, up to and including its blank line.
async fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        got.push(byte[0]);
    }
    Some(got)
}

/// One request: its head, then a body framed by content-length or chunked.
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = read_request_head(stream).await?;
    let mut byte = [0u8; 1];
    let head = String::from_utf8_lossy(&got).to_lowercase();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.ok()?;
        got.extend(body);
    } else if head.contains("transfer-encoding: chunked") {
        while !got.ends_with(b"\r\n0\r\n\r\n") {
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            got.push(byte[0]);
        }
    }
    Some(got)
}

fn pool(addr: SocketAddr) -> Arc<Pool> {
    Pool::new(addr, 0, Duration::from_secs(2), Duration::from_secs(60), 64)
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
        .collect()
}

/// One exchange; the connection goes back to the pool if it may carry another, as the
/// proxy's response body does.
async fn exchange(
    pool: &Arc<Pool>,
    method: Method,
    body: &mut RequestBody,
) -> Result<(Parts, Vec<u8>, bool), UpstreamError> {
    let headers = headers(&[("host", "backend")]);
    let request = Outgoing {
        method: &method,
        target: "/path?q=1",
        headers: &headers,
    };
    let Incoming { head, mut body } = send(pool, &request, body).await?;
    let parts = head.into_parts()?;
    let mut data = Vec::new();
    while let Some(chunk) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
        data.extend_from_slice(&chunk.map_err(UpstreamError::Exchange)?);
    }
    let reusable = match body.take_reusable() {
        Some(conn) => {
            pool.put(conn);
            true
        }
        None => false,
    };
    Ok((parts, data, reusable))
}

#[tokio::test]
async fn content_length_body_and_keep_alive() {
    let (addr, mut requests) = backend(vec![Some(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
    )])
    .await;
    let (parts, body, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(body, b"hello");
    assert!(reusable);
    let x: Vec<_> = parts.headers.get_all("x-a").iter().collect();
    assert_eq!(x, ["1", "2"]);
    let request = String::from_utf8(requests.recv().await.unwrap()).unwrap();
    assert_eq!(request, "GET /path?q=1 HTTP/1.1\r\nhost: backend\r\n\r\n");
}

#[tokio::test]
async fn a_response_trickling_in_byte_by_byte_is_read_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let responses: [&[u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Long: abcdefghij\r\n\r\nhello world",
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ];
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        for response in responses {
            read_request(&mut stream).await.unwrap();
            for byte in response {
                stream.write_all(&[*byte]).await.unwrap();
                tokio::task::yield_now().await;
            }
        }
        // Keep the connection open until the client is done with it.
        let _ = read_request(&mut stream).await;
    });
    let pool = pool(addr);
    let (parts, body, reusable) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert_eq!(
        (parts.status.as_u16(), body.as_slice(), reusable),
        (200, &b"hello world"[..], true)
    );
    assert_eq!(parts.headers["x-long"], "abcdefghij");
    let (parts, body, reusable) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert_eq!(
        (parts.status.as_u16(), body.as_slice(), reusable),
        (201, &b"abcde"[..], true)
    );
}

#[tokio::test]
async fn chunked_body_with_trailers_is_decoded() {
    let (addr, _requests) = backend(vec![Some(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n",
    )])
    .await;
    let (parts, body, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert_eq!(body, b"hello world");
    assert!(!parts.headers.contains_key("content-length"));
    assert!(reusable);
}

#[tokio::test]
async fn a_body_without_length_runs_to_the_close_and_the_connection_is_not_reused() {
    let (addr, _requests) = backend(vec![Some(b"HTTP/1.1 200 OK\r\n\r\nuntil close"), None]).await;
    let (_, body, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert_eq!(body, b"until close");
    assert!(!reusable);
}

#[tokio::test]
async fn head_204_and_304_have_no_body_and_informational_responses_are_skipped() {
    let (addr, _requests) = backend(vec![
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
        Some(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Some(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"),
        Some(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ])
    .await;
    let pool = pool(addr);
    let (parts, body, reusable) = exchange(&pool, Method::HEAD, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert_eq!(
        (parts.status.as_u16(), body.len(), reusable),
        (200, 0, true)
    );
    for status in [204, 304] {
        let (parts, body, reusable) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(
            (parts.status.as_u16(), body.len(), reusable),
            (status, 0, true)
        );
    }
    let (parts, body, _) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert_eq!((parts.status.as_u16(), body.as_slice()), (200, &b"ok"[..]));
}

#[tokio::test]
async fn connection_close_and_http_1_0_are_not_reused() {
    let (addr, _requests) = backend(vec![Some(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
    )])
    .await;
    let (_, _, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert!(!reusable);
    let (addr, _requests) =
        backend(vec![Some(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na")]).await;
    let (_, _, reusable) = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert!(!reusable);
}

#[tokio::test]
async fn bad_responses_are_protocol_errors() {
    for response in [
        &b"NOT HTTP\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    ] {
        let (addr, _requests) = backend(vec![Some(response)]).await;
        let failed = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
            .await
            .unwrap_err();
        assert!(matches!(failed, UpstreamError::Protocol(_)), "{failed:?}");
    }
}

#[tokio::test]
async fn a_response_head_over_the_limit_is_refused_without_growing_forever() {
    let mut head = b"HTTP/1.1 200 OK\r\nX-Filler: ".to_vec();
    head.resize(MAX_HEAD_BYTES + 100, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    let head: &'static [u8] = Box::leak(head.into_boxed_slice());
    let (addr, _requests) = backend(vec![Some(head)]).await;
    let failed = exchange(&pool(addr), Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, UpstreamError::Protocol(m) if m.contains("larger than")),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_stale_pooled_connection_is_replaced_for_an_idempotent_request() {
    // The first connection answers once and then closes at the next request, as a backend
    // whose keep-alive timeout fired just as the request went out.
    let (addr, mut requests) = backend(vec![
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
        None,
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"),
    ])
    .await;
    let pool = pool(addr);
    exchange(&pool, Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    let (_, body, _) = exchange(&pool, Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    assert_eq!(body, b"b");
    for _ in 0..3 {
        requests.recv().await.unwrap();
    }
}

#[tokio::test]
async fn a_stale_pooled_connection_fails_a_post_rather_than_sending_it_twice() {
    let (addr, _requests) = backend(vec![
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
        None,
    ])
    .await;
    let pool = pool(addr);
    exchange(&pool, Method::GET, &mut RequestBody::Empty)
        .await
        .unwrap();
    let failed = exchange(&pool, Method::POST, &mut RequestBody::Empty)
        .await
        .unwrap_err();
    assert!(matches!(failed, UpstreamError::Exchange(_)), "{failed:?}");
}

mod request_bodies;
