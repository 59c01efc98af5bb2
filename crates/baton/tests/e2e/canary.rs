//! Canary releases under load: a healthy one walks every step, a bad one is caught and rolled
//! back by the analysis, operators can pause, resume, promote and abort.

use std::time::Duration;

use baton_demo::load::{Load, LoadConfig, LoadReport};

use crate::harness::{Baton, THREE_WEB, text, wait_until};

/// Three instances, a quick canary: 5 % -> 50 % -> 100 %, judged every 250 ms.
fn canary_config(steps: &str, analysis: &str) -> String {
    format!(
        "{THREE_WEB}\n[apps.web.canary]\nsteps = {steps}\n\n[apps.web.analysis]\ninterval = \"250ms\"\n{analysis}\n"
    )
}

const QUICK: &str =
    r#"[ { weight = 5, pause = "2s" }, { weight = 50, pause = "2s" }, { weight = 100 } ]"#;

/// About 200 requests per second over keep-alive connections.
fn load_200(baton: &Baton) -> Load {
    Load::start(LoadConfig {
        keepalive_workers: 4,
        fresh_conn_workers: 0,
        rate_per_worker: Some(50.0),
        max_duration: Duration::from_secs(300),
        max_requests: 500_000,
        request_timeout: Duration::from_secs(10),
        ..LoadConfig::new(baton.web())
    })
}

