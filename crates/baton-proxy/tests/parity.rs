//! Parity between the proxy's two HTTP/1.1 server sides: Baton's own (`src/h1/`: HTTP/1.1
//! requests without a body or with a small one) and hyper's (everything else, for the rest of
//! the connection). A request
//! carrying `Connection: keep-alive, x-hyper` names another header in `Connection`, which always
//! hands its connection to hyper, so each test can send the same request down either path
//! ([`Path`]).
//!
//! Responses are read by their framing (length, chunked, no body, or until the proxy closes);
//! every read is bounded by [`DEADLINE`], which only a hang reaches. No test waits for time to
//! pass or asserts on how long anything took.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use baton_proxy::{Backend, ListenerConfig, MetricsSnapshot};
use support::wire::*;
use support::*;

// ---------------------------------------------------------------------------------------------
// The two paths.
// ---------------------------------------------------------------------------------------------

/// Which HTTP/1.1 server side serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Baton's own (`src/h1/`).
    Baton,
    /// hyper's, for the rest of the connection.
    Hyper,
}

impl Path {
    const BOTH: [Path; 2] = [Path::Baton, Path::Hyper];

    /// The header line (if any) that sends a request, and its connection, down this path.
    fn line(self) -> &'static str {
        match self {
            Path::Baton => "",
            Path::Hyper => "Connection: keep-alive, x-hyper\r\n",
        }
    }

    /// A bodyless request to this path.
    fn request(self, method: &str, target: &str) -> String {
        format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\n{}\r\n",
            self.line()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

// A client pipelining behind a HEAD relies on an error answer to it having no body either.
#[tokio::test]
async fn an_error_answer_to_head_has_no_body_and_the_connection_lives_on() {
    // Starting (never checked): not eligible, so every request is a 503 of the proxy's own.
    let starting = Backend::new("starting".into(), "1.0".into(), refused_addr().await, 3);
    let proxy = proxy_to(starting, config()).await;
    for path in Path::BOTH {
        let mut client = Client::connect(proxy.addr).await;
        let pipeline = path.request("HEAD", "/") + &path.request("GET", "/after");
        client.send(pipeline).await;
        let r = client.response_to("HEAD").await;
        assert_eq!(r.status, 503, "{path:?}: {:?}", r.head);
        let text = client.response_to("GET").await;
        assert_eq!(text.status, 503, "{path:?}: {:?}", text.head);
        assert!(
            !text.body.is_empty(),
            "{path:?}: the GET gets the error text"
        );
        // The HEAD's head still states the length the text would have.
        assert_eq!(
            r.head.content_length(),
            Some(text.body.len()),
            "{path:?}: {:?}",
            r.head
        );
    }
}

// Operators rely on a shutdown freeing the backend even from a client that stopped reading.
#[tokio::test]
async fn close_now_reaches_a_connection_blocked_writing_to_a_client_that_does_not_read() {
    let size = blocked_size();
    let (baton, hyper) = tokio::join!(
        blocked_writer_is_closed(Path::Baton, size),
        blocked_writer_is_closed(Path::Hyper, size)
    );
    // Else the test proved nothing: the proxy was never blocked.
    assert!(
        baton < size,
        "Baton's path sent all {size} bytes: raise the size"
    );
    assert!(
        hyper < size,
        "hyper's path sent all {size} bytes: raise the size"
    );
}

/// A body larger than everything that can sit between the proxy and a client that does not
/// read, so that the proxy blocks writing it. The client's receive buffer is set small; the
/// proxy's send buffer grows up to the kernel's `tcp_wmem` maximum (4 MiB by default), and
/// about that much (4.0 MiB on Baton's path, up to 4.7 MiB on hyper's) reached the client in a
/// check. Twice that maximum: 8 MiB by default.
fn blocked_size() -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(0);
    2 * wmem_max.max(4 * 1024 * 1024)
}

