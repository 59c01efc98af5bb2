//! HTTP/1.x as a client sees it on the wire: raw bytes in, raw bytes out, through the proxy's
//! listener. These tests describe behaviour (framing, keep-alive, pipelining, header rewriting),
//! not how the proxy parses or writes its messages.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use support::wire::*;
use support::*;

// Requests written back to back in one write are all answered, in the order they were sent.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let backend = Scripted::start(|r| {
        let mut body = format!("{} {} ", r.method, r.target_str()).into_bytes();
        body.extend_from_slice(&r.body);
        Reply::Keep(ok(&body))
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let mut pipeline = get_request("/first");
    pipeline.push_str("POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    pipeline.push_str(&get_request("/third"));
    client.send(pipeline).await;
    for expected in ["GET /first ", "POST /second hello", "GET /third "] {
        let r = client.response().await;
        assert_eq!((r.status, r.text().as_str()), (200, expected));
    }
}

// One connection serves request after request; `Connection: close` ends it after the answer.
#[tokio::test]
async fn keep_alive_serves_many_requests_until_connection_close() {
    let b = TestBackend::start("a").await;
    let proxy = proxy_to(b.backend("1.0"), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    for n in 0..5 {
        let r = client.get("/").await;
        assert_eq!((r.status, r.text().as_str()), (200, "a"), "request {n}");
        assert!(!r.head.connection_has("close"), "{:?}", r.head);
    }
    client
        .send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let r = client.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
    assert!(r.head.connection_has("close"), "{:?}", r.head);
    client.expect_eof().await;
    assert_eq!(b.hits.load(SeqCst), 6);
}

// A backend body that ends when the backend closes reaches the client whole, and the client's
// connection lives on when the proxy could frame the body itself.
#[tokio::test]
async fn a_close_delimited_backend_body_reaches_the_client_whole() {
    let long = pattern(100_000);
    let body = long.clone();
    let backend = Scripted::start(move |r| match r.target_str() {
        "/until-close" => {
            let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
            bytes.extend_from_slice(&body);
            Reply::Close(bytes)
        }
        _ => Reply::Keep(ok(b"next")),
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let r = client.get("/until-close").await;
    assert_eq!(r.status, 200);
    assert!(r.body == long, "{} bytes, not the backend's", r.body.len());
    if r.framing == Framing::Close {
        client.expect_eof().await;
    } else {
        let r = client.get("/next").await;
        assert_eq!((r.status, r.text().as_str()), (200, "next"));
    }
}

// A chunked backend body (several chunks, an extension, a trailer) reaches the client exact.
#[tokio::test]
async fn a_chunked_backend_body_reaches_the_client_exact() {
    let backend = Scripted::start(|r| {
        Reply::Keep(match r.target_str() {
            "/chunks" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                5\r\nhello\r\n1;ext=1\r\n,\r\n7\r\n world!\r\n0\r\nX-Trailer: t\r\n\r\n"
                .to_vec(),
            "/empty" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            _ => ok(b"next"),
        })
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let r = client.get("/chunks").await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello, world!"));
    let r = client.get("/empty").await;
    assert_eq!((r.status, r.text().as_str()), (200, ""));
    let r = client.get("/next").await;
    assert_eq!((r.status, r.text().as_str()), (200, "next"));
}

// HEAD gets the backend's headers (its Content-Length included) and no body, so the next
// request on the connection still parses.
#[tokio::test]
async fn head_has_no_body_and_keeps_the_content_length() {
    let backend = Scripted::start(|r| {
        Reply::Keep(if r.method == "HEAD" {
            b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\nX-Method: HEAD\r\n\r\n".to_vec()
        } else {
            ok(b"after head")
        })
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    // Pipelined: any stray body bytes after the HEAD response would garble the next one.
    let mut pipeline = "HEAD /doc HTTP/1.1\r\nHost: x\r\n\r\n".to_string();
    pipeline.push_str(&get_request("/next"));
    client.send(pipeline).await;
    let r = client.response_to("HEAD").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.head.get("x-method"),
        Some("HEAD"),
        "the backend saw a HEAD"
    );
    assert_eq!(r.head.content_length(), Some(42), "{:?}", r.head);
    let r = client.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "after head"));

    // And sequentially.
    client.send("HEAD /doc HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let r = client.response_to("HEAD").await;
    assert_eq!(r.head.content_length(), Some(42), "{:?}", r.head);
    let r = client.get("/next").await;
    assert_eq!((r.status, r.text().as_str()), (200, "after head"));
}

// 204 and 304 carry no body (even with a Content-Length on the 304) and the connection stays
// usable.
#[tokio::test]
async fn no_content_and_not_modified_have_no_body() {
    let backend = Scripted::start(|r| {
        Reply::Keep(match r.target_str() {
            "/204" => b"HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n".to_vec(),
            "/304" => {
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 7\r\n\r\n".to_vec()
            }
            _ => ok(b"after"),
        })
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let r = client.get("/204").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.head.get("x-kind"), Some("none"));
    assert_eq!(r.head.get("transfer-encoding"), None, "{:?}", r.head);
    let r = client.get("/after").await;
    assert_eq!((r.status, r.text().as_str()), (200, "after"));

    client
        .send("GET /304 HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\n\r\n")
        .await;
    let r = client.response().await;
    assert_eq!(r.status, 304);
    assert_eq!(r.head.get("etag"), Some("\"v1\""));
    let r = client.get("/after").await;
    assert_eq!((r.status, r.text().as_str()), (200, "after"));
}

// A large body arrives byte-exact, framed by length or chunked, and the connection lives on.
#[tokio::test]
async fn a_large_response_arrives_byte_exact() {
    const SIZE: usize = 2 * 1024 * 1024;
    let big = pattern(SIZE);
    let body = big.clone();
    let backend = Scripted::start(move |r| {
        Reply::Keep(match r.target_str() {
            "/big" => ok(&body),
            "/big-chunked" => {
                let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for chunk in body.chunks(64 * 1024 + 7) {
                    bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    bytes.extend_from_slice(chunk);
                    bytes.extend_from_slice(b"\r\n");
                }
                bytes.extend_from_slice(b"0\r\n\r\n");
                bytes
            }
            _ => ok(b"after"),
        })
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let r = client.get("/big").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.head.content_length(), Some(SIZE), "{:?}", r.head);
    assert!(r.body == big, "{} bytes, not the backend's", r.body.len());
    let r = client.get("/big-chunked").await;
    assert_eq!(r.status, 200);
    assert!(r.body == big, "{} bytes, not the backend's", r.body.len());
    let r = client.get("/after").await;
    assert_eq!((r.status, r.text().as_str()), (200, "after"));
}

// A large request body reaches the backend whole.
#[tokio::test]
async fn a_large_request_body_reaches_the_backend_whole() {
    const SIZE: usize = 2 * 1024 * 1024;
    let big = pattern(SIZE);
    let expected = big.clone();
    let backend = Scripted::start(move |r| {
        let verdict = if r.body == expected {
            "same"
        } else {
            "different"
        };
        Reply::Keep(ok(format!("{} bytes, {verdict}", r.body.len()).as_bytes()))
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let mut request =
        format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
    request.extend_from_slice(&big);
    client.send(request).await;
    let r = client.response().await;
    assert_eq!((r.status, r.text()), (200, format!("{SIZE} bytes, same")));
    let r = client.get("/after").await;
    assert_eq!((r.status, r.text().as_str()), (200, "0 bytes, different"));
}

// A POST with a Content-Length body is answered, and so is the GET after it on the connection.
#[tokio::test]
async fn a_post_then_a_get_on_one_connection() {
    let b = TestBackend::start("a").await;
    let proxy = proxy_to(b.backend("1.0"), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client
        .send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        .await;
    let r = client.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    let r = client.get("/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
    assert_eq!(b.hits.load(SeqCst), 2);
}

// A chunked request body reaches the backend as the same bytes, and the connection lives on.
#[tokio::test]
async fn a_chunked_request_body_reaches_the_backend_intact() {
    let backend = Scripted::start(|r| Reply::Keep(ok(&r.body))).await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client
        .send(
            "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;name=v\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n",
        )
        .await;
    let r = client.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello world!"));
    let r = client.get("/after").await;
    assert_eq!((r.status, r.text().as_str()), (200, ""));

    let received = backend.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        (received[0].method.as_str(), received[0].body.as_slice()),
        ("POST", b"hello world!".as_slice())
    );
}

// An HTTP/1.0 request without keep-alive is answered, then the connection is closed.
#[tokio::test]
async fn http_1_0_without_keep_alive_is_answered_then_closed() {
    let b = TestBackend::start("a").await;
    let proxy = proxy_to(b.backend("1.0"), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client.send("GET / HTTP/1.0\r\nHost: x\r\n\r\n").await;
    let r = client.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
    assert_ne!(
        r.head.get("transfer-encoding"),
        Some("chunked"),
        "{:?}",
        r.head
    );
    client.expect_eof().await;
}

// An HTTP/1.0 client asking for keep-alive (ab -k) keeps its connection.
#[tokio::test]
async fn http_1_0_with_keep_alive_keeps_the_connection() {
    let b = TestBackend::start("a").await;
    let proxy = proxy_to(b.backend("1.0"), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    for n in 0..3 {
        client
            .send("GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let r = client.response().await;
        assert_eq!((r.status, r.text().as_str()), (200, "a"), "request {n}");
        assert_eq!(r.framing, Framing::Length, "{:?}", r.head);
        assert!(r.head.connection_has("keep-alive"), "{:?}", r.head);
    }
    assert_eq!(b.hits.load(SeqCst), 3);
}

// X-Forwarded-For lines the client sent become one list ending with the client's address, and
// every request (not every connection) gets its own X-Request-Id unless it brought one.
#[tokio::test]
async fn forwarded_for_lines_are_joined_and_request_ids_are_per_request() {
    let backend = Scripted::start(|_| Reply::Keep(ok(b""))).await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client
        .send(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\
             X-Forwarded-For: 198.51.100.2, 10.0.0.1\r\n\r\n",
        )
        .await;
    assert_eq!(client.response().await.status, 200);
    for _ in 0..2 {
        assert_eq!(client.get("/").await.status, 200);
    }
    client
        .send("GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-7\r\n\r\n")
        .await;
    assert_eq!(client.response().await.status, 200);

    let received = backend.received();
    assert_eq!(received.len(), 4);
    assert_eq!(
        received[0].head.all("x-forwarded-for"),
        ["203.0.113.7, 198.51.100.2, 10.0.0.1, 127.0.0.1"]
    );
    let ids: Vec<&str> = received[..3]
        .iter()
        .map(|r| r.head.get("x-request-id").expect("a request id"))
        .collect();
    for id in &ids {
        assert!(
            id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
    }
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    assert_eq!(received[3].head.all("x-request-id"), ["client-7"]);
}

// A backend that dies mid-body (fewer bytes than its Content-Length) makes the proxy close the
// client's connection rather than leave it waiting for the rest.
#[tokio::test]
async fn a_backend_closing_mid_body_closes_the_client_connection() {
    let backend = Scripted::start(|_| {
        Reply::Close(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly part of it".to_vec())
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client.send(get_request("/")).await;
    if let Some((head, rest)) = client.cut_response().await {
        assert_eq!(head.content_length(), Some(1000), "{head:?}");
        assert!(rest.len() < 1000, "{} bytes", rest.len());
    }
    eventually("the cut response to leave the in-flight count", || {
        backend.backend.in_flight() == 0
    })
    .await;
}

// A backend that dies mid-way through a chunked body must not look complete to the client: no
// last chunk is sent, the connection is closed.
#[tokio::test]
async fn a_backend_closing_mid_chunked_body_is_not_passed_off_as_complete() {
    let backend = Scripted::start(|_| {
        Reply::Close(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
        )
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client.send(get_request("/")).await;
    if let Some((head, rest)) = client.cut_response().await {
        let shown = String::from_utf8_lossy(&rest);
        if head.is_chunked() {
            assert!(!rest.ends_with(b"0\r\n\r\n"), "a last chunk: {shown:?}");
        } else if let Some(length) = head.content_length() {
            assert!(rest.len() < length, "{head:?} {shown:?}");
        } else {
            panic!("close-delimited: the client cannot tell the body was cut: {head:?}");
        }
    }
}

// A response without a Date gets one; a backend's own Date is passed on unchanged.
#[tokio::test]
async fn responses_carry_a_date() {
    let backend = Scripted::start(|r| {
        Reply::Keep(match r.target_str() {
            "/dated" => b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                Content-Length: 2\r\n\r\nok"
                .to_vec(),
            _ => ok(b"ok"),
        })
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let r = client.get("/undated").await;
    let date = r.head.get("date").expect("a Date header");
    // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
    assert!(
        date.len() == 29 && date.as_bytes()[3] == b',' && date.ends_with(" GMT"),
        "{date:?}"
    );
    let r = client.get("/dated").await;
    assert_eq!(r.head.get("date"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
}

// A client that sends `Expect: 100-continue` gets its body through and a final answer (an
// interim 100 first or not), and the connection lives on.
#[tokio::test]
async fn expect_100_continue_gets_the_body_through() {
    let b = TestBackend::start("a").await;
    let proxy = proxy_to(b.backend("1.0"), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client
        .send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    // Like curl: wait a while for the 100, then send the body anyway.
    if let Ok((status, head)) =
        tokio::time::timeout(Duration::from_secs(2), client.next_head()).await
    {
        assert_eq!(status, 100, "an interim 100 before the body: {head:?}");
    }
    client.send("hello").await;
    let r = client.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    let r = client.get("/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
}

// The request target reaches the backend as the client wrote it (query and escapes included);
// an absolute-form target reaches it as a path.
#[tokio::test]
async fn the_request_target_reaches_the_backend_unchanged() {
    let backend = Scripted::start(|r| Reply::Keep(ok(&r.target))).await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let r = client.get("/search?q=a%20b&tag=x&tag=y").await;
    assert_eq!(r.text(), "/search?q=a%20b&tag=x&tag=y");
    client
        .send("GET http://shop.example/cart?id=3 HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .await;
    let r = client.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "/cart?id=3"));
    assert_eq!(backend.received()[1].head.get("host"), Some("shop.example"));
}

// Repeated response headers (Set-Cookie above all) stay separate lines, in order.
#[tokio::test]
async fn repeated_response_headers_stay_separate_lines() {
    let backend = Scripted::start(|_| {
        Reply::Keep(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2, c=3\r\n\
              Content-Length: 0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let r = client.get("/").await;
    assert_eq!(r.head.all("set-cookie"), ["a=1; Path=/", "b=2, c=3"]);
}

// A request with both Content-Length and chunked coding cannot smuggle a second request past
// the proxy: it is refused, or read as chunked, and either way the connection is closed after
// the answer (RFC 9112 6.1, 6.3).
#[tokio::test]
async fn content_length_with_chunked_cannot_smuggle_a_request() {
    let backend = Scripted::start(|r| {
        let mut body = format!("{} ", r.target_str()).into_bytes();
        body.extend_from_slice(&r.body);
        Reply::Keep(ok(&body))
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    // Read as chunked, the body is empty and a GET follows; read by Content-Length, the GET is
    // the body.
    let chunked_then_get = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    client
        .send(format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\
             Transfer-Encoding: chunked\r\n\r\n{chunked_then_get}",
            chunked_then_get.len()
        ))
        .await;
    let r = client.response().await;
    assert!(
        r.status == 400 || (r.status, r.text().as_str()) == (200, "/upload "),
        "{} {:?}",
        r.status,
        r.text()
    );
    client.expect_eof().await;
    let received: Vec<(String, Vec<u8>)> = backend
        .received()
        .into_iter()
        .map(|r| (r.target_str().to_string(), r.body))
        .collect();
    assert!(
        received.is_empty() || received == [("/upload".to_string(), Vec::new())],
        "{received:?}"
    );
}

// A request that is not HTTP gets a 400 and the connection is closed; nothing reaches the
// backend.
#[tokio::test]
async fn a_malformed_request_is_400_and_closed() {
    let backend = Scripted::start(|_| Reply::Keep(ok(b""))).await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client.send("NOT HTTP AT ALL\r\n\r\n").await;
    let r = client.response().await;
    assert_eq!(r.status, 400);
    client.expect_eof().await;
    assert!(backend.received().is_empty());
}

// A request body that arrives in several pieces after its head reaches the backend whole, with
// one Content-Length stating its size, and the connection carries on.
#[tokio::test]
async fn a_body_arriving_in_pieces_reaches_the_backend_whole() {
    let backend = Scripted::start(|r| Reply::Keep(ok(&r.body))).await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;
    let body = pattern(10_000);

    client
        .send(format!(
            "PUT /doc HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ))
        .await;
    for piece in body.chunks(4_000) {
        client.send(piece).await;
    }
    let r = client.response().await;
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    assert!(r.body == body, "the echoed body differs");
    let r = client.get("/after").await;
    assert_eq!(r.status, 200);

    let received = backend.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].method, "PUT");
    assert_eq!(received[0].head.all("content-length"), ["10000"]);
    assert!(received[0].body == body, "the backend's body differs");
}

// A small body still arriving when the head timeout (capped by request_timeout) passes is not
// cut off: the request goes on, streamed, and reaches the backend whole.
#[tokio::test]
async fn a_slow_body_still_reaches_the_backend_whole() {
    let backend = Scripted::start(|r| Reply::Keep(ok(&r.body))).await;
    let cfg = baton_proxy::ListenerConfig {
        // Also the time the rest of the body has to reach the backend once the request went
        // on: generous, so that a busy machine does not turn it into a 504.
        request_timeout: Duration::from_secs(3),
        ..config()
    };
    let proxy = proxy_to(backend.backend.clone(), cfg).await;
    let mut client = Client::connect_lenient(proxy.addr).await;
    let body = pattern(100);

    client
        .send("POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await;
    client.send(&body[..10]).await;
    // The request went on to the backend without the rest of its body.
    eventually("the request to reach the backend", || {
        backend.backend.in_flight() == 1
    })
    .await;
    client.send(&body[10..]).await;
    let r = client.response().await;
    assert_eq!(r.status, 200);
    assert!(r.body == body, "the echoed body differs");
    let received = backend.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].body == body, "the backend's body differs");
}

// A body still in a transfer coding other than chunked (gzip here) reaches the client with
// that coding named, chunked framing after it, and its bytes unchanged.
#[tokio::test]
async fn a_transfer_coding_besides_chunked_is_passed_on() {
    let backend = Scripted::start(|_| {
        Reply::Keep(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nGZIP\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    let r = client.get("/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.head.all("transfer-encoding").join(", "), "gzip, chunked");
    assert_eq!(r.body, b"GZIP");
}

// An HTTP/1.0 client cannot read chunked coding: a body of unknown length reaches it framed
// by the end of the connection, even when it asked to keep the connection.
#[tokio::test]
async fn http_1_0_gets_a_body_of_unknown_length_until_the_close() {
    let backend = Scripted::start(|_| {
        Reply::Keep(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client
        .send("GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let r = client.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, Framing::Close, "{:?}", r.head);
    assert_eq!(r.text(), "hello world");
    assert!(r.head.connection_has("close"), "{:?}", r.head);
}

// A client that waits for `100 Continue` before sending a small body gets it from the proxy
// (which reads the body itself), and the instance never sees the expectation.
#[tokio::test]
async fn expect_100_continue_is_answered_by_the_proxy() {
    let backend = Scripted::start(|r| Reply::Keep(ok(&r.body))).await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut client = Client::connect_lenient(proxy.addr).await;

    client
        .send("PUT /doc HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let (status, head) = client.next_head().await;
    assert_eq!(status, 100, "{head:?}");
    client.send("hello").await;
    let r = client.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));

    let received = backend.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].head.all("expect").is_empty(),
        "{:?}",
        received[0].head
    );
}
