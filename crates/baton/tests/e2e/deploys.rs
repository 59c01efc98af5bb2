//! Rolling, blue-green and rollback under continuous load: zero failed requests, and afterwards
//! every response comes from the expected release.

use std::time::Duration;

use baton_demo::load::{Load, LoadConfig, LoadReport};

use crate::harness::{Baton, THREE_WEB, text};

pub fn load(baton: &Baton) -> Load {
    Load::start(LoadConfig {
        keepalive_workers: 4,
        fresh_conn_workers: 2,
        rate_per_worker: Some(40.0),
        max_duration: Duration::from_secs(300),
        max_requests: 500_000,
        request_timeout: Duration::from_secs(10),
        ..LoadConfig::new(baton.web())
    })
}

pub fn assert_no_failures(report: &LoadReport, what: &str) {
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{what}: {} of {} requests failed, first: {:?}",
        failures.len(),
        report.stats.sent,
        failures.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        report.stats.sent > 50,
        "{what}: too little load to mean anything ({} requests)",
        report.stats.sent
    );
}

/// A short burst after a deploy: every answer must come from `version`.
pub async fn assert_only(baton: &Baton, version: &str) {
    let report = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_conn_workers: 2,
        max_requests: 200,
        max_duration: Duration::from_secs(30),
        ..LoadConfig::new(baton.web())
    })
    .wait()
    .await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let versions: Vec<_> = report.stats.by_version.keys().cloned().collect();
    assert_eq!(
        versions,
        vec![version.to_string()],
        "after the deploy only {version} may answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_blue_green_and_rollback_under_load_lose_no_request() {
    let baton = Baton::start(THREE_WEB);
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);
    baton.release("web", "1.2.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    assert_only(&baton, "1.0.0").await;

    // Rolling 1.0.0 -> 1.1.0.
    let l = load(&baton);
    baton
        .deploy_ok("web", "1.1.0", &["--strategy", "rolling"])
        .await;
    let report = l.stop().await;
    assert_no_failures(&report, "rolling");
    assert!(
        report.stats.by_version.contains_key("1.0.0")
            && report.stats.by_version.contains_key("1.1.0")
    );
    assert_only(&baton, "1.1.0").await;
    let s = baton.status("web");
    assert_eq!(s.release.as_deref(), Some("1.1.0"));
    assert_eq!(
        s.instances
            .iter()
            .filter(|i| i.state == "healthy" && i.release == "1.1.0")
            .count(),
        3,
        "{s:?}"
    );
    // The proxy counted what users got, per release.
    let t = s
        .traffic
        .iter()
        .find(|t| t.release == "1.1.0")
        .expect("traffic counted for 1.1.0");
    assert!(t.requests >= 200, "{t:?}");
    assert_eq!((t.status[4], t.connect_errors), (0, 0), "{t:?}");
    assert!(t.p99_ms.is_some());

    // Blue-green 1.1.0 -> 1.2.0: atomic, once anyone saw 1.2.0 nobody gets 1.1.0.
    let l = load(&baton);
    baton
        .deploy_ok("web", "1.2.0", &["--strategy", "blue-green"])
        .await;
    let report = l.stop().await;
    assert_no_failures(&report, "blue-green");
    let late = report.served_old_after_new("1.2.0");
    assert!(
        late.is_empty(),
        "{} requests started after the switch got the old release: {:?}",
        late.len(),
        &late[..late.len().min(3)]
    );
    assert_only(&baton, "1.2.0").await;
    let s = baton.status("web");
    assert_eq!(s.split.len(), 1);
    assert_eq!(
        (s.split[0].release.as_str(), s.split[0].weight),
        ("1.2.0", 100)
    );
    let mut warm: Vec<String> = s
        .instances
        .iter()
        .filter(|i| i.release == "1.1.0" && !i.in_split && i.state == "healthy")
        .map(|i| i.id.clone())
        .collect();
    warm.sort();
    assert_eq!(
        warm.len(),
        3,
        "the previous set stays warm for keep_previous: {s:?}"
    );

    // Rollback (blue-green, within keep_previous: the warm set takes over at once).
    let l = load(&baton);
    let o = baton
        .cli_async(&["rollback", "web", "--strategy", "blue-green", "--wait"])
        .await;
    assert!(o.status.success(), "rollback: {}", text(&o));
    let report = l.stop().await;
    assert_no_failures(&report, "rollback");
    assert!(report.served_old_after_new("1.1.0").is_empty());
    assert_only(&baton, "1.1.0").await;
    let o = baton.cli(&["history", "web", "--json", "--limit", "1"]);
    let last: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (last[0].to.as_str(), last[0].strategy.as_str()),
        ("1.1.0", "blue-green"),
        "{:?}",
        last[0]
    );
    // The warm switch: the very instances kept warm serve again; none was started.
    let s = baton.status("web");
    let mut serving: Vec<String> = s
        .instances
        .iter()
        .filter(|i| i.in_split)
        .map(|i| i.id.clone())
        .collect();
    serving.sort();
    assert_eq!(serving, warm, "{s:?}");
    let (code, detail) = baton
        .api_get(&format!("/v1/deployments/{}", last[0].id))
        .await;
    assert_eq!(code, 200);
    let started: Vec<&serde_json::Value> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "instance_started")
        .collect();
    assert!(started.is_empty(), "no instance started: {started:?}");

    // Rolling rollback to an older release by name.
    let l = load(&baton);
    let o = baton
        .cli_async(&[
            "rollback",
            "web",
            "--to",
            "1.0.0",
            "--strategy",
            "rolling",
            "--wait",
        ])
        .await;
    assert!(o.status.success(), "rollback --to: {}", text(&o));
    let report = l.stop().await;
    assert_no_failures(&report, "rolling rollback");
    assert_only(&baton, "1.0.0").await;

    // The history tells the story with outcomes and triggers.
    let o = baton.cli(&["history", "web", "--json"]);
    let history: Vec<baton_server::views::DeploymentView> =
        serde_json::from_slice(&o.stdout).unwrap();
    let outcomes: Vec<_> = history
        .iter()
        .rev()
        .map(|d| (d.to.as_str(), d.phase.as_str(), d.trigger.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("1.0.0", "succeeded", "deploy"),
            ("1.1.0", "succeeded", "deploy"),
            ("1.2.0", "succeeded", "deploy"),
            ("1.1.0", "succeeded", "rollback"),
            ("1.0.0", "succeeded", "rollback"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_started_before_a_switch_finishes_on_the_old_release() {
    let baton = Baton::start(THREE_WEB);
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;

    let addr = baton.web();
    let slow = tokio::spawn(async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let resp = client
            .get(format!("http://{addr}/slow?ms=3000").parse().unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&body).to_string())
    });
    // The switch starts only once the slow request is in flight on an instance.
    let in_flight = crate::harness::wait_until_async(Duration::from_secs(10), || async {
        baton
            .status("web")
            .instances
            .iter()
            .any(|i| i.in_flight > 0)
    })
    .await;
    assert!(in_flight, "the slow request never showed up in flight");
    baton
        .deploy_ok("web", "1.1.0", &["--strategy", "blue-green"])
        .await;
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"version\":\"1.0.0\""),
        "the old release answers it: {body}"
    );
    assert_only(&baton, "1.1.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_in_one_file_deploy_independently() {
    let template = format!(
        "{THREE_WEB}\n[apps.other]\nlisten = \"127.0.0.1:@OTHER@\"\ninstances = 1\ncommand = [\"{{artifact}}/baton-demo\", \"--port\", \"{{port}}\"]\n[apps.other.health]\ninterval = \"200ms\"\n"
    );
    let baton = Baton::start(&template);
    baton.release("web", "1.0.0", &[]);
    baton.release("other", "7.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    baton.deploy_ok("other", "7.0.0", &[]).await;
    assert_only(&baton, "1.0.0").await;
    let other = baton.apps["other"];
    let ok = baton_demo::load::wait_until_serving(other, "/", Duration::from_secs(10)).await;
    assert!(ok);
    let report = Load::start(LoadConfig {
        max_requests: 50,
        ..LoadConfig::new(other)
    })
    .wait()
    .await;
    assert_eq!(
        report.stats.by_version.keys().cloned().collect::<Vec<_>>(),
        vec!["7.0.0".to_string()]
    );
    assert_eq!(baton.status("other").instances.len(), 1);
    assert_eq!(baton.status("web").instances.len(), 3);
}
