//! Feature-flag evaluations per second, in one run: in process (the `FlagBook` snapshot and
//! `baton_core::flags::evaluate`, what the proxy's `X-Baton-Flags` header does per request)
//! and over OFREP on loopback HTTP/1.1 with keep-alive (what an OpenFeature SDK pays), with
//! the ratio. Run by `bench/flags.sh`; client and server share the machine's cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use baton_core::config::Config;
use baton_core::flags::{JsonContext, evaluate};
use baton_server::flags::{FlagBook, ofrep, secret_sha256};
use baton_store::FlagToken;

const CONFIG: &str = r#"
[apps.web]
listen = "127.0.0.1:1"
command = ["x"]
[apps.web.flags.new-checkout]
percent = 20
[apps.web.flags.search-v2]
match = [{ attribute = "plan", in = ["pro", "team"] }]
"#;
const TOKEN: &str = "bft_bench";
const KEYS: usize = 1000;

fn book() -> Arc<FlagBook> {
    let config = Config::parse(CONFIG, std::path::Path::new("baton.toml")).expect("valid");
    let book = FlagBook::default();
    book.set_config(config.units().iter());
    let token = FlagToken {
        id: 1,
        app: "web".into(),
        env: "production".into(),
        secret_sha256: secret_sha256(TOKEN.as_bytes()),
    };
    book.set_stored(vec![], vec![token]);
    Arc::new(book)
}

/// Evaluations per second of `new-checkout` for 1,000 keys, on one thread, for `secs`.
fn in_process(book: &FlagBook, secs: u64) -> f64 {
    let contexts: Vec<serde_json::Value> = (0..KEYS)
        .map(|i| serde_json::json!({ "targetingKey": format!("user-{i}") }))
        .collect();
    let scope = ("web".to_string(), "production".to_string());
    let (start, mut n, mut on) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(secs) {
        for c in &contexts {
            let snap = book.snapshot();
            let e = &snap.units[&scope]["new-checkout"];
            let ctx = JsonContext::new(Some(c)).expect("valid context");
            let r = evaluate("new-checkout", &e.spec, e.forced_off.as_deref(), &ctx);
            on += u64::from(r.expect("evaluates").value);
        }
        n += KEYS as u64;
    }
    assert!(on > 0);
    n as f64 / start.elapsed().as_secs_f64()
}

/// Single evaluations per second over OFREP with `conns` kept-alive connections.
async fn over_ofrep(book: Arc<FlagBook>, conns: usize, secs: u64) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, ofrep::router(book)).await });
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_max_idle_per_host(1)
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let mut i = c;
            while Instant::now() < deadline {
                let body = format!(r#"{{"context":{{"targetingKey":"user-{}"}}}}"#, i % KEYS);
                let req = hyper::Request::post(format!(
                    "http://{addr}/ofrep/v1/evaluate/flags/new-checkout"
                ))
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap();
                let resp = client.request(req).await.expect("OFREP answers");
                assert_eq!(resp.status(), 200);
                http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                i += conns;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let book = book();
    let local = in_process(&book, secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let remote = rt.block_on(over_ofrep(book, 16, secs));
    println!("| path | evaluations/s |");
    println!("|---|---|");
    println!("| in process (1 thread: snapshot + evaluate) | {local:.0} |");
    println!("| OFREP single, loopback HTTP/1.1, 16 connections | {remote:.0} |");
    println!("| ratio in process / OFREP | {:.0}x |", local / remote);
}
