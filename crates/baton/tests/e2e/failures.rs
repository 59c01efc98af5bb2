//! Things going wrong: a release that never gets healthy, an instance killed from outside.

use std::time::Duration;

use baton_demo::load::{Load, LoadConfig};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{Baton, THREE_WEB, text, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_never_gets_healthy_leaves_users_on_the_old_one() {
    let baton = Baton::start(&THREE_WEB.replace("deadline = \"30s\"", "deadline = \"3s\""));
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &["--unhealthy"]);
    baton.deploy_ok("web", "1.0.0", &[]).await;

    for strategy in ["rolling", "blue-green"] {
        let l = Load::start(LoadConfig {
            keepalive_workers: 2,
            fresh_conn_workers: 1,
            rate_per_worker: Some(40.0),
            ..LoadConfig::new(baton.web())
        });
        let o = baton
            .cli_async(&["deploy", "web", "1.1.0", "--strategy", strategy, "--wait"])
            .await;
        let report = l.stop().await;
        assert_eq!(
            o.status.code(),
            Some(1),
            "deploy --wait must exit 1: {}",
            text(&o)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("did not become healthy") && err.contains("users stay on 1.0.0"),
            "the command says so: {err}"
        );
        assert!(
            report.failures().is_empty(),
            "{strategy}: users saw failures: {:?}",
            report.failures()
        );
        assert_eq!(
            report.stats.by_version.keys().cloned().collect::<Vec<_>>(),
            vec!["1.0.0".to_string()],
            "{strategy}: nobody saw 1.1.0"
        );
        let ok = wait_until(Duration::from_secs(20), || {
            let s = baton.status("web");
            s.phase == "idle"
                && s.instances.iter().all(|i| i.release == "1.0.0")
                && s.instances.len() == 3
        });
        assert!(
            ok,
            "{strategy}: the new instances were not stopped: {:?}",
            baton.status("web")
        );
        assert_eq!(baton.status("web").release.as_deref(), Some("1.0.0"));
    }
    let o = baton.cli(&["history", "web", "--json"]);
    let h: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(h[0].phase, "failed");
    assert!(
        h[0].reason
            .as_deref()
            .unwrap_or("")
            .contains("did not become healthy within 3s"),
        "{:?}",
        h[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_from_outside_is_replaced_and_only_its_in_flight_requests_fail() {
    let baton = Baton::start(THREE_WEB);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;

    let workers = 4usize;
    let l = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_conn_workers: 2,
        rate_per_worker: Some(50.0),
        ..LoadConfig::new(baton.web())
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // let load reach every instance first
    let victim = baton.status("web").instances[0].clone();
    kill(Pid::from_raw(victim.pid.unwrap() as i32), Signal::SIGKILL).unwrap();

    let replaced = wait_until(Duration::from_secs(30), || {
        let s = baton.status("web");
        s.instances.len() == 3
            && s.instances
                .iter()
                .all(|i| i.state == "healthy" && i.in_split)
            && s.instances
                .iter()
                .any(|i| i.id == victim.id && i.restarts >= 1 && i.pid != victim.pid)
    });
    assert!(
        replaced,
        "the killed instance was not restarted: {:?}\n{}",
        baton.status("web"),
        baton.log()
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // traffic reaches the restarted instance again
    let report = l.stop().await;
    let failures = report.failures();
    // Each worker has at most one request in flight: only those on the killed instance may fail.
    assert!(
        failures.len() <= workers,
        "{} requests failed (at most {workers} were in flight): {:?}",
        failures.len(),
        failures
    );
    let o = baton.cli(&["history", "web"]);
    assert!(o.status.success());
}
