//! HTTP/1.x as raw bytes on the wire: a buffered socket read message by message, parsed heads,
//! a client connection to the proxy, and a scripted backend that answers with the bytes a test
//! chose. For tests that must see exactly what the proxy sends and receives.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_proxy::{Backend, Health};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest wait for anything the proxy or a backend must do: generous, only a hang reaches it.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Waits for `f`, failing the test if it hangs.
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what} (nothing within {DEADLINE:?})"))
}

// ---------------------------------------------------------------------------------------------
// A buffered socket read message by message.
// ---------------------------------------------------------------------------------------------

/// A socket with a read buffer, read message by message.
pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Reads bounded by [`DEADLINE`]: the client side, where the proxy must answer. A scripted
    /// backend waits for the proxy's next request as long as it likes.
    bounded: bool,
}

impl Wire {
    /// A wire on `stream`, its reads bounded by [`DEADLINE`] if `bounded`.
    pub fn new(stream: TcpStream, bounded: bool) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
            bounded,
        }
    }

    /// Reads more into the buffer: how many bytes, 0 once the peer closed (or reset).
    pub async fn fill(&mut self) -> usize {
        self.buf.reserve(64 * 1024);
        let read = self.stream.read_buf(&mut self.buf);
        let read = if self.bounded {
            within("bytes from the proxy", read).await
        } else {
            read.await
        };
        read.unwrap_or(0)
    }

    /// The next head, its empty line included; `None` if the stream ends first.
    pub async fn head(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                return Some(self.buf.drain(..at + 4).collect());
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    /// One line, without its CRLF.
    pub async fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..at + 2).collect();
                line.truncate(at);
                return line;
            }
            assert!(self.fill().await > 0, "the stream ended inside a line");
        }
    }

    /// Exactly `n` bytes.
    pub async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let missing = n - self.buf.len();
            assert!(
                self.fill().await > 0,
                "the stream ended {missing} bytes short"
            );
        }
        self.buf.drain(..n).collect()
    }

    /// The next chunk's data; `None` after the last chunk (and trailers).
    pub async fn chunk(&mut self) -> Option<Vec<u8>> {
        let line = self.line().await;
        let line = String::from_utf8_lossy(&line).into_owned();
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .unwrap_or_else(|_| panic!("a chunk size line, not {line:?}"));
        if size == 0 {
            while !self.line().await.is_empty() {}
            return None;
        }
        let data = self.exact(size).await;
        assert_eq!(self.line().await, b"", "a chunk's data ends with CRLF");
        Some(data)
    }

    /// A chunked body, decoded (extensions and trailers dropped).
    pub async fn chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(data) = self.chunk().await {
            body.extend(data);
        }
        body
    }

    /// Everything up to the end of the stream.
    pub async fn until_close(&mut self) -> Vec<u8> {
        while self.fill().await > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// Writes all of `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }
}

/// Where `needle` first starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Heads and responses.
// ---------------------------------------------------------------------------------------------

/// A parsed head: the start line's words and the headers (names lowercased, in order).
#[derive(Debug, Clone)]
pub struct Head {
    /// The start line, as sent (lossy UTF-8).
    pub start: String,
    /// The start line's second word, as bytes: a request's target, a response's status code.
    pub second: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a head as read by [`Wire::head`] (its empty line optional).
    pub fn parse(raw: &[u8]) -> Head {
        let raw = raw.strip_suffix(b"\r\n\r\n").unwrap_or(raw);
        let mut lines = raw
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let start = lines.next().unwrap_or_default();
        let second = start
            .split(|b| *b == b' ')
            .nth(1)
            .unwrap_or_default()
            .to_vec();
        let headers = lines
            .map(|line| {
                let line = String::from_utf8_lossy(line);
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("a header line, not {line:?}"));
                (name.trim().to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        Head {
            start: String::from_utf8_lossy(start).into_owned(),
            second,
            headers,
        }
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of `name`, which must appear at most once.
    pub fn get(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "{name} appears {} times: {self:?}",
            all.len()
        );
        all.first().copied()
    }

    /// The Content-Length, which must be a number if present.
    pub fn content_length(&self) -> Option<usize> {
        self.get("content-length")
            .map(|v| v.parse().expect("a numeric content-length"))
    }

    /// Whether the last transfer coding is chunked.
    pub fn is_chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"))
    }

    /// Whether `Connection` lists `token`.
    pub fn connection_has(&self, token: &str) -> bool {
        self.all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Every header as `name: value`, sorted, leaving out `skip`.
    pub fn sorted_lines(&self, skip: &str) -> Vec<String> {
        let mut lines: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| n != skip)
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        lines.sort();
        lines
    }
}

/// How a response's body was delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204, 304: no body at all.
    None,
    /// By Content-Length.
    Length,
    /// Chunked transfer coding.
    Chunked,
    /// Until the proxy closed the connection.
    Close,
}

