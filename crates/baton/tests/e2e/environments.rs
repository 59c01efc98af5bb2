//! Environments: one artifact promoted from staging to production, each with its own config;
//! the promotion gate; --from; --force; the ledger; rollback as a new deployment.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::{Baton, text, wait_until};

const TWO_ENVS: &str = r#"
environments = ["staging", "production"]

[promotion]
soak = "1h"

[api]
listen = "127.0.0.1:@API@"

[apps.web]
instances = 2
command = ["{artifact}/baton-demo", "--port", "{port}"]
env = { GREETING = "hello", DATABASE_URL = "sqlite://default.db" }

[apps.web.health]
interval = "200ms"

[apps.web.environments.staging]
listen = "127.0.0.1:@OTHER@"
env = { DATABASE_URL = "sqlite://staging.db" }

[apps.web.environments.production]
listen = "127.0.0.1:@WEB@"
instances = 3
env = { DATABASE_URL = "sqlite://production.db" }
"#;

async fn whoami(addr: SocketAddr) -> serde_json::Value {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client
        .get(
            format!("http://{addr}/whoami?env=GREETING,DATABASE_URL")
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_artifact_goes_from_staging_to_production_with_each_environments_config() {
    let mut baton = Baton::start(TWO_ENVS);
    let (staging, production) = (baton.apps["other"], baton.apps["web"]);
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);

    // Production refuses what never ran in staging, and says what to do.
    let o = baton.cli(&["deploy", "web", "1.0.0", "--env", "production"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has not run in staging yet"),
        "{}",
        text(&o)
    );

    baton.deploy_ok("web", "1.0.0", &["--env", "staging"]).await;
    // Too early: an hour's soak cannot pass during the test.
    let o = baton.cli(&["deploy", "web", "1.0.0", "--env", "production"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("has run in staging for") && err.contains("of the 1h soak"),
        "{}",
        text(&o)
    );
    assert!(
        baton.status_env("web", "production").release.is_none(),
        "the refusal changed nothing"
    );

    // A shorter soak (Baton restarted with it) has passed once staging served that long.
    baton.stop();
    let config = std::fs::read_to_string(&baton.config).unwrap();
    std::fs::write(
        &baton.config,
        config.replace("soak = \"1h\"", "soak = \"1s\""),
    )
    .unwrap();
    baton.up();
    let accepted = wait_until(Duration::from_secs(30), || {
        let s = baton.status_env("web", "production");
        s.release.as_deref() == Some("1.0.0")
            || baton
                .cli(&["deploy", "web", "1.0.0", "--env", "production"])
                .status
                .success()
    });
    assert!(
        accepted,
        "production accepts 1.0.0 after its soak in staging"
    );
    assert!(wait_until(Duration::from_secs(30), || baton
        .status_env("web", "production")
        .phase
        == "idle"));

    // Same artifact (the same stored directory), each environment's own values.
    let (s, p) = (whoami(staging).await, whoami(production).await);
    assert_eq!(
        s["cwd"], p["cwd"],
        "one artifact digest in both environments"
    );
    assert!(s["cwd"].as_str().unwrap().contains("/artifacts/"), "{s}");
    assert_eq!(
        (
            s["env"]["DATABASE_URL"].as_str(),
            p["env"]["DATABASE_URL"].as_str()
        ),
        (Some("sqlite://staging.db"), Some("sqlite://production.db"))
    );
    assert_eq!(
        (s["env"]["GREETING"].as_str(), p["env"]["GREETING"].as_str()),
        (Some("hello"), Some("hello"))
    );
    assert_eq!(baton.status_env("web", "staging").instances.len(), 2);
    assert_eq!(baton.status_env("web", "production").instances.len(), 3);

    // --from staging: exactly what serves there; --force past the gate is recorded.
    baton.deploy_ok("web", "1.1.0", &["--env", "staging"]).await;
    let o = baton.cli(&[
        "deploy",
        "web",
        "--from",
        "staging",
        "--env",
        "production",
        "--force",
        "--wait",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        baton.status_env("web", "production").release.as_deref(),
        Some("1.1.0")
    );
    let o = baton.cli(&["history", "web", "--env", "production", "--json"]);
    let h: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(h[0].trigger.starts_with("deploy --force by "), "{:?}", h[0]);

    // Rollback in production: a new deployment pointing at the old release.
    let o = baton.cli(&["rollback", "web", "--env", "production", "--wait"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        baton.status_env("web", "production").release.as_deref(),
        Some("1.0.0")
    );
    assert_eq!(
        baton.status_env("web", "staging").release.as_deref(),
        Some("1.1.0"),
        "staging is untouched"
    );

    // The ledger: every release, where it ran, how each deployment ended.
    let o = baton.cli(&["releases", "web", "--json"]);
    let ledger: Vec<baton_server::LedgerEntry> = serde_json::from_slice(&o.stdout).unwrap();
    let runs = |v: &str| -> Vec<(String, String)> {
        ledger
            .iter()
            .find(|e| e.release.version == v)
            .unwrap()
            .runs
            .iter()
            .map(|r| (r.env.clone(), r.phase.clone()))
            .collect()
    };
    let r100 = runs("1.0.0");
    assert!(
        r100.contains(&("staging".into(), "succeeded".into()))
            && r100
                .iter()
                .filter(|r| r.0 == "production" && r.1 == "succeeded")
                .count()
                == 2,
        "{r100:?}"
    );
    assert_eq!(
        runs("1.1.0"),
        vec![
            ("staging".to_string(), "succeeded".to_string()),
            ("production".to_string(), "succeeded".to_string())
        ]
    );
    // A rollback --to a release that never ran in staging meets the same gate as a deploy.
    baton.release("web", "1.2.0", &[]);
    let o = baton.cli(&["rollback", "web", "--to", "1.2.0", "--env", "production"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has not run in staging yet"),
        "{}",
        text(&o)
    );
    let o = baton.cli(&[
        "rollback",
        "web",
        "--to",
        "1.2.0",
        "--env",
        "production",
        "--force",
        "--wait",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = baton.cli(&["history", "web", "--env", "production", "--json"]);
    let h: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(h[0].to, "1.2.0");
    assert!(
        h[0].trigger.starts_with("rollback --force by "),
        "{:?}",
        h[0]
    );
    let (code, detail) = baton.api_get(&format!("/v1/deployments/{}", h[0].id)).await;
    assert_eq!(code, 200);
    assert!(
        detail["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"]
                .as_str()
                .unwrap()
                .contains("promotion gate forced by")),
        "the skipped gate is recorded: {detail}"
    );
    // A rollback goes back to what served here: from_env is refused, not ignored.
    let (code, body) = baton
        .api_post(
            "/v1/apps/web/rollback",
            r#"{"env": "production", "from_env": "staging"}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("baton deploy web --from ENV"),
        "{body}"
    );
    assert_eq!(
        baton.status_env("web", "production").release.as_deref(),
        Some("1.2.0"),
        "the refused rollback changed nothing"
    );

    let o = baton.cli(&["env", "web"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("staging") && out.contains("production") && out.contains("3/3"),
        "{out}"
    );
}
