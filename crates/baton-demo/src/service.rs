//! The demo HTTP service: routes, the accept loop and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::ServiceOptions;
use crate::metrics::Metrics;

/// The body type of every response: fixed bytes or, for `/echo`, the request streaming back.
type Body = BoxBody<Bytes, hyper::Error>;

/// Longest `/slow` delay accepted, so a typo cannot pin a connection for days.
const MAX_SLOW: Duration = Duration::from_secs(600);

/// Per-service state shared by every connection.
struct State {
    opts: ServiceOptions,
    metrics: Metrics,
    // Rendered once: `GET /` is the hot path of every benchmark.
    version_json: Bytes,
    error_json: Bytes,
    /// Signups are also stored in SQLite once the expand migration created the table.
    signups: Option<crate::db::Signups>,
    /// `BATON_DEMO_FAULT_FILE`: while this file exists, requests under a path prefix it holds
    /// (one a line, optionally followed by an instance id: only that instance) answer 500:
    /// a route that starts failing, and recovers when the file is removed.
    fault_file: Option<std::path::PathBuf>,
}

impl State {
    fn new(opts: ServiceOptions) -> Self {
        let pid = std::process::id();
        let version_json = serde_json::json!({
            "version": opts.demo.version, "instance": opts.instance, "pid": pid,
        });
        let error_json = serde_json::json!({
            "version": opts.demo.version, "instance": opts.instance, "pid": pid,
            "error": "injected",
        });
        State {
            opts,
            metrics: Metrics::default(),
            version_json: Bytes::from(version_json.to_string()),
            error_json: Bytes::from(error_json.to_string()),
            signups: crate::db::Signups::open(),
            fault_file: std::env::var_os("BATON_DEMO_FAULT_FILE")
                .filter(|f| !f.is_empty())
                .map(Into::into),
        }
    }
}

/// Serves the demo routes on `listener` until `shutdown` completes, then drains.
///
/// When `shutdown` resolves the listener is closed at once (new connections are refused),
/// idle keep-alive connections are closed, and the call returns once every in-flight request
/// has been answered. Connections speak HTTP/1.1 with keep-alive or HTTP/2 with prior
/// knowledge (h2c), detected per connection.
pub async fn serve(
    listener: TcpListener,
    opts: ServiceOptions,
    shutdown: impl Future<Output = ()>,
) {
    let state = Arc::new(State::new(opts));
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let svc = service_fn(move |req| handle(Arc::clone(&state), req));
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        // A client that goes away mid-request is its own business.
                        let _ = conn.await;
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let _in_flight = state.metrics.begin();
    if faulty(&state, req.uri().path()) {
        state.metrics.record("fault", 500);
        return Ok(json(
            StatusCode::INTERNAL_SERVER_ERROR,
            state.error_json.clone(),
        ));
    }
    if req.headers().contains_key("x-baton-shadow") {
        state.metrics.shadow();
    }
    if state.opts.demo.hang && !matches!(req.uri().path(), "/health" | "/metrics") {
        tokio::time::sleep(MAX_SLOW).await;
    }
    let (route, resp) = route(&state, req).await;
    state.metrics.record(route, resp.status().as_u16());
    Ok(resp)
}

/// Whether `path` is under a prefix of the fault file (for this instance), if it exists now.
fn faulty(state: &State, path: &str) -> bool {
    let Some(file) = &state.fault_file else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    path != "/health"
        && text.lines().any(|line| {
            let mut words = line.split_whitespace();
            let prefix = words.next().unwrap_or("");
            let ours = words.next().is_none_or(|i| i == state.opts.instance);
            !prefix.is_empty() && ours && path.starts_with(prefix)
        })
}

/// Answers one request; returns the route label used in metrics with the response.
async fn route(state: &State, req: Request<Incoming>) -> (&'static str, Response<Body>) {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => ("/", root(state).await),
        (&Method::GET, "/health") => ("/health", health(state)),
        (&Method::GET, "/slow") => ("/slow", slow(state, req.uri().query()).await),
        (&Method::GET, "/events") => ("/events", events(state, req.uri().query())),
        (&Method::GET, "/metrics") => ("/metrics", metrics(state)),
        (&Method::POST, "/signup") => ("/signup", signup(state, req).await),
        (&Method::POST, "/echo") => ("/echo", echo(req)),
        (&Method::GET, "/headers") => ("/headers", headers(&req)),
        (&Method::GET, "/whoami") => ("/whoami", whoami(state, req.uri().query())),
        (&Method::GET, "/checkout") => ("/checkout", checkout(state, &req)),
        (&Method::GET, "/greeting") => (
            "/greeting",
            answer(state, serde_json::json!({"greeting": "hello"})),
        ),
        (&Method::GET, path) if path.starts_with("/item/") => {
            let id = path["/item/".len()..].to_string();
            let price = state.opts.demo.item_price;
            (
                "/item",
                answer(state, serde_json::json!({"id": id, "price": price})),
            )
        }
        _ => ("other", text(StatusCode::NOT_FOUND, "not found\n")),
    }
}

async fn root(state: &State) -> Response<Body> {
    let demo = &state.opts.demo;
    if demo.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(demo.latency_ms)).await;
    }
    if demo.error_rate > 0.0 && fastrand::f64() < demo.error_rate {
        return json(StatusCode::INTERNAL_SERVER_ERROR, state.error_json.clone());
    }
    json(StatusCode::OK, state.version_json.clone())
}

