//! Migrations that travel with the release: expand before the new instances start, contract
//! only after success, and no rollback below a contracted release without --force.

use std::time::Duration;

use baton_demo::load::{Load, LoadConfig};

use crate::harness::{Baton, THREE_WEB, text, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_runs_first_contract_only_on_success_and_rollback_below_a_contract_is_refused() {
    let migrate = r#"
[apps.web.migrate]
command = ["/bin/sh", "-c", "echo expand {version} $DATABASE_URL >> @DIR@/migrations.log; test {version} != 1.2.0"]
after = ["/bin/sh", "-c", "echo contract {version} >> @DIR@/migrations.log"]
timeout = "30s"
"#;
    let config = format!(
        "{}{migrate}",
        THREE_WEB.replace(
            "env = { GREETING = \"hello\" }",
            "env = { GREETING = \"hello\", DATABASE_URL = \"sqlite://prod.db\" }"
        )
    );
    let baton = Baton::start(&config);
    let log = baton.dir.path().join("migrations.log");
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        baton.release("web", v, &[]);
    }
    baton.deploy_ok("web", "1.0.0", &[]).await;
    baton.deploy_ok("web", "1.1.0", &[]).await;
    assert!(
        wait_until(Duration::from_secs(20), || lines().len() == 4),
        "{:?}",
        lines()
    );
    assert_eq!(
        lines(),
        [
            "expand 1.0.0 sqlite://prod.db",
            "contract 1.0.0",
            "expand 1.1.0 sqlite://prod.db",
            "contract 1.1.0"
        ],
        "each step ran once, with the environment's config, contract after expand"
    );

    // A failing expand migration: the deployment fails before any new instance starts.
    let l = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_conn_workers: 1,
        rate_per_worker: Some(40.0),
        ..LoadConfig::new(baton.web())
    });
    let o = baton.cli_async(&["deploy", "web", "1.2.0", "--wait"]).await;
    let report = l.stop().await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the migration failed"),
        "{}",
        text(&o)
    );
    assert!(
        report.failures().is_empty(),
        "users untouched: {:?}",
        report.failures()
    );
    assert_eq!(
        report.stats.by_version.keys().cloned().collect::<Vec<_>>(),
        vec!["1.1.0".to_string()]
    );
    let s = baton.status("web");
    assert!(
        s.instances.iter().all(|i| i.release == "1.1.0"),
        "no 1.2.0 instance ever started: {s:?}"
    );
    assert_eq!(
        lines().last().map(String::as_str),
        Some("expand 1.2.0 sqlite://prod.db"),
        "no contract after a failure"
    );
    let o = baton.cli(&["history", "web", "--json"]);
    let h: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(h[0].phase, "failed");

    // 1.1.0 contracted the schema: 1.0.0 may not come back without --force.
    let o = baton.cli(&["rollback", "web", "--to", "1.0.0"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ran the contract migration of 1.1.0") && err.contains("--force"),
        "{err}"
    );
    let o = baton.cli(&["rollback", "web", "--to", "1.0.0", "--force", "--wait"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = baton.cli(&["history", "web", "--json"]);
    let h: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        h[0].trigger.starts_with("rollback --force by "),
        "{:?}",
        h[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_services_own_migration_creates_its_signup_table_and_contracts_the_legacy_one() {
    let migrate = r#"
[apps.web.migrate]
command = ["{artifact}/baton-demo", "migrate"]
after = ["{artifact}/baton-demo", "migrate", "--contract"]
"#;
    let config = format!(
        "{}{migrate}",
        THREE_WEB.replace(
            "env = { GREETING = \"hello\" }",
            "env = { DATABASE_URL = \"sqlite://@DIR@/web.db\" }"
        )
    );
    let baton = Baton::start(&config);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let db = baton.dir.path().join("web.db");
    let tables = || -> Vec<String> {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mut s = c.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || tables() == ["signups"]),
        "expand created signups, contract dropped signups_legacy: {:?}",
        tables()
    );

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    for _ in 0..5 {
        let req = hyper::Request::post(format!("http://{}/signup", baton.web()))
            .body(http_body_util::Empty::new())
            .unwrap();
        assert_eq!(client.request(req).await.unwrap().status(), 201);
    }
    let n: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM signups", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5, "signups are stored in the migrated table");
}
