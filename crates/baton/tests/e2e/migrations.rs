//! Migrations that travel with the release: expand before the new instances start, contract
//! only once the release has served for `contract_delay` (a stored, restart-safe step that a
//! rollback within the window cancels), and no rollback below a contracted release without
//! --force.

use std::time::Duration;

use baton_demo::load::{Load, LoadConfig};

use baton_store::ContractState;

use crate::harness::{Baton, THREE_WEB, text, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_runs_first_contract_only_on_success_and_rollback_below_a_contract_is_refused() {
    let migrate = r#"
[apps.web.migrate]
command = ["/bin/sh", "-c", "echo expand {version} $DATABASE_URL >> @DIR@/migrations.log; test {version} != 1.2.0"]
after = ["/bin/sh", "-c", "echo contract {version} >> @DIR@/migrations.log"]
timeout = "30s"
contract_delay = "0s"
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
    let contract_done = |v: &str| {
        baton
            .status("web")
            .contract
            .is_some_and(|c| c.release == v && c.state == ContractState::Done)
    };
    baton.deploy_ok("web", "1.0.0", &[]).await;
    assert!(
        wait_until(Duration::from_secs(20), || contract_done("1.0.0")),
        "{:?}",
        baton.status("web").contract
    );
    baton.deploy_ok("web", "1.1.0", &[]).await;
    assert!(
        wait_until(Duration::from_secs(20), || contract_done("1.1.0")),
        "{:?}",
        baton.status("web").contract
    );
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
async fn a_contract_waits_its_delay_so_a_warm_rollback_within_it_is_allowed_and_cancels_it() {
    let migrate = r#"
[apps.web.migrate]
command = ["/bin/sh", "-c", "exit 0"]
after = ["/bin/sh", "-c", "echo contract {version} >> @DIR@/contracts.log"]
contract_delay = "1h"
"#;
    let baton = Baton::start(&format!("{THREE_WEB}{migrate}"));
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    baton
        .deploy_ok("web", "1.1.0", &["--strategy", "blue-green"])
        .await;

    // Scheduled as data with its due time, not run at the success.
    let o = baton.cli(&["history", "web", "--json"]);
    let h: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    let succeeded_at = h[0].finished_at.expect("ended");
    let s = baton.status("web");
    let c = s.contract.clone().expect("a contract is scheduled");
    assert_eq!(
        (c.release.as_str(), c.state),
        ("1.1.0", ContractState::Pending)
    );
    assert!(
        c.due_at >= succeeded_at + 3_600_000,
        "due an hour after the success: {c:?}, succeeded at {succeeded_at}"
    );
    let o = baton.cli(&["status", "web"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("contract 1.1.0 pending (due "),
        "{}",
        text(&o)
    );
    let mut warm: Vec<String> = s
        .instances
        .iter()
        .filter(|i| i.release == "1.0.0" && !i.in_split)
        .map(|i| i.id.clone())
        .collect();
    warm.sort();
    assert_eq!(warm.len(), 3, "{s:?}");

    // Within the window, the warm rollback needs no --force: nothing was contracted.
    let o = baton.cli(&["rollback", "web", "--strategy", "blue-green", "--wait"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = baton.status("web");
    let mut serving: Vec<String> = s
        .instances
        .iter()
        .filter(|i| i.in_split)
        .map(|i| i.id.clone())
        .collect();
    serving.sort();
    assert_eq!(serving, warm, "the warm set took over: {s:?}");
    let o = baton.cli(&["history", "web", "--json"]);
    let h2: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (h2[0].trigger.as_str(), h2[0].phase.as_str()),
        ("rollback", "succeeded")
    );
    // 1.1.0's contract is cancelled, visibly, and never ran.
    let (_, detail) = baton.api_get(&format!("/v1/deployments/{}", h[0].id)).await;
    let messages: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("contract migration of 1.1.0 scheduled"))
            && messages
                .iter()
                .any(|m| m.contains("contract migration of 1.1.0 cancelled before it ran")),
        "{messages:?}"
    );
    assert!(
        !baton.dir.path().join("contracts.log").exists(),
        "no contract ran"
    );
    let c = baton.status("web").contract.expect("the rollback's own");
    assert_eq!(
        (c.release.as_str(), c.state),
        ("1.0.0", ContractState::Pending)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_cut_by_a_crash_runs_again_and_its_failure_is_held_and_notified() {
    let (port, got) = crate::webhooks::receiver().await;
    let migrate = r#"
[apps.web.migrate]
command = ["/bin/sh", "-c", "exit 0"]
after = ["/bin/sh", "-c", "echo contract {version} >> @DIR@/contracts.log; while [ ! -e @DIR@/go ]; do sleep 0.1; done; test -e @DIR@/ok"]
contract_delay = "0s"
timeout = "2m"
"#;
    let mut baton = Baton::start(&format!(
        "[[notify]]\nwebhook = \"http://127.0.0.1:{port}/hooks\"\n{THREE_WEB}{migrate}"
    ));
    // Whatever happens, the contract processes (which outlive a killed Baton) end.
    struct Go(std::path::PathBuf);
    impl Drop for Go {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, "");
        }
    }
    let go = Go(baton.dir.path().join("go"));
    let log = baton.dir.path().join("contracts.log");
    let runs = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let running = |b: &Baton, attempts: u32| {
        b.status("web")
            .contract
            .is_some_and(|c| c.state == ContractState::Running && c.attempts == attempts)
    };
    assert!(
        wait_until(Duration::from_secs(20), || running(&baton, 1)
            && runs() == 1),
        "{:?}",
        baton.status("web").contract
    );

    baton.kill9();
    baton.up();
    assert!(
        wait_until(Duration::from_secs(30), || running(&baton, 2)
            && runs() == 2),
        "the interrupted contract runs again after the restart: {:?}\n{}",
        baton.status("web").contract,
        baton.log()
    );

    // It fails: held with its reason, an event and a webhook; the schema is not contracted.
    drop(go);
    assert!(
        wait_until(Duration::from_secs(20), || baton
            .status("web")
            .contract
            .is_some_and(|c| c.state == ContractState::Failed)),
        "{:?}",
        baton.status("web").contract
    );
    let c = baton.status("web").contract.unwrap();
    assert!(
        c.detail.as_deref().is_some_and(|d| d.contains("exit")),
        "{c:?}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || got.lock().unwrap().iter().any(
            |e| e["kind"] == "deployment_migration_failed"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains("contract migration of 1.0.0 failed")
        )),
        "{:?}",
        got.lock().unwrap()
    );
    let o = baton.cli(&["status", "web"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("contract 1.0.0 failed: "),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_services_own_migration_creates_its_signup_table_and_contracts_the_legacy_one() {
    let migrate = r#"
[apps.web.migrate]
command = ["{artifact}/baton-demo", "migrate"]
after = ["{artifact}/baton-demo", "migrate", "--contract"]
contract_delay = "0s"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_contract_waits_for_the_running_one_which_is_never_cancelled_and_survives_a_crash()
{
    // 1.1.0's contract blocks until `go` exists; 1.2.0's would finish at once if it started.
    let migrate = r#"
[apps.web.migrate]
command = ["/bin/true"]
after = ["/bin/sh", "-c", "echo start {version} >> @DIR@/c.log; while [ {version} = 1.1.0 ] && [ ! -e @DIR@/go ]; do sleep 0.1; done; echo end {version} >> @DIR@/c.log"]
contract_delay = "0s"
timeout = "2m"
"#;
    let mut baton = Baton::start(&format!("{THREE_WEB}{migrate}"));
    // Whatever happens, the contract processes (which outlive a killed Baton) end.
    struct Go(std::path::PathBuf);
    impl Drop for Go {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, "");
        }
    }
    let go = Go(baton.dir.path().join("go"));
    let log = baton.dir.path().join("c.log");
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let contract = |b: &Baton, v: &str, state: ContractState| {
        b.status("web")
            .contract
            .is_some_and(|c| c.release == v && c.state == state)
    };
    baton.release("web", "1.1.0", &[]);
    baton.release("web", "1.2.0", &[]);
    baton.deploy_ok("web", "1.1.0", &[]).await;
    assert!(
        wait_until(Duration::from_secs(20), || contract(
            &baton,
            "1.1.0",
            ContractState::Running
        ) && lines() == ["start 1.1.0"]),
        "{:?} {:?}",
        baton.status("web").contract,
        lines()
    );
    let o = baton.cli(&["history", "web", "--json"]);
    let h: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    let first = h[0].id;

    baton.deploy_ok("web", "1.2.0", &[]).await;
    assert!(
        wait_until(Duration::from_secs(20), || contract(
            &baton,
            "1.2.0",
            ContractState::Pending
        )),
        "1.2.0's contract waits for the running one: {:?} {:?}",
        baton.status("web").contract,
        lines()
    );
    let seen = deployment_events(&baton, first).await;
    assert!(
        !seen.iter().any(|m| m.contains("cancelled")),
        "a running contract is never cancelled: {seen:?}"
    );

    // Baton dies while 1.1.0's contract runs: it runs again after the restart, and 1.2.0's
    // still waits for it.
    baton.kill9();
    baton.up();
    assert!(
        wait_until(Duration::from_secs(30), || lines()
            == ["start 1.1.0", "start 1.1.0"]),
        "the interrupted contract runs again after the restart: {:?}\n{}",
        lines(),
        baton.log()
    );
    drop(go);
    assert!(
        wait_until(Duration::from_secs(30), || contract(
            &baton,
            "1.2.0",
            ContractState::Done
        )),
        "{:?} {:?}",
        baton.status("web").contract,
        lines()
    );
    let l = lines();
    let started = l.iter().position(|x| x == "start 1.2.0").unwrap();
    assert!(
        l[..started].iter().filter(|x| *x == "start 1.1.0").count() == 2
            && l[..started].contains(&"end 1.1.0".to_string())
            && l[started..].contains(&"end 1.2.0".to_string()),
        "one contract at a time: 1.2.0's started once 1.1.0's ended (the killed Baton's own \
         1.1.0 process may end at any point after `go`): {l:?}"
    );
    let seen = deployment_events(&baton, first).await;
    assert!(
        seen.iter()
            .any(|m| m.contains("contract migration of 1.1.0 succeeded"))
            && !seen.iter().any(|m| m.contains("cancelled")),
        "{seen:?}"
    );
}

/// The messages of deployment `id`'s events.
async fn deployment_events(baton: &Baton, id: i64) -> Vec<String> {
    let (_, detail) = baton.api_get(&format!("/v1/deployments/{id}")).await;
    detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}
