//! Circuit breakers: a route whose instances start failing gets its breaker opened within one
//! window, the fallback is served, other routes are untouched, and it closes after recovery;
//! each transition is an event and a webhook with its figures, `baton breakers` shows it, and
//! the breaker's flag is forced off while it is not closed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::harness::{Baton, THREE_WEB, text, wait_until, wait_until_async};
use crate::webhooks::receiver;

/// The breaker under test: 10 requests, half of them errors, in a 2 s window open it.
const BREAKER: &str = r#"
[[apps.web.breakers]]
name = "whoami"
path = "/whoami"
window = "2s"
min_requests = 10
max_error_rate = 0.5
cooldown = "1s"
probes = 3
flag = "whoami-live"

[apps.web.breakers.fallback]
status = 503
body = '{"whoami":"later"}'
retry_after = "5s"

[apps.web.flags.whoami-live]
percent = 100
"#;

type Http = Client<HttpConnector, Empty<Bytes>>;

/// GETs `path`: the status, the `Retry-After` and the body.
async fn get(
    client: &Http,
    addr: std::net::SocketAddr,
    path: &str,
) -> (u16, Option<String>, String) {
    let resp = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, retry, String::from_utf8_lossy(&body).into_owned())
}

/// Why the breaker's flag is forced off now (none: it evaluates by its rules).
async fn forced_off(baton: &Baton) -> Option<String> {
    let (code, view) = baton.api_get("/v1/apps/web/flags").await;
    assert_eq!(code, 200, "{view}");
    let flag = view
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "whoami-live")
        .unwrap_or_else(|| panic!("no flag whoami-live: {view}"));
    flag["forced_off"].as_str().map(String::from)
}