/// Sends a request for a body of `size` bytes on `path` and never reads; shuts the listener
/// down and lets its grace period end; once the backend's in-flight count is back to 0, reads
/// what the proxy sent before it closed the connection, and returns how many bytes that was.
async fn blocked_writer_is_closed(path: Path, size: usize) -> usize {
    let big = Arc::new({
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").into_bytes();
        r.resize(r.len() + size, b'x');
        r
    });
    let backend = Scripted::start(move |_| Reply::Keep(big.to_vec())).await;
    // The grace period after "finish" is the request timeout.
    let cfg = ListenerConfig {
        request_timeout: Duration::from_secs(1),
        ..config()
    };
    let mut proxy = proxy_to(backend.backend.clone(), cfg).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let stream = within("a connection to the proxy", socket.connect(proxy.addr))
        .await
        .unwrap();
    let mut client = Client::new(stream);
    client.send(path.request("GET", "/big")).await;
    // The head is here: the proxy is writing the body (and soon blocked doing so).
    let (status, _) = client.next_head().await;
    assert_eq!(status, 200, "{path:?}");
    assert_eq!(backend.backend.in_flight(), 1, "{path:?}");
    within("the listener to return", proxy.shutdown())
        .await
        .unwrap()
        .unwrap();
    // Still not reading: only "close now" can end a writer blocked on this client.
    eventually("the in-flight count to be released", || {
        backend.backend.in_flight() == 0
    })
    .await;
    client.bytes_until_close().await
}

// Clients rely on a head over the limit being refused (431) however its writes split it.
#[tokio::test]
async fn a_head_over_the_limit_arriving_in_two_writes_is_431_on_batons_path() {
    head_over_the_limit_in_two_writes(Path::Baton).await;
}

// The same on hyper's path.
#[tokio::test]
async fn a_head_over_the_limit_arriving_in_two_writes_is_431_on_hypers_path() {
    head_over_the_limit_in_two_writes(Path::Hyper).await;
}

/// With an 8 KiB limit: a request, then a head of 10 kB in two writes (6 kB, then 4 kB, which
/// completes it): the first is served, the second is 431 and never reaches the backend.
async fn head_over_the_limit_in_two_writes(path: Path) {
    let backend = Scripted::start(|_| Reply::Keep(ok(b"served"))).await;
    let cfg = ListenerConfig {
        max_header_bytes: 8192,
        ..config()
    };
    let proxy = proxy_to(backend.backend.clone(), cfg).await;
    let mut client = Client::connect(proxy.addr).await;
    // One write, well under one read: the proxy has read the partial head behind the first
    // request by the time it answers that one, and waits for the rest. (Were it read in pieces,
    // the head would cross the limit while incomplete: 431 all the same.)
    let mut first = path.request("GET", "/first").into_bytes();
    first.extend_from_slice(
        format!("GET /big HTTP/1.1\r\nHost: x\r\n{}X-Pad-1: ", path.line()).as_bytes(),
    );
    first.resize(first.len() + 6000, b'a');
    first.extend_from_slice(b"\r\n");
    client.send(&first).await;
    let r = client.response_to("GET").await;
    assert_eq!((r.status, r.text().as_str()), (200, "served"));
    let mut second = b"X-Pad-2: ".to_vec();
    second.resize(4000, b'b');
    second.extend_from_slice(b"\r\n\r\n");
    client.send(&second).await;
    let r = client.response_to("GET").await;
    assert_eq!(r.status, 431, "{:?} {:?}", r.head, r.text());
    let received: Vec<Vec<u8>> = backend.take().into_iter().map(|r| r.target).collect();
    assert_eq!(received, [b"/first".to_vec()]);
}

