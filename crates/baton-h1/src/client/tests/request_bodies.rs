//! Request bodies: sent while the answer is read, framed by their own size, failing as the
//! client's when they do.

use super::*;

/// A request body the test feeds piece by piece, of unknown size (sent chunked).
fn fed_body() -> (
    http_body_util::channel::Sender<Bytes, std::io::Error>,
    RequestBody,
) {
    let (tx, body) = http_body_util::channel::Channel::new(4);
    (tx, RequestBody::Test(body))
}

/// Sends a POST of `body` to `target` on a connection from `pool`.
async fn post(
    pool: &Pool,
    target: &str,
    body: &mut RequestBody,
) -> Result<Incoming, UpstreamError> {
    let headers = headers(&[("host", "backend")]);
    let request = Outgoing {
        method: &Method::POST,
        target,
        headers: &headers,
    };
    send(pool, &request, body).await
}

#[tokio::test]
async fn an_early_answer_arrives_while_the_body_is_still_being_sent() {
    // The instance refuses the upload after the head, as a 413 or a 401 would.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_request_head(&mut stream).await.unwrap();
        stream
            .write_all(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        // Keep the socket until the test ends: the proxy must not need the close.
        std::future::pending::<()>().await;
    });
    let pool = pool(addr);
    let (mut tx, mut body) = fed_body();
    tx.send_data(Bytes::from_static(b"part of a large upload"))
        .await
        .unwrap();
    // The body never ends (tx is kept): the answer must come anyway.
    let incoming = tokio::time::timeout(Duration::from_secs(20), post(&pool, "/upload", &mut body))
        .await
        .expect("the early answer is read while the body is unfinished")
        .unwrap();
    assert_eq!(incoming.head.status, 413);
    let mut response = incoming.body;
    assert!(response.is_end_stream());
    assert!(
        response.take_reusable().is_none(),
        "the body was not all sent"
    );
    drop(tx);
}

#[tokio::test]
async fn a_failing_client_body_ends_the_exchange_at_once() {
    // An instance that waits for the whole body before it answers.
    let (addr, _requests) =
        backend(vec![Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]).await;
    let pool = pool(addr);
    let (mut tx, mut body) = fed_body();
    tx.send_data(Bytes::from_static(b"half")).await.unwrap();
    tokio::spawn(async move {
        tokio::task::yield_now().await;
        tx.abort(std::io::Error::other("client went away"));
    });
    let failed = tokio::time::timeout(Duration::from_secs(20), post(&pool, "/upload", &mut body))
        .await
        .expect("no wait for an answer that cannot come")
        .err()
        .expect("the exchange fails");
    assert!(matches!(failed, UpstreamError::ClientBody(_)), "{failed:?}");
}

#[tokio::test]
async fn an_instance_may_stream_its_answer_while_it_reads_the_body() {
    // An echo that answers each piece of the body as it arrives (full duplex).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_request_head(&mut stream).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        // Re-frame whatever arrives (the chunked request, as raw bytes) as one chunk each.
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            let mut piece = BytesMut::new();
            chunked::encode_chunk_header(n, &mut piece);
            piece.extend_from_slice(&buf[..n]);
            piece.extend_from_slice(chunked::CRLF);
            stream.write_all(&piece).await.unwrap();
            if buf[..n].ends_with(chunked::LAST_CHUNK) {
                break;
            }
        }
        stream.write_all(chunked::LAST_CHUNK).await.unwrap();
        std::future::pending::<()>().await;
    });
    let pool = pool(addr);
    let (mut tx, mut body) = fed_body();
    tx.send_data(Bytes::from_static(b"ping")).await.unwrap();
    let Incoming { mut body, .. } =
        tokio::time::timeout(Duration::from_secs(20), post(&pool, "/echo", &mut body))
            .await
            .expect("the head comes while the body is open")
            .unwrap();
    let mut echoed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&echoed).contains("ping") {
        let piece =
            tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| body.poll_data(cx)))
                .await
                .expect("the first piece is echoed before the body ends")
                .unwrap()
                .unwrap();
        echoed.extend_from_slice(&piece);
    }
    tx.send_data(Bytes::from_static(b"pong")).await.unwrap();
    drop(tx);
    while let Some(piece) =
        tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| body.poll_data(cx)))
            .await
            .expect("the rest is echoed")
    {
        echoed.extend_from_slice(&piece.unwrap());
    }
    let echoed = String::from_utf8_lossy(&echoed);
    assert!(
        echoed.contains("ping") && echoed.contains("pong"),
        "{echoed:?}"
    );
    assert!(
        body.take_reusable().is_some(),
        "body sent, answer read: reusable"
    );
}

