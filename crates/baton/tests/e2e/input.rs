//! Bad input: config typos, missing token, conflicting releases, concurrent deploys.

use std::process::Command;
use std::time::Duration;

use crate::harness::{BATON, Baton, THREE_WEB, free_port, text, wait_until};

#[test]
fn a_config_typo_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        THREE_WEB
            .replace("@API@", "17999")
            .replace("@WEB@", "18999")
            .replace("instances = 3", "instanses = 3"),
    )
    .unwrap();
    let o = Command::new(BATON)
        .args(["up", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}:7:1", path.display())), "{err}");
    assert!(err.contains("unknown field `instanses`"), "{err}");

    std::fs::write(
        &path,
        THREE_WEB
            .replace("@API@", "17999")
            .replace("@WEB@", "18999")
            .replace("interval = \"200ms\"", "interval = \"fast\""),
    )
    .unwrap();
    let o = Command::new(BATON)
        .args(["status", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(":12:")
            && err.contains("apps.web.health.interval")
            && err.contains("ms, s, m or h"),
        "{err}"
    );
}

/// `baton up` on `config`; killed if it is still running after 30 s (a config that was
/// accepted). Returns its exit code and stderr.
pub(crate) fn up_exit(dir: &std::path::Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("baton.toml");
    std::fs::write(&path, config).unwrap();
    let stderr = dir.join("stderr");
    let mut child = Command::new(BATON)
        .args(["up", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until(Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let err = std::fs::read_to_string(&stderr).unwrap();
    (status.and_then(|s| s.code()), err)
}

#[test]
fn configs_that_validate_but_could_never_work_exit_2_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.toml");
    let (api, web) = (free_port().to_string(), free_port().to_string());
    let config = THREE_WEB.replace("@API@", &api).replace("@WEB@", &web);
    let cases = [
        (
            config.replace(
                "deadline = \"30s\"",
                "deadline = \"18446744073709551615ms\"",
            ),
            ":16:",
            "apps.web.health.deadline",
        ),
        (
            config.replace(
                &format!("\"127.0.0.1:{web}\""),
                &format!("\"0.0.0.0:{api}\""),
            ),
            ":6:1:",
            "apps.web.listen",
        ),
        (
            config.replace("\"hello\"", "\"hel\\u0000lo\""),
            ":9:",
            "apps.web.env.GREETING",
        ),
        (
            config.replace(
                "interval = \"200ms\"",
                "path = \"/health\\r\\n\"\ninterval = \"200ms\"",
            ),
            ":12:",
            "apps.web.health.path",
        ),
    ];
    for (text, at, key) in cases {
        assert_ne!(text, config);
        let (code, err) = up_exit(dir.path(), &text);
        assert_eq!(code, Some(2), "{key}: {err}");
        assert!(
            err.contains(&format!("{}{at}", path.display())) && err.contains(key),
            "{key}: {err}"
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    let o = Command::new(BATON).args(["deploy"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_calls_without_the_token_and_changes_nothing() {
    let baton = Baton::start(THREE_WEB);
    baton.release("web", "1.0.0", &[]);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for token in [None, Some("Bearer wrong")] {
        let mut req = hyper::Request::post(format!("http://{}/v1/apps/web/deployments", baton.api))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"release":"1.0.0"}"#,
            )))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 401);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    }
    let s = baton.status("web");
    assert!(
        s.deployment.is_none() && s.instances.is_empty(),
        "nothing changed: {s:?}"
    );
    let o = baton.cli(&["history", "web", "--json"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
    // The token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(baton.data_dir().join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_immutable_and_one_deployment_runs_at_a_time() {
    let baton = Baton::start(THREE_WEB);
    let src = baton.release("web", "1.0.0", &[]);
    // Same content again: a no-op.
    let o = baton.cli(&[
        "release",
        "create",
        "web",
        "1.0.0",
        "--artifact",
        src.to_str().unwrap(),
    ]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("already exists"),
        "{}",
        text(&o)
    );
    // Other content under the same version: refused.
    let other = baton.dir.path().join("other");
    let o = baton.cli(&[
        "demo",
        "artifact",
        other.to_str().unwrap(),
        "--version",
        "1.0.0",
        "--latency-ms",
        "5",
    ]);
    assert!(o.status.success());
    let o = baton.cli(&[
        "release",
        "create",
        "web",
        "1.0.0",
        "--artifact",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("1.0.0"),
        "{}",
        text(&o)
    );
    // Unknown release and unknown app are clear errors.
    let o = baton.cli(&["deploy", "web", "9.9.9"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "naming a release that does not exist is bad usage"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("baton release create web 9.9.9"),
        "{}",
        text(&o)
    );
    let o = baton.cli(&["deploy", "nope", "1.0.0"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no app named \"nope\""),
        "{}",
        text(&o)
    );

    // A second deploy while one runs is refused, naming the running one.
    baton.release("web", "1.1.0", &["--startup-ms", "1000"]);
    let o = baton.cli(&["deploy", "web", "1.0.0"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = baton.cli(&["deploy", "web", "1.1.0"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains('1') && err.contains("1.0.0"),
        "the refusal names the running deployment: {err}"
    );
    let ok = crate::harness::wait_until(Duration::from_secs(30), || {
        baton.status("web").phase == "idle"
    });
    assert!(ok);
}