// Backends rely on getting the same target (or none: refused alike) whichever path served it.
#[tokio::test]
async fn request_targets_are_treated_alike_on_both_paths() {
    let backend = Scripted::start(|_| Reply::Keep(ok(b""))).await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let targets: &[&[u8]] = &[
        b"/search?q=a%20b&tag=x&tag=y",
        b"/a%2Fb/%7Euser%zz",
        b"/q\"uote",
        b"/?q=\"x\"",
        b"/{id}",
        b"/?q={id}",
        b"/a|b",
        b"/?q=a|b",
        b"/a#frag",
        b"/?q=1#frag",
        b"/<script>",
        b"/?q=<script>alert(1)</script>",
        b"/a`b",
        b"/?q=`x`",
        "/caf\u{e9}".as_bytes(),
        b"/\xff",
    ];
    let mut rows = Vec::new();
    for &target in targets {
        let mut seen = Vec::new();
        for path in Path::BOTH {
            let mut client = Client::connect(proxy.addr).await;
            let mut request = b"GET ".to_vec();
            request.extend_from_slice(target);
            request.extend_from_slice(
                format!(" HTTP/1.1\r\nHost: x\r\n{}\r\n", path.line()).as_bytes(),
            );
            client.send(request).await;
            let status = client.response_to("GET").await.status;
            let received: Vec<Vec<u8>> = backend.take().into_iter().map(|r| r.target).collect();
            if (200..300).contains(&status) {
                assert_eq!(
                    received.len(),
                    1,
                    "{path:?} {:?}",
                    String::from_utf8_lossy(target)
                );
            } else {
                assert!(
                    received.is_empty(),
                    "{path:?} {:?}: {received:?}",
                    String::from_utf8_lossy(target)
                );
            }
            seen.push((
                status,
                received
                    .into_iter()
                    .next()
                    .map(|t| String::from_utf8_lossy(&t).into_owned()),
            ));
        }
        rows.push((String::from_utf8_lossy(target).into_owned(), seen));
    }
    let differing: Vec<_> = rows.iter().filter(|(_, seen)| seen[0] != seen[1]).collect();
    assert!(
        differing.is_empty(),
        "(target, [Baton's, hyper's]): {differing:#?}"
    );
    // Not alike by both refusing everything: an ordinary query and escapes pass unchanged.
    assert_eq!(
        rows[..2]
            .iter()
            .map(|(_, seen)| seen[0].clone())
            .collect::<Vec<_>>(),
        [
            (200, Some("/search?q=a%20b&tag=x&tag=y".to_string())),
            (200, Some("/a%2Fb/%7Euser%zz".to_string()))
        ]
    );
}