#[test]
fn request_heads_carry_the_framing_their_body_needs() {
    // A client's own framing headers never go out as they came.
    let h = headers(&[("host", "b"), ("content-length", "99")]);
    let head = |method: &Method, framing| {
        let request = Outgoing {
            method,
            target: "/",
            headers: &h,
        };
        String::from_utf8(encode_head(&request, framing).to_vec()).unwrap()
    };
    assert_eq!(
        head(&Method::GET, BodyFraming::None),
        "GET / HTTP/1.1\r\nhost: b\r\n\r\n"
    );
    assert_eq!(
        head(&Method::POST, BodyFraming::None),
        "POST / HTTP/1.1\r\nhost: b\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(
        head(&Method::POST, BodyFraming::Length(35)),
        "POST / HTTP/1.1\r\nhost: b\r\ncontent-length: 35\r\n\r\n"
    );
    assert_eq!(
        head(&Method::POST, BodyFraming::Chunked),
        "POST / HTTP/1.1\r\nhost: b\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[tokio::test]
async fn a_body_of_unknown_size_is_sent_chunked() {
    let (addr, mut requests) =
        backend(vec![Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]).await;
    let pool = pool(addr);
    let (tx, body) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(4);
    let mut tx = tx;
    tokio::spawn(async move {
        tx.send_data(Bytes::from_static(b"hello ")).await.unwrap();
        tx.send_data(Bytes::from_static(b"world")).await.unwrap();
    });
    // hyper's Incoming cannot be built in a test; stream the channel through a real client
    // connection instead: a tiny server hands its Incoming to `send`.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = listener.local_addr().unwrap();
    let pool2 = pool.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let pool = pool2.clone();
                async move {
                    let (parts, incoming) = req.into_parts();
                    let mut body = RequestBody::Incoming(incoming);
                    let request = Outgoing {
                        method: &parts.method,
                        target: "/upload",
                        headers: &parts.headers,
                    };
                    let status = match send(&pool, &request, &mut body).await {
                        Ok(incoming) => incoming.head.status,
                        Err(_) => StatusCode::BAD_GATEWAY,
                    };
                    let mut response = http::Response::new(http_body_util::Empty::<Bytes>::new());
                    *response.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    let stream = TcpStream::connect(front).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            http::Request::post("/upload")
                .header("host", "front")
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let request = String::from_utf8(requests.recv().await.unwrap()).unwrap();
    assert!(
        request.contains("transfer-encoding: chunked\r\n"),
        "{request}"
    );
    assert!(
        request.ends_with("\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"),
        "{request:?}"
    );
}

#[tokio::test]
async fn a_body_shorter_or_longer_than_its_length_fails_as_the_clients() {
    for (bytes, length) in [(&b"abc"[..], 5), (&b"abcdef"[..], 5)] {
        let mut wire = Vec::new();
        let mut body = RequestBody::Inline(Bytes::from_static(bytes));
        let written = write_body(&mut wire, &mut body, BodyFraming::Length(length)).await;
        assert!(
            matches!(written, Err(UpstreamError::ClientBody(_))),
            "{bytes:?} as {length} bytes: {written:?}"
        );
    }
    let mut wire = Vec::new();
    let mut body = RequestBody::Inline(Bytes::from_static(b"abcde"));
    write_body(&mut wire, &mut body, BodyFraming::Length(5))
        .await
        .unwrap();
    assert_eq!(wire, b"abcde");
}

#[tokio::test]
async fn an_inline_body_the_socket_does_not_take_at_once_is_left_for_the_writer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    // The other side reads nothing until the end.
    let (mut peer, _) = listener.accept().await.unwrap();
    let head = b"POST / HTTP/1.1\r\ncontent-length: 4194304\r\n\r\n";
    let body = Bytes::from((0..4 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());

    let rest = write_inline(&mut stream, head, &body)
        .await
        .unwrap()
        .expect("4 MiB do not fit in one write to a 4 KiB send buffer");
    assert!(!rest.is_empty() && rest.len() < body.len());
    // What went out and what is left make the request exactly.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        got
    });
    stream.write_all(&rest).await.unwrap();
    drop(stream);
    let got = reader.await.unwrap();
    assert_eq!(got.len(), head.len() + body.len());
    assert_eq!(&got[..head.len()], head);
    assert!(got[head.len()..] == body[..], "the body arrived altered");
}