/// `fields` plus what differs from answer to answer and instance to instance (a request id,
/// the time, the instance name): the noise a dark launch's comparison must learn to ignore.
fn answer(state: &State, mut fields: serde_json::Value) -> Response<Body> {
    fields["request_id"] = format!("{:016x}", fastrand::u64(..)).into();
    fields["served_at"] = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        .into();
    fields["instance"] = state.opts.instance.clone().into();
    json(StatusCode::OK, Bytes::from(fields.to_string()))
}

/// The checkout page, new or classic by the `new-checkout` feature flag as Baton's proxy
/// evaluated it for this request (`X-Baton-Flags: new-checkout=on; ...`): an app that reads
/// its flags from the header, with no SDK.
fn checkout(state: &State, req: &Request<Incoming>) -> Response<Body> {
    let on = req
        .headers()
        .get_all("x-baton-flags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|f| f.trim() == "new-checkout=on");
    let body = serde_json::json!({
        "checkout": if on { "new" } else { "classic" },
        "version": state.opts.demo.version,
        "instance": state.opts.instance,
    });
    json(StatusCode::OK, Bytes::from(body.to_string()))
}

/// What this instance runs with: version, working directory (inside the stored artifact, so
/// it names the digest) and the environment variables asked for with `?env=A,B`. It lets tests
/// check that environments run the same artifact with their own config.
fn whoami(state: &State, query: Option<&str>) -> Response<Body> {
    let names = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("env=")))
        .map(|v| v.split(',').filter(|n| !n.is_empty()).collect::<Vec<_>>())
        .unwrap_or_default();
    let env: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                std::env::var(n)
                    .map(serde_json::Value::String)
                    .unwrap_or(serde_json::Value::Null),
            )
        })
        .collect();
    let body = serde_json::json!({
        "version": state.opts.demo.version,
        "instance": state.opts.instance,
        "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "env": env,
    });
    json(StatusCode::OK, Bytes::from(body.to_string()))
}

fn health(state: &State) -> Response<Body> {
    if state.opts.demo.unhealthy {
        text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
    } else {
        text(StatusCode::OK, "ok")
    }
}

async fn slow(state: &State, query: Option<&str>) -> Response<Body> {
    let ms = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .map(str::parse::<u64>);
    let delay = match ms {
        Some(Ok(ms)) if Duration::from_millis(ms) <= MAX_SLOW => Duration::from_millis(ms),
        _ => {
            let msg = format!(
                "usage: GET /slow?ms=N with N in 0..={}\n",
                MAX_SLOW.as_millis()
            );
            return text(StatusCode::BAD_REQUEST, msg);
        }
    };
    tokio::time::sleep(delay).await;
    json(StatusCode::OK, state.version_json.clone())
}

/// Most events one `/events` answer sends.
const MAX_EVENTS: u64 = 10_000;

/// `GET /events?n=N&ms=M`: `text/event-stream`, N server-sent events, the first at once and
/// then one every M ms: an answer that pauses mid-body, as a live feed does.
fn events(state: &State, query: Option<&str>) -> Response<Body> {
    let param = |name: &str| {
        query
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .map(str::parse::<u64>)
    };
    let (n, every) = match (param("n"), param("ms")) {
        (Some(Ok(n)), Some(Ok(ms)))
            if n <= MAX_EVENTS && Duration::from_millis(n.saturating_mul(ms)) <= MAX_SLOW =>
        {
            (n, Duration::from_millis(ms))
        }
        _ => {
            let msg = format!(
                "usage: GET /events?n=N&ms=M with N in 0..={MAX_EVENTS} and N x M at most {} ms\n",
                MAX_SLOW.as_millis()
            );
            return text(StatusCode::BAD_REQUEST, msg);
        }
    };
    let stream = Events {
        sent: 0,
        n,
        every,
        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        data: format!("{} {}", state.opts.demo.version, state.opts.instance),
    };
    let mut resp = Response::new(stream.map_err(|never| match never {}).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// The body of `/events`: `id: K` and `data: VERSION INSTANCE` per event.
struct Events {
    sent: u64,
    n: u64,
    every: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    data: String,
}

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if self.sent == self.n {
            return std::task::Poll::Ready(None);
        }
        if self.sent > 0 {
            std::task::ready!(self.sleep.as_mut().poll(cx));
        }
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        self.sent += 1;
        let event = format!("id: {}\ndata: {}\n\n", self.sent, self.data);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(event)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.n
    }
}

fn metrics(state: &State) -> Response<Body> {
    let mut resp = text(StatusCode::OK, state.metrics.render());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn signup(state: &State, req: Request<Incoming>) -> Response<Body> {
    // Read the body so the keep-alive connection stays usable for the next request.
    if req.into_body().collect().await.is_err() {
        return text(StatusCode::BAD_REQUEST, "could not read the request body\n");
    }
    state.metrics.signup();
    if let Some(db) = &state.signups {
        db.record();
    }
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::CREATED;
    resp
}

fn echo(req: Request<Incoming>) -> Response<Body> {
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let mut resp = Response::new(req.into_body().boxed());
    if let Some(ct) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

/// The request's headers as it got them, one `name: value` line each (what a proxy added).
fn headers(req: &Request<Incoming>) -> Response<Body> {
    let mut out = String::new();
    for (name, value) in req.headers() {
        out.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text(StatusCode::OK, out)
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    with_type(status, body, "application/json")
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, body.into(), "text/plain; charset=utf-8")
}

fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}