async fn state(baton: &Baton) -> String {
    let (code, view) = baton.api_get("/v1/apps/web/breakers").await;
    assert_eq!(code, 200, "{view}");
    view["breakers"][0]["state"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_route_opens_its_breaker_serves_the_fallback_and_closes_after_recovery() {
    let (port, hooks) = receiver().await;
    let config = format!(
        "[[notify]]\nwebhook = \"http://127.0.0.1:{port}/hooks\"\n{}{BREAKER}",
        THREE_WEB.replace(
            "env = { GREETING = \"hello\" }",
            "env = { GREETING = \"hello\", BATON_DEMO_FAULT_FILE = \"@DIR@/fault\" }"
        )
    );
    let baton = Baton::start(&config);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let web = baton.web();

    for _ in 0..20 {
        assert_eq!(get(&client, web, "/whoami").await.0, 200);
    }
    assert_eq!(state(&baton).await, "closed");
    assert_eq!(forced_off(&baton).await, None);

    // The route starts failing on every instance.
    std::fs::write(baton.dir.path().join("fault"), "/whoami").unwrap();
    let mut errors = 0;
    let fallback = loop {
        let (status, retry, body) = get(&client, web, "/whoami?x=1").await;
        if status == 500 {
            errors += 1;
            assert!(errors <= 21, "still not open after {errors} errors");
            continue;
        }
        break (status, retry, body);
    };
    // Within one window: at most the 20 good requests of the window and one more error than
    // them, at least `min_requests`.
    assert!((10..=21).contains(&errors), "opened after {errors} errors");
    assert_eq!(
        fallback,
        (
            503,
            Some("5".to_string()),
            r#"{"whoami":"later"}"#.to_string()
        )
    );
    assert_eq!(state(&baton).await, "open");
    // Its flag evaluates off while it is open (the transition reaches the flags just after).
    let off = wait_until_async(Duration::from_secs(10), || async {
        forced_off(&baton).await.is_some()
    })
    .await;
    assert!(off, "flag whoami-live not forced off: {}", baton.log());
    let reason = forced_off(&baton).await.unwrap();
    assert!(reason.starts_with("breaker whoami"), "{reason}");
    // Other routes are untouched.
    for _ in 0..20 {
        let (status, _, body) = get(&client, web, "/").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("1.0.0"), "{body}");
    }
    let o = baton.cli(&["breakers", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("whoami") && out.contains("open") && out.contains("whoami-live"),
        "{out}"
    );
    let o = baton.cli(&["breakers", "web", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let b = &json["breakers"][0];
    assert_eq!(
        (b["state"].as_str(), b["flag"].as_str()),
        (Some("open"), Some("whoami-live"))
    );
    assert!(b["last"]["error_rate"].as_f64().unwrap() > 0.5, "{json}");

    // Recovery: after the cooldown, the probes pass and the breaker closes.
    std::fs::remove_file(baton.dir.path().join("fault")).unwrap();
    let closed = wait_until_async(Duration::from_secs(20), || async {
        get(&client, web, "/whoami").await;
        state(&baton).await == "closed"
    })
    .await;
    assert!(closed, "breaker did not close: {}", baton.log());
    let on = wait_until_async(Duration::from_secs(10), || async {
        forced_off(&baton).await.is_none()
    })
    .await;
    assert!(
        on,
        "flag whoami-live still forced off after the breaker closed"
    );
    for _ in 0..10 {
        assert_eq!(get(&client, web, "/whoami").await.0, 200);
    }

    // Every transition is an event and a webhook, with its figures.
    let kinds = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e["kind"].as_str().filter(|k| k.starts_with("breaker_")))
            .map(String::from)
            .collect()
    };
    let want = ["breaker_opened", "breaker_half_open", "breaker_closed"];
    let delivered = wait_until(Duration::from_secs(10), || {
        kinds(&hooks.lock().unwrap()) == want
    });
    let got = hooks.lock().unwrap().clone();
    assert!(delivered, "webhooks: {:?}", kinds(&got));
    let opened = got.iter().find(|e| e["kind"] == "breaker_opened").unwrap();
    let message = opened["message"].as_str().unwrap();
    assert!(
        message.starts_with("breaker whoami: closed -> open: error rate")
            && message.contains("requests=")
            && message.ends_with("flag whoami-live"),
        "{message}"
    );
    assert_eq!(opened["app"], "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_keeps_failing_is_ejected_but_never_more_than_the_max_percent() {
    let config = format!(
        "{}\n[apps.web.outlier]\nconsecutive_errors = 3\nbase_ejection = \"60s\"\nmax_ejection = \"120s\"\nmax_ejection_percent = 50\n",
        THREE_WEB.replace(
            "env = { GREETING = \"hello\" }",
            "env = { GREETING = \"hello\", BATON_DEMO_FAULT_FILE = \"@DIR@/fault\" }"
        )
    );
    let baton = Baton::start(&config);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let web = baton.web();
    let ids: Vec<String> = baton
        .status("web")
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(ids.len(), 3);

    // Two of the three instances fail every request; 50 % of 3 lets one be ejected.
    std::fs::write(
        baton.dir.path().join("fault"),
        format!("/whoami {}\n/whoami {}\n", ids[0], ids[1]),
    )
    .unwrap();
    let ejected = |v: &serde_json::Value| -> Vec<String> {
        v["ejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["instance"].as_str().unwrap().to_string())
            .collect()
    };
    let one = wait_until_async(Duration::from_secs(20), || async {
        for _ in 0..20 {
            get(&client, web, "/whoami").await;
        }
        ejected(&baton.api_get("/v1/apps/web/breakers").await.1).len() == 1
    })
    .await;
    assert!(one, "no instance ejected: {}", baton.log());
    let out = ejected(&baton.api_get("/v1/apps/web/breakers").await.1);
    let gone = &out[0];
    assert!(
        gone == &ids[0] || gone == &ids[1],
        "ejected a healthy one: {gone}"
    );
    let still = if gone == &ids[0] { &ids[1] } else { &ids[0] };

    // The ejected instance gets nothing; the other failing one still serves (and fails).
    let mut from_still = 0;
    for _ in 0..90 {
        let (status, _, body) = get(&client, web, "/whoami").await;
        assert!(
            !body.contains(gone.as_str()),
            "the ejected instance answered: {body}"
        );
        if status == 500 && body.contains(still.as_str()) {
            from_still += 1;
        }
    }
    assert!(from_still > 0, "the second failing instance got no request");
    assert_eq!(
        ejected(&baton.api_get("/v1/apps/web/breakers").await.1),
        vec![gone.clone()]
    );
    let o = baton.cli(&["breakers", "web"]);
    assert!(
        text(&o).contains(&format!("ejected {gone}")),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_puts_a_breaker_in_force_and_an_unchanged_one_keeps_its_state() {
    let config = THREE_WEB.replace(
        "env = { GREETING = \"hello\" }",
        "env = { GREETING = \"hello\", BATON_DEMO_FAULT_FILE = \"@DIR@/fault\" }",
    );
    let baton = Baton::start(&config);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let web = baton.web();
    std::fs::write(baton.dir.path().join("fault"), "/whoami").unwrap();
    for _ in 0..5 {
        assert_eq!(get(&client, web, "/whoami").await.0, 500, "no breaker yet");
    }

    // One error opens this one; its cooldown outlasts the test.
    let breaker = "[[apps.web.breakers]]\nname = \"whoami\"\npath = \"/whoami\"\nmin_requests = 1\nmax_error_rate = 0.0\ncooldown = \"1h\"\n";
    let toml = std::fs::read_to_string(&baton.config).unwrap();
    std::fs::write(&baton.config, format!("{toml}\n{breaker}")).unwrap();
    let o = baton.cli(&["reload"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("breakers"), "{}", text(&o));
    assert_eq!(get(&client, web, "/whoami").await.0, 500);
    let (status, _, body) = get(&client, web, "/whoami").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "circuit breaker whoami is open\n")
    );

    // A reload that leaves the breaker as it is keeps it open.
    let toml = std::fs::read_to_string(&baton.config).unwrap();
    std::fs::write(
        &baton.config,
        toml.replace("instances = 3", "instances = 3\n# same"),
    )
    .unwrap();
    let o = baton.cli(&["reload"]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(baton.dir.path().join("fault")).unwrap();
    assert_eq!(get(&client, web, "/whoami").await.0, 503, "still open");
    assert_eq!(get(&client, web, "/").await.0, 200);
}

/// A breaker on an app metric: the demo's in-flight gauge (summed over 3 instances, each
/// counting the scrape itself) goes over 5 while slow requests pile up; the breaker opens,
/// answers its route with the fallback and holds its flag off; once they finish and the
/// cooldown is over, it closes. Its route's own errors never move it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_on_an_app_metric_opens_while_it_is_out_of_range() {
    let (port, hooks) = receiver().await;
    let config = format!(
        "[[notify]]\nwebhook = \"http://127.0.0.1:{port}/hooks\"\n{THREE_WEB}{}",
        r#"
[[apps.web.breakers]]
name = "saturated"
path = "/whoami"
metric = { name = "demo_requests_in_flight", kind = "gauge", max = 5 }
cooldown = "1s"
flag = "whoami-live"

[apps.web.breakers.fallback]
status = 503
body = "busy"

[apps.web.flags.whoami-live]
percent = 100
"#
    );
    let baton = Baton::start(&config);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let web = baton.web();
    // In range (3 instances, 1 each: the scrape): closed through several readings.
    for _ in 0..10 {
        assert_eq!(get(&client, web, "/whoami").await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(state(&baton).await, "closed");

    // 12 slow requests in flight: over 5 within a reading or two.
    let slow: Vec<_> = (0..12)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client, web, "/slow?ms=6000").await.0 })
        })
        .collect();
    let opened = wait_until_async(Duration::from_secs(10), || async {
        state(&baton).await == "open"
    })
    .await;
    assert!(opened, "{}", baton.log());
    let (status, _, body) = get(&client, web, "/whoami").await;
    assert_eq!((status, body.as_str()), (503, "busy"));
    assert_eq!(
        get(&client, web, "/").await.0,
        200,
        "other routes untouched"
    );
    let why = forced_off(&baton).await.expect("the flag is held off");
    assert!(
        why.contains("metric demo_requests_in_flight = ") && why.contains("> max 5"),
        "{why}"
    );
    let o = baton.cli(&["breakers", "web"]);
    assert!(
        text(&o).contains("/whoami metric demo_requests_in_flight"),
        "{}",
        text(&o)
    );

    // The slow requests end (they were sent before it opened): back in range, it closes.
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
    let closed = wait_until_async(Duration::from_secs(10), || async {
        state(&baton).await == "closed"
    })
    .await;
    assert!(closed, "{}", baton.log());
    assert_eq!(get(&client, web, "/whoami").await.0, 200);
    assert_eq!(forced_off(&baton).await, None);
    let delivered = wait_until(Duration::from_secs(10), || {
        let got = hooks.lock().unwrap();
        let kinds: Vec<_> = got
            .iter()
            .filter_map(|e| e["kind"].as_str().filter(|k| k.starts_with("breaker_")))
            .collect();
        kinds == ["breaker_opened", "breaker_closed"]
    });
    assert!(delivered, "{:?}", hooks.lock().unwrap());
}
