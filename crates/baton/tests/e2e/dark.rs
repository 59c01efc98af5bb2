//! Dark launches: a release that answers differently on one route and identically (up to
//! request ids, times and instance names) on another; a release that hangs. Users only ever get
//! the stable release's answers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::harness::{Baton, THREE_WEB, text, wait_until_async};

fn config(dark: &str) -> String {
    format!("{THREE_WEB}\n[apps.web.analysis]\ninterval = \"200ms\"\n\n[apps.web.dark]\n{dark}\n")
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request to the web listener: status and body.
async fn call(
    c: &Client<HttpConnector, Full<Bytes>>,
    baton: &Baton,
    method: &str,
    path: &str,
) -> (u16, String) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", baton.web()))
        .body(Full::new(Bytes::from(if method == "POST" {
            "x=1"
        } else {
            ""
        })))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Starts `2.0.0` dark beside `1.0.0` and waits until its instance is healthy and copied to.
async fn start_dark(baton: &Baton, flags: &[&str]) {
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "2.0.0", flags);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let o = baton
        .cli_async(&["deploy", "web", "2.0.0", "--strategy", "dark"])
        .await;
    assert!(o.status.success(), "{}", text(&o));
    let healthy = wait_until_async(Duration::from_secs(30), || async {
        let s = baton.status("web");
        s.instances
            .iter()
            .any(|i| i.release == "2.0.0" && i.state == "healthy")
    })
    .await;
    assert!(
        healthy,
        "the dark instance never became healthy:\n{}",
        baton.log()
    );
}