// Clients and caches rely on every response carrying a Date, even if the backend's was dropped.
#[tokio::test]
async fn a_response_naming_date_in_connection_still_carries_a_date() {
    let backend = Scripted::start(|_| {
        Reply::Keep(
            b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: date\r\n\
              Content-Length: 2\r\n\r\nok"
                .to_vec(),
        )
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    for path in Path::BOTH {
        let mut client = Client::connect(proxy.addr).await;
        client.send(path.request("GET", "/")).await;
        let r = client.response_to("GET").await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{path:?}");
        let date = r
            .head
            .get("date")
            .unwrap_or_else(|| panic!("{path:?}: no Date: {:?}", r.head));
        // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
        assert!(
            date.len() == 29 && date.as_bytes()[3] == b',' && date.ends_with(" GMT"),
            "{path:?}: {date:?}"
        );
    }
}

// Backends rely on the same forwarding headers, and hop-by-hop ones removed, on either path.
#[tokio::test]
async fn the_backend_sees_the_same_forwarded_headers_on_both_paths() {
    let backend = Scripted::start(|_| Reply::Keep(ok(b""))).await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    // Request heads without their final empty line (the path's own line goes there), and
    // bodies.
    let requests = [
        (
            "GET /p HTTP/1.1\r\nHost: h.example\r\nX-Forwarded-For: 1.1.1.1\r\n\
             x-forwarded-for: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: evil\r\nX-Request-Id: rid\r\nKeep-Alive: timeout=5\r\n\
             TE: trailers\r\nProxy-Authorization: basic x\r\nProxy-Connection: keep-alive\r\n\
             Trailer: x-t\r\nContent-Length: 0\r\n",
            "",
        ),
        // HTTP/1.0 without a Host: the client's X-Forwarded-Host is dropped, not kept.
        ("GET /p HTTP/1.0\r\nX-Forwarded-Host: evil\r\n", ""),
        (
            "GET /p?q=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Custom: a\r\nx-custom: b\r\n",
            "",
        ),
        ("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n", ""),
        ("POST /p HTTP/1.1\r\nHost: h\r\n", ""),
        (
            "POST /p HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n",
            "hello",
        ),
        ("DELETE /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n", ""),
        ("GET /p HTTP/1.1\r\nHost: \r\nX-Forwarded-For:\r\n", ""),
        (
            "GET /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n",
            "",
        ),
    ];
    let mut differing = Vec::new();
    for (head, body) in requests {
        let mut seen = Vec::new();
        for path in Path::BOTH {
            // Lenient: hyper's path answers an HTTP/1.0 request with an HTTP/1.0 status line.
            let mut client = Client::connect_lenient(proxy.addr).await;
            client
                .send(format!("{head}{}\r\n{body}", path.line()))
                .await;
            let method = head.split(' ').next().unwrap();
            let status = client.response_to(method).await.status;
            let received = backend.take();
            assert_eq!((status, received.len()), (200, 1), "{path:?} {head:?}");
            let r = &received[0];
            let lines: Vec<String> = r
                .head
                .sorted_lines("")
                .into_iter()
                .map(|line| match line.strip_prefix("x-request-id: ") {
                    // A generated id: its shape, not its value.
                    Some(id) if id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()) => {
                        "x-request-id: <generated>".to_string()
                    }
                    _ => line,
                })
                .collect();
            seen.push((r.head.start.clone(), lines, r.body.clone()));
        }
        if seen[0] != seen[1] {
            differing.push(format!(
                "{head:?}\n  Baton: {:?}\n  hyper: {:?}",
                seen[0], seen[1]
            ));
        }
        // And what both must do, besides agreeing.
        for (path, (_, lines, _)) in Path::BOTH.iter().zip(&seen) {
            let hop_by_hop = ["connection:", "keep-alive:", "te:", "trailer:", "proxy-"];
            assert!(
                !lines
                    .iter()
                    .any(|l| hop_by_hop.iter().any(|h| l.starts_with(h))),
                "{path:?}: hop-by-hop headers passed on: {lines:?}"
            );
        }
    }
    assert!(differing.is_empty(), "{}", differing.join("\n"));
}

/// A difference between the paths' answers that is intended, stated rather than skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intended {
    Same,
    /// Baton's path keeps the backend's `Content-Length` on a bodiless response (RFC 9110 8.6
    /// allows it on a 304); hyper drops it.
    KeepsLength(&'static str),
    /// A status without a known reason phrase: Baton's path writes an empty one, hyper writes
    /// `<none>`.
    EmptyReason,
}

// Clients rely on the same status line, headers and body on either path (two stated exceptions).
#[tokio::test]
async fn the_client_sees_the_same_response_on_both_paths() {
    use Intended::*;
    let responses: Vec<(&str, &'static [u8], Intended)> = vec![
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\n",
            Same,
        ),
        (
            "GET",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
            KeepsLength("7"),
        ),
        (
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n",
            Same,
        ),
        (
            "HEAD",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Same,
        ),
        ("HEAD", b"HTTP/1.1 200 OK\r\n\r\n", Same),
        (
            "GET",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            Same,
        ),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nConnection: x-secret, close\r\nX-Secret: s\r\n\
              Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\n\
              Trailer: x-t\r\nContent-Length: 2\r\n\r\nok",
            Same,
        ),
        (
            "GET",
            b"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\n\r\nok",
            Same,
        ),
        (
            "GET",
            b"HTTP/1.1 599 Whatever\r\nContent-Length: 2\r\n\r\nok",
            EmptyReason,
        ),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
            Same,
        ),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            Same,
        ),
        (
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            Same,
        ),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok",
            Same,
        ),
    ];
    let replies: Vec<&'static [u8]> = responses.iter().map(|(_, r, _)| *r).collect();
    // The case's index is the request's target.
    let backend = Scripted::start(move |r| {
        let i: usize = std::str::from_utf8(&r.target[1..])
            .unwrap()
            .parse()
            .unwrap();
        Reply::Keep(replies[i].to_vec())
    })
    .await;
    let proxy = proxy_to(backend.backend.clone(), config()).await;
    let mut differing = Vec::new();
    for (i, (method, response, intended)) in responses.iter().enumerate() {
        let mut seen = Vec::new();
        for path in Path::BOTH {
            let mut client = Client::connect(proxy.addr).await;
            client.send(path.request(method, &format!("/{i}"))).await;
            let r = client.response_to(method).await;
            seen.push((r.head.start.clone(), r.head.sorted_lines("date"), r.text()));
        }
        let [baton, hyper] = [seen[0].clone(), seen[1].clone()];
        let mut expected = hyper.clone();
        match *intended {
            Same => {}
            KeepsLength(length) => {
                expected.1.push(format!("content-length: {length}"));
                expected.1.sort();
            }
            EmptyReason => {
                let code = &hyper.0["HTTP/1.1 ".len()..][..3];
                assert_eq!(hyper.0, format!("HTTP/1.1 {code} <none>"));
                expected.0 = format!("HTTP/1.1 {code} ");
            }
        }
        if baton != expected {
            differing.push(format!(
                "{method} {:?} ({intended:?})\n  Baton: {baton:?}\n  hyper: {hyper:?}",
                String::from_utf8_lossy(response)
            ));
        }
    }
    assert!(differing.is_empty(), "{}", differing.join("\n"));
}