/// A final response as the client read it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
    pub framing: Framing,
}

impl Response {
    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// A raw client of the proxy.
// ---------------------------------------------------------------------------------------------

/// A raw client connection to the proxy; every read is bounded by [`DEADLINE`].
pub struct Client {
    pub wire: Wire,
    /// Also takes what an HTTP/1.0 or `Expect: 100-continue` request may get: an `HTTP/1.0`
    /// status line, and `100 Continue` heads ahead of a final response (skipped). Otherwise
    /// every status line must be HTTP/1.1 and every response final.
    lenient: bool,
}

impl Client {
    /// A connection to the proxy that takes only HTTP/1.1 final responses.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = within("a connection to the proxy", TcpStream::connect(addr))
            .await
            .unwrap();
        Client::new(stream)
    }

    /// A connection to the proxy that also takes HTTP/1.0 status lines and skips
    /// `100 Continue` heads.
    pub async fn connect_lenient(addr: SocketAddr) -> Client {
        Client {
            lenient: true,
            ..Client::connect(addr).await
        }
    }

    /// A client on a connection already made (say, with socket options set), taking only
    /// HTTP/1.1 final responses.
    pub fn new(stream: TcpStream) -> Client {
        Client {
            wire: Wire::new(stream, true),
            lenient: false,
        }
    }