async fn report(baton: &Baton) -> Value {
    let (status, v) = baton.api_get("/v1/apps/web/dark").await;
    assert_eq!(status, 200, "{v}");
    v
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dark_release_is_compared_route_by_route_and_users_see_only_stable() {
    let baton = Baton::start(&config("fraction = 1.0"));
    start_dark(&baton, &["--item-price", "12"]).await;
    // The split may take one tick to carry the dark target: copies start within a deadline.
    let c = client();
    let started = wait_until_async(Duration::from_secs(10), || async {
        call(&c, &baton, "GET", "/greeting").await;
        report(&baton).await["report"]["copied"].as_u64().unwrap() > 0
    })
    .await;
    assert!(started, "no copy was made:\n{}", baton.log());
    for i in 0..60 {
        let (status, body) = call(&c, &baton, "GET", &format!("/item/{i}")).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["price"], 10,
            "users get the stable release's answer: {body}"
        );
        let (status, body) = call(&c, &baton, "GET", "/greeting").await;
        assert_eq!(status, 200, "{body}");
        if i % 3 == 0 {
            assert_eq!(call(&c, &baton, "POST", "/signup").await.0, 201);
        }
    }
    let done = wait_until_async(Duration::from_secs(30), || async {
        let r = report(&baton).await;
        let routes = &r["report"]["routes"];
        routes["GET /item/:id"]["compared"].as_u64() == Some(60)
            && routes["GET /greeting"]["compared"].as_u64().unwrap_or(0) >= 60
    })
    .await;
    let r = report(&baton).await;
    assert!(done, "{r:#}");
    let rep = &r["report"];
    assert_eq!(r["copying"], true);
    assert_eq!(
        rep["skipped_method"], 20,
        "dark read: no POST is copied: {rep:#}"
    );
    let item = &rep["routes"]["GET /item/:id"];
    assert_eq!(item["differing"], 60, "{item:#}");
    assert_eq!(item["fields"]["body.price"], 60, "{item:#}");
    assert_eq!(
        item["fields"].as_object().unwrap().len(),
        1,
        "only the price: {item:#}"
    );
    let sample = &item["samples"][0];
    assert!(
        sample["production"]["body"]
            .as_str()
            .unwrap()
            .contains("\"price\":10")
    );
    assert!(
        sample["dark"]["body"]
            .as_str()
            .unwrap()
            .contains("\"price\":12")
    );
    assert_eq!(sample["fields"], serde_json::json!(["body.price"]));
    let greeting = &rep["routes"]["GET /greeting"];
    assert_eq!(
        greeting["differing"], 0,
        "identical up to noise: {greeting:#}"
    );
    for noisy in ["body.request_id", "body.served_at", "body.instance"] {
        assert!(
            greeting["noise"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == noisy),
            "{noisy} learned as noise: {greeting:#}"
        );
    }
    assert!(rep["routes"].get("POST /signup").is_none(), "{rep:#}");

    // The dark instance got only copies, each with the shadow header, and no POST; users'
    // metrics never count it and it is not in the split.
    let s = baton.status("web");
    let dark = s.instances.iter().find(|i| i.release == "2.0.0").unwrap();
    assert_eq!(dark.requests, 0, "copies are not user traffic");
    assert!(!dark.in_split);
    assert!(
        s.split.iter().all(|r| r.release == "1.0.0"),
        "{:?}",
        s.split
    );
    let (_, metrics) = call_addr(&c, &dark.address, "/metrics").await;
    let requests = metric(&metrics, "demo_requests_total{path=\"/item\"")
        + metric(&metrics, "demo_requests_total{path=\"/greeting\"");
    assert!(requests >= 120, "{metrics}");
    assert_eq!(
        metric(&metrics, "demo_shadow_requests_total"),
        requests,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "demo_requests_total{path=\"/signup\""),
        0,
        "{metrics}"
    );

    let o = baton.cli(&["dark", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("GET /item/:id") && out.contains("body.price (60)"),
        "{out}"
    );
    // An abort drains the dark release; users never saw it.
    let o = baton.cli_async(&["abort", "web", "--wait"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let s = baton.status("web");
    assert!(
        s.instances.iter().all(|i| i.release == "1.0.0"),
        "{:?}",
        s.instances
    );
}

async fn call_addr(
    c: &Client<HttpConnector, Full<Bytes>>,
    addr: &str,
    path: &str,
) -> (u16, String) {
    let req = hyper::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_dark_release_never_slows_users_and_its_copies_are_dropped_and_counted() {
    let baton = Baton::start(&config("timeout = \"1s\""));
    start_dark(&baton, &["--hang"]).await;
    let c = client();
    let started = wait_until_async(Duration::from_secs(10), || async {
        call(&c, &baton, "GET", "/greeting").await;
        report(&baton).await["report"]["copied"].as_u64().unwrap() > 0
    })
    .await;
    assert!(started, "no copy was made:\n{}", baton.log());
    // Far more copies than the queue and the copies in flight hold.
    for i in 0..600 {
        let (status, body) = call(&c, &baton, "GET", &format!("/item/{i}")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"price\":10"), "{body}");
    }
    let counted = wait_until_async(Duration::from_secs(30), || async {
        let r = report(&baton).await;
        r["report"]["dropped_queue_full"].as_u64().unwrap() > 0
            && r["report"]["dropped_failed"].as_u64().unwrap() > 0
    })
    .await;
    let r = report(&baton).await;
    assert!(counted, "{r:#}");
    assert_eq!(r["report"]["answered"], 0, "{r:#}");
    assert_eq!(r["report"]["compared"], 0, "{r:#}");
    let o = baton.cli(&["dark", "web", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dark_release_over_max_diff_rate_fails_and_no_user_saw_it() {
    let baton = Baton::start(&config("max_diff_rate = 0.05\nmin_requests = 20"));
    start_dark(&baton, &["--item-price", "12"]).await;
    let c = client();
    let failed = wait_until_async(Duration::from_secs(60), || async {
        for i in 0..10 {
            let (status, body) = call(&c, &baton, "GET", &format!("/item/{i}")).await;
            assert_eq!(status, 200);
            assert!(body.contains("\"price\":10"), "{body}");
        }
        let s = baton.status("web");
        s.deployment.is_none() && s.instances.iter().all(|i| i.release == "1.0.0")
    })
    .await;
    assert!(failed, "the dark launch was not stopped:\n{}", baton.log());
    let o = baton.cli(&["history", "web", "--json"]);
    let history: Value = serde_json::from_slice(&o.stdout).unwrap();
    let last = &history[0];
    assert_eq!(last["phase"], "failed", "{last:#}");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("analysis failed at the dark step")
            && reason.contains("compared answers differ"),
        "{reason}"
    );
    // The report stays readable after the end.
    let r = report(&baton).await;
    assert_eq!(r["copying"], false);
    assert_eq!(r["verdict"]["outcome"], "fail", "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_dark_release_goes_on_as_a_canary() {
    let baton = Baton::start(&config("fraction = 1.0"));
    start_dark(&baton, &[]).await;
    let o = baton.cli(&["promote", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    let canary = wait_until_async(Duration::from_secs(30), || async {
        let s = baton.status("web");
        s.split.iter().any(|r| r.release == "2.0.0" && r.weight > 0)
    })
    .await;
    assert!(canary, "2.0.0 never joined the split:\n{}", baton.log());
    let s = baton.status("web");
    let d = s.deployment.unwrap();
    assert_eq!((d.strategy.as_str(), d.step), ("dark", 1));
    let r = report(&baton).await;
    assert_eq!(r["copying"], false, "no copies once it serves users: {r:#}");
}

/// While the dark instance is not healthy (here: never), requests are not copied and are
/// counted as such, not as dropped copies; users are served by stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_the_dark_release_is_healthy_are_counted_as_not_copied() {
    let baton = Baton::start(&config("fraction = 1.0"));
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "2.0.0", &["--unhealthy"]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let o = baton
        .cli_async(&["deploy", "web", "2.0.0", "--strategy", "dark"])
        .await;
    assert!(o.status.success(), "{}", text(&o));
    let c = client();
    let counted = wait_until_async(Duration::from_secs(20), || async {
        let (status, body) = call(&c, &baton, "GET", "/greeting").await;
        assert_eq!(status, 200, "{body}");
        let (status, v) = baton.api_get("/v1/apps/web/dark").await;
        status == 200 && v["report"]["skipped_unready"].as_u64().unwrap_or(0) >= 20
    })
    .await;
    let r = report(&baton).await;
    assert!(counted, "{r:#}\n{}", baton.log());
    let rep = &r["report"];
    assert_eq!(rep["copied"], 0, "{rep:#}");
    assert_eq!(rep["dropped_failed"], 0, "{rep:#}");
    assert_eq!(rep["dropped_queue_full"], 0, "{rep:#}");
    let o = baton.cli(&["dark", "web"]);
    assert!(
        text(&o).contains("dark not ready "),
        "`baton dark` shows them: {}",
        text(&o)
    );
    let o = baton.cli_async(&["abort", "web", "--wait"]).await;
    assert!(o.status.success(), "{}", text(&o));
}