// WebSocket clients rely on upgrading a connection already used, first frame right behind.
#[tokio::test]
async fn an_upgrade_after_requests_on_the_same_connection_tunnels() {
    let b = TestBackend::start("a").await;
    let proxy = proxy_to(b.backend("1.0"), config()).await;
    let mut client = Client::connect(proxy.addr).await;
    let mut pipeline = Path::Baton.request("GET", "/") + &Path::Baton.request("GET", "/");
    pipeline.push_str(
        "GET /up HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nping",
    );
    client.send(pipeline).await;
    for n in 0..2 {
        let r = client.response_to("GET").await;
        assert_eq!((r.status, r.text().as_str()), (200, "a"), "request {n}");
    }
    let (status, head) = client.next_head().await;
    assert_eq!(status, 101, "{head:?}");
    assert_eq!(client.wire.exact(4).await, b"ping");
    client.send("pong").await;
    assert_eq!(client.wire.exact(4).await, b"pong");
    assert_eq!(b.hits.load(SeqCst), 3);
}

// Operators rely on a shutdown finishing a streaming response, then closing its connection.
#[tokio::test]
async fn finish_lets_a_streaming_response_complete_then_closes() {
    for path in Path::BOTH {
        let b = TestBackend::start("a").await;
        let backend = b.backend("1.0");
        // A grace period no test run reaches: only "finish" can close these connections.
        let cfg = ListenerConfig {
            request_timeout: Duration::from_secs(600),
            ..config()
        };
        let mut proxy = proxy_to(backend.clone(), cfg).await;
        let mut client = Client::connect(proxy.addr).await;
        let mut idle = Client::connect(proxy.addr).await;
        client.send(path.request("GET", "/stream")).await;
        let (status, head) = client.next_head().await;
        assert_eq!(status, 200, "{path:?}: {head:?}");
        assert!(head.is_chunked(), "{path:?}: {head:?}");
        assert_eq!(
            client.wire.chunk().await.as_deref(),
            Some(&b"first "[..]),
            "{path:?}"
        );
        let serving = proxy.shutdown();
        // The idle connection closes on "finish": the streaming one has been told too.
        idle.expect_closed().await;
        b.gate.add_permits(1);
        assert_eq!(
            client.wire.chunk().await.as_deref(),
            Some(&b"second"[..]),
            "{path:?}"
        );
        assert_eq!(client.wire.chunk().await, None, "{path:?}: the last chunk");
        client.expect_closed().await;
        within("the listener to return", serving)
            .await
            .unwrap()
            .unwrap();
        eventually("the in-flight count to be released", || {
            backend.in_flight() == 0
        })
        .await;
    }
}

// Release analysis relies on requests, statuses and timeouts counted alike on either path.
#[tokio::test]
async fn metrics_count_alike_on_both_paths() {
    let (baton, hyper) = tokio::join!(metrics_after(Path::Baton), metrics_after(Path::Hyper));
    let counts = |m: &MetricsSnapshot| (m.requests, m.status, m.timeouts, m.samples());
    assert_eq!(counts(&baton), counts(&hyper));
    assert_eq!(counts(&baton), (3, [0, 2, 0, 0, 1], 1, 3));
}

/// The backend's metrics after a 200, a HEAD and a 504 (request timeout) on `path`.
async fn metrics_after(path: Path) -> MetricsSnapshot {
    let b = TestBackend::start("a").await;
    let backend = b.backend("1.0");
    let cfg = ListenerConfig {
        request_timeout: Duration::from_secs(1),
        ..config()
    };
    let proxy = proxy_to(backend.clone(), cfg).await;
    let mut client = Client::connect(proxy.addr).await;
    let pipeline =
        path.request("GET", "/") + &path.request("HEAD", "/") + &path.request("GET", "/hang");
    client.send(pipeline).await;
    let r = client.response_to("GET").await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"), "{path:?}");
    assert_eq!(client.response_to("HEAD").await.status, 200, "{path:?}");
    assert_eq!(client.response_to("GET").await.status, 504, "{path:?}");
    eventually("the requests to leave the in-flight count", || {
        backend.in_flight() == 0
    })
    .await;
    backend.metrics()
}