    /// Writes `bytes` to the proxy as they are.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        within("a write to the proxy", self.wire.write(bytes.as_ref()))
            .await
            .unwrap();
    }

    /// Sends a plain `GET path` and returns the final response.
    pub async fn get(&mut self, path: &str) -> Response {
        self.send(get_request(path)).await;
        self.response().await
    }

    /// The next response head, parsed; `None` if the connection ends first.
    async fn read_head(&mut self) -> Option<Head> {
        let raw = self.wire.head().await?;
        assert!(
            std::str::from_utf8(&raw).is_ok(),
            "an ASCII head: {:?}",
            String::from_utf8_lossy(&raw)
        );
        Some(Head::parse(&raw))
    }

    /// The next response head, interim or final.
    pub async fn next_head(&mut self) -> (u16, Head) {
        let head = self
            .read_head()
            .await
            .expect("a response head before the connection ends");
        let version = if self.lenient { "HTTP/1." } else { "HTTP/1.1 " };
        assert!(head.start.starts_with(version), "a status line: {head:?}");
        let status = std::str::from_utf8(&head.second)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status code: {head:?}"));
        (status, head)
    }

    /// The next final response to a request of `method`, its body read by its framing.
    pub async fn response_to(&mut self, method: &str) -> Response {
        let (status, head) = loop {
            let (status, head) = self.next_head().await;
            if status >= 200 {
                break (status, head);
            }
            assert!(
                self.lenient && status == 100,
                "a final response, not {head:?}"
            );
        };
        let (body, framing) = if method == "HEAD" || status == 204 || status == 304 {
            (Vec::new(), Framing::None)
        } else if head.is_chunked() {
            (self.wire.chunked().await, Framing::Chunked)
        } else if let Some(length) = head.content_length() {
            (self.wire.exact(length).await, Framing::Length)
        } else {
            (self.wire.until_close().await, Framing::Close)
        };
        Response {
            status,
            head,
            body,
            framing,
        }
    }

    /// The next final response to a GET.
    pub async fn response(&mut self) -> Response {
        self.response_to("GET").await
    }

    /// Reads until the proxy ends the connection: `None` if it did so before a response head,
    /// else the head (of a 200) and whatever followed it.
    pub async fn cut_response(&mut self) -> Option<(Head, Vec<u8>)> {
        let head = self.read_head().await?;
        assert!(head.start.starts_with("HTTP/1.1 200 "), "{head:?}");
        Some((head, self.wire.until_close().await))
    }

    /// Reads until the proxy ends the connection (FIN or reset): how many bytes came first.
    pub async fn bytes_until_close(&mut self) -> usize {
        let mut total = std::mem::take(&mut self.wire.buf).len();
        loop {
            self.wire.buf.clear();
            match self.wire.fill().await {
                0 => return total,
                n => total += n,
            }
        }
    }

    /// The proxy closed the connection cleanly (FIN), with nothing left unread.
    pub async fn expect_eof(&mut self) {
        assert!(
            self.wire.buf.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.wire.buf)
        );
        let mut byte = [0u8; 1];
        let read = within(
            "the proxy to close the connection",
            self.wire.stream.read(&mut byte),
        )
        .await;
        assert!(
            matches!(read, Ok(0)),
            "the proxy closes the connection: {read:?}"
        );
    }

    /// The proxy closed the connection (FIN or reset), with nothing left unread.
    pub async fn expect_closed(&mut self) {
        let rest = self.wire.until_close().await;
        assert!(
            rest.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// `GET path` on one line, for pipelining.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

/// A 200 with a Content-Length body.
pub fn ok(body: &[u8]) -> Vec<u8> {
    let mut bytes =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Bytes that are not all the same, so a misplaced or repeated piece shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// A scripted backend: reads each request, logs it, writes the bytes the test chose.
// ---------------------------------------------------------------------------------------------

/// One request as the scripted backend received it (body decoded if it was chunked).
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// As sent, which need not be UTF-8.
    pub target: Vec<u8>,
    pub head: Head,
    pub body: Vec<u8>,
}

impl Received {
    /// The target as text; it must be UTF-8.
    pub fn target_str(&self) -> &str {
        std::str::from_utf8(&self.target).expect("a UTF-8 target")
    }
}

/// What the scripted backend does with a request.
pub enum Reply {
    /// Writes the bytes, then waits for the next request on the connection.
    Keep(Vec<u8>),
    /// Writes the bytes, then closes the connection.
    Close(Vec<u8>),
}

/// A backend speaking raw bytes, for responses a real server would not produce on demand.
pub struct Scripted {
    /// The proxy-side backend for it, already healthy.
    pub backend: Arc<Backend>,
    /// Every request received (since the last [`Scripted::take`]), in order.
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    /// A backend answering each request with `reply(request)`.
    pub async fn start(reply: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(reply);
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (reply, log) = (reply.clone(), log.clone());
                tokio::spawn(async move {
                    let mut wire = Wire::new(stream, false);
                    while let Some(request) = read_request(&mut wire).await {
                        let answer = reply(&request);
                        // Logged before the answer goes out: a client holding the response
                        // knows the request is in the log.
                        log.lock().unwrap().push(request);
                        let (bytes, close) = match answer {
                            Reply::Keep(bytes) => (bytes, false),
                            Reply::Close(bytes) => (bytes, true),
                        };
                        if wire.write(&bytes).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        let backend = Backend::new("scripted".into(), "1.0".into(), addr, 3);
        backend.set_health(Health::Healthy);
        Scripted {
            backend,
            received,
            task,
        }
    }

    /// The requests received so far (since the last [`Scripted::take`]).
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests received since the last call.
    pub fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

/// The next request on `wire`, its body read by its framing; `None` once the proxy closes.
async fn read_request(wire: &mut Wire) -> Option<Received> {
    let head = Head::parse(&wire.head().await?);
    let method = head.start.split(' ').next().unwrap_or("").to_string();
    let body = if head.is_chunked() {
        wire.chunked().await
    } else if let Some(length) = head.content_length() {
        wire.exact(length).await
    } else {
        Vec::new()
    };
    Some(Received {
        method,
        target: head.second.clone(),
        head,
        body,
    })
}