fn versions(r: &LoadReport) -> Vec<String> {
    r.stats.by_version.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_walks_every_step_without_a_failed_request() {
    let baton = Baton::start(&canary_config(
        QUICK,
        "min_requests = 50\nmax_error_rate = 0.02",
    ));
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    // Traffic before the canary must not count in its first window.
    let before = Load::start(LoadConfig {
        keepalive_workers: 4,
        max_requests: 3000,
        ..LoadConfig::new(baton.web())
    })
    .wait()
    .await;
    assert_eq!(before.stats.ok, 3000);
    let l = load_200(&baton);
    baton
        .deploy_ok("web", "1.1.0", &["--strategy", "canary"])
        .await;
    let report = l.stop().await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    assert_eq!(versions(&report), vec!["1.0.0", "1.1.0"]);
    let s = baton.status("web");
    assert_eq!(s.release.as_deref(), Some("1.1.0"));
    assert_eq!((s.split.len(), s.split[0].weight), (1, 100), "{s:?}");
    assert_eq!(
        s.instances
            .iter()
            .filter(|i| i.release == "1.1.0" && i.state == "healthy")
            .count(),
        3
    );
    // Every step was passed by a verdict, and `baton analysis` shows them.
    let o = baton.cli(&["analysis", "web", "--json"]);
    let a: baton_server::AnalysisView = serde_json::from_slice(&o.stdout).unwrap();
    for step in [1, 2] {
        assert!(
            a.verdicts
                .iter()
                .any(|v| v.step == step && v.outcome == "pass"),
            "step {step} passed: {:?}",
            a.verdicts.last()
        );
    }
    assert!(a.verdicts.iter().all(|v| v.outcome != "fail"));
    // The first verdict's stable figures cover the step's window only, not the 3000 earlier
    // requests: the largest number after "stable" in its comparison is the stable's count.
    let first = &a.verdicts[0];
    let detail = first.figures["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "compare.errors")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    let after = &detail[detail.find("stable").unwrap()..];
    let stable_count = after
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        stable_count < 3000,
        "the first window counted the stable release's earlier traffic: {detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answering_30_percent_errors_is_rolled_back_by_its_analysis() {
    let steps = r#"[ { weight = 5, pause = "5m" }, { weight = 100 } ]"#;
    let baton = Baton::start(&canary_config(
        steps,
        "min_requests = 50\nmax_error_rate = 0.02",
    ));
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &["--error-rate", "0.3"]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let l = load_200(&baton);
    let o = baton
        .cli_async(&["deploy", "web", "1.1.0", "--strategy", "canary", "--wait"])
        .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rolled back: analysis failed"),
        "{}",
        text(&o)
    );
    // Keep the load going a little: every later request must go to the stable release.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = l.stop().await;
    let failures = report.failures();
    assert!(!failures.is_empty(), "the bad canary served some users");
    let first_failure = failures.iter().map(|f| f.finished).min().unwrap();
    let last_canary = report
        .samples
        .iter()
        .filter(|s| s.version.as_deref() == Some("1.1.0"))
        .map(|s| s.started)
        .max()
        .unwrap();
    // How fast is measured by bench/canary.sh, not asserted here (no timing thresholds in
    // `cargo test`): the step's 5 m pause shows that the analysis, not a timer, ended it.
    let detection = last_canary.saturating_sub(first_failure);
    let after: Vec<_> = report
        .samples
        .iter()
        .filter(|s| s.started > last_canary)
        .collect();
    assert!(
        !after.is_empty()
            && after
                .iter()
                .all(|s| s.version.as_deref() == Some("1.0.0") && s.status == Some(200))
    );
    let s = baton.status("web");
    assert_eq!(s.release.as_deref(), Some("1.0.0"));
    assert!(
        wait_until(Duration::from_secs(20), || baton
            .status("web")
            .instances
            .iter()
            .all(|i| i.release == "1.0.0")),
        "the canary is drained and stopped"
    );
    eprintln!(
        "detection {detection:?}, {} failed requests of {}",
        failures.len(),
        report.stats.sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_three_times_slower_is_caught_by_the_comparison() {
    let steps = r#"[ { weight = 25, pause = "5m" }, { weight = 100 } ]"#;
    // No absolute ceilings: only the comparison with the stable release can catch it.
    let baton = Baton::start(&canary_config(
        steps,
        "min_requests = 100\nmax_error_rate = 1.0\ncompare = true",
    ));
    baton.release("web", "1.0.0", &["--latency-ms", "10"]);
    baton.release("web", "1.1.0", &["--latency-ms", "30"]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let l = load_200(&baton);
    let o = baton
        .cli_async(&["deploy", "web", "1.1.0", "--strategy", "canary", "--wait"])
        .await;
    let report = l.stop().await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("compare.latency"),
        "the latency comparison caught it: {err}"
    );
    assert!(
        report.failures().is_empty(),
        "slow is not failed: {:?}",
        report.failures()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canaries_under_noisy_latency_are_not_rolled_back() {
    let steps = r#"[ { weight = 50, pause = "3s" }, { weight = 100 } ]"#;
    let baton = Baton::start(&canary_config(
        steps,
        "min_requests = 50\nmax_error_rate = 0.02",
    ));
    for v in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] {
        baton.release("web", v, &["--latency-ms", "2"]);
    }
    baton.deploy_ok("web", "1.0.0", &[]).await;
    // Noise: the load itself, new connections per request, and a busy 2-core machine.
    let l = Load::start(LoadConfig {
        keepalive_workers: 4,
        fresh_conn_workers: 2,
        rate_per_worker: Some(40.0),
        ..LoadConfig::new(baton.web())
    });
    for v in ["1.1.0", "1.2.0", "1.3.0"] {
        baton.deploy_ok("web", v, &["--strategy", "canary"]).await;
    }
    let report = l.stop().await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_promote_and_abort_are_obeyed_also_across_a_restart() {
    let steps = r#"[ { weight = 10, pause = "forever" }, { weight = 50, pause = "forever" }, { weight = 100 } ]"#;
    let mut baton = Baton::start(&canary_config(steps, "min_requests = 20"));
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        baton.release("web", v, &[]);
    }
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let o = baton.cli(&["deploy", "web", "1.1.0", "--strategy", "canary"]);
    assert!(o.status.success(), "{}", text(&o));
    let at = |step: u32, weight: u32| {
        move |b: &Baton| {
            b.status("web")
                .deployment
                .is_some_and(|d| d.step == step && d.weight == weight)
        }
    };
    assert!(
        wait_until(Duration::from_secs(30), || at(1, 10)(&baton)),
        "{:?}",
        baton.status("web")
    );

    // Pause, then promote and restart Baton: still paused, and the promote is recorded but
    // does not move the deployment while it is paused; it applies on resume.
    assert!(baton.cli(&["pause", "web"]).status.success());
    assert!(wait_until(Duration::from_secs(10), || baton
        .status("web")
        .phase
        == "paused"));
    let o = baton.cli(&["promote", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    baton.stop();
    baton.up();
    assert!(
        wait_until(Duration::from_secs(30), || baton.status("web").phase
            == "paused"),
        "{:?}",
        baton.status("web")
    );
    let d = baton.status("web").deployment.expect("still running");
    assert_eq!(
        (d.phase.as_str(), d.step, d.weight, d.intents.promote),
        ("paused", 1, 10, Some(baton_core::model::Promote::Step)),
        "paused: the promote waits, recorded, and nothing moved: {d:?}"
    );
    // Resume: the recorded promote takes it to the next step (its pause is also `forever`).
    assert!(baton.cli(&["resume", "web"]).status.success());
    assert!(
        wait_until(Duration::from_secs(30), || at(2, 50)(&baton)),
        "{:?}",
        baton.status("web")
    );
    let d = baton.status("web").deployment.expect("still running");
    assert_eq!(
        (d.phase.as_str(), d.intents.promote),
        ("progressing", None),
        "{d:?}"
    );
    assert!(baton.cli(&["promote", "web", "--full"]).status.success());
    assert!(wait_until(Duration::from_secs(30), || baton
        .status("web")
        .phase
        == "idle"
        && baton.status("web").release.as_deref() == Some("1.1.0")));

    // Abort: new requests go to the stable release at once.
    let o = baton.cli(&["deploy", "web", "1.2.0", "--strategy", "canary"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(wait_until(Duration::from_secs(30), || at(1, 10)(&baton)));
    let o = baton.cli(&["abort", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(wait_until(Duration::from_secs(10), || baton
        .status("web")
        .phase
        == "idle"));
    let report = Load::start(LoadConfig {
        keepalive_workers: 2,
        max_requests: 300,
        ..LoadConfig::new(baton.web())
    })
    .wait()
    .await;
    assert_eq!(
        versions(&report),
        vec!["1.1.0"],
        "after abort every new request goes to the stable release"
    );
    let o = baton.cli(&["history", "web", "--json"]);
    let h: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (h[0].phase.as_str(), h[0].reason.as_deref()),
        ("rolled_back", Some("aborted by the operator"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_metric_out_of_range_fails_the_canary() {
    // Signups must keep coming (at least 1 per second); nobody signs up on this canary.
    let steps = r#"[ { weight = 50, pause = "5m" }, { weight = 100 } ]"#;
    let analysis = "min_requests = 20\n\n[[apps.web.analysis.metric]]\nname = \"demo_signups_total\"\nkind = \"rate\"\nmin = 1.0\n";
    let baton = Baton::start(&canary_config(steps, analysis));
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let l = load_200(&baton);
    let o = baton
        .cli_async(&["deploy", "web", "1.1.0", "--strategy", "canary", "--wait"])
        .await;
    let report = l.stop().await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("metric.demo_signups_total"),
        "{}",
        text(&o)
    );
    assert!(report.failures().is_empty());
    let o = baton.cli(&["analysis", "web", "--json"]);
    let a: baton_server::AnalysisView = serde_json::from_slice(&o.stdout).unwrap();
    let last = a.verdicts.last().unwrap();
    let check = last.figures["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "metric.demo_signups_total")
        .unwrap()
        .clone();
    assert_eq!(
        (check["outcome"].as_str(), check["observed"].as_f64()),
        (Some("fail"), Some(0.0)),
        "{check}"
    );
}

/// GETs `/` with `headers`; returns (version, set-cookie).
async fn get_version(
    addr: std::net::SocketAddr,
    headers: &[(&str, &str)],
) -> (String, Option<String>) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut req = hyper::Request::get(format!("http://{addr}/"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(http_body_util::Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (v["version"].as_str().unwrap().to_string(), cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_users_stay_on_one_release_and_targeted_requests_always_get_the_canary() {
    let steps = r#"[ { weight = 50, pause = "forever" }, { weight = 100 } ]"#;
    let sticky = "sticky = { header = \"x-user-id\", cookie = \"baton-bucket\" }\nmatch = [ { header = \"x-canary\", equals = \"always\" } ]";
    let config = canary_config(steps, "min_requests = 50").replace(
        "[apps.web.analysis]",
        &format!("{sticky}\n\n[apps.web.analysis]"),
    );
    let baton = Baton::start(&config);
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    assert!(
        baton
            .cli(&["deploy", "web", "1.1.0", "--strategy", "canary"])
            .status
            .success()
    );
    // The split as published (the deployment's weight is recorded just before the publish).
    assert!(wait_until(Duration::from_secs(30), || baton
        .status("web")
        .split
        .iter()
        .any(|r| r.release == "1.1.0" && r.weight == 50)));
    let web = baton.web();

    // Every user gets one release, every time; about half the users are on the canary.
    let mut on_canary = 0;
    for u in 0..40 {
        let user = format!("user-{u}");
        let (first, _) = get_version(web, &[("x-user-id", &user)]).await;
        for _ in 0..5 {
            assert_eq!(
                get_version(web, &[("x-user-id", &user)]).await.0,
                first,
                "{user} moved between releases"
            );
        }
        on_canary += usize::from(first == "1.1.0");
    }
    assert!(
        (8..=32).contains(&on_canary),
        "{on_canary} of 40 users on a 50 % canary"
    );

    // Targeted requests always get the canary, whoever sends them.
    for u in 0..20 {
        let user = format!("user-{u}");
        assert_eq!(
            get_version(web, &[("x-user-id", &user), ("x-canary", "always")])
                .await
                .0,
            "1.1.0"
        );
    }

    // A first visit without a key gets a cookie, and sticks with it.
    let (first, cookie) = get_version(web, &[]).await;
    let cookie = cookie.expect("a sticky cookie on the first visit");
    let pair = cookie.split(';').next().unwrap().to_string();
    assert!(pair.starts_with("baton-bucket="), "{cookie}");
    for _ in 0..10 {
        let (v, again) = get_version(web, &[("cookie", &pair)]).await;
        assert_eq!(v, first);
        assert!(again.is_none(), "the cookie is set once");
    }
}
