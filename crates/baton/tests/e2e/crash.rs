//! Baton killed with SIGKILL in the middle of a rolling deploy, then started again.

use std::time::Duration;

use crate::harness::{Baton, THREE_WEB, processes_under, text, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_rollout_then_restart_finishes_without_orphans_or_duplicates() {
    let mut baton = Baton::start(THREE_WEB);
    baton.release("web", "1.0.0", &[]);
    // Slow to start, so the rollout is surely in the middle when Baton dies.
    baton.release("web", "1.1.0", &["--startup-ms", "1500"]);
    baton.deploy_ok("web", "1.0.0", &[]).await;

    let o = baton.cli(&["deploy", "web", "1.1.0"]);
    assert!(o.status.success(), "{}", text(&o));
    let mid = wait_until(Duration::from_secs(30), || {
        let s = baton.status("web");
        s.deployment.as_ref().is_some_and(|d| d.step >= 1)
    });
    assert!(
        mid,
        "the rollout never reached its first step: {:?}",
        baton.status("web")
    );
    baton.kill9();

    // The instances outlive Baton.
    let alive = processes_under(baton.dir.path());
    assert!(
        alive.len() >= 3,
        "instances must survive Baton's death: {alive:?}"
    );

    baton.up();
    let done = wait_until(Duration::from_secs(60), || {
        let s = baton.status("web");
        s.phase == "idle" && s.release.as_deref() == Some("1.1.0")
    });
    assert!(
        done,
        "the deployment did not finish after the restart: {:?}\n{}",
        baton.status("web"),
        baton.log()
    );
    let settled = wait_until(Duration::from_secs(30), || {
        let s = baton.status("web");
        s.instances.len() == 3
            && s.instances
                .iter()
                .all(|i| i.release == "1.1.0" && i.state == "healthy")
            && processes_under(baton.dir.path()).len() == 3
    });
    let s = baton.status("web");
    let procs = processes_under(baton.dir.path());
    assert!(
        settled,
        "want exactly 3 healthy 1.1.0 instances and 3 processes, got {s:?} and pids {procs:?}\n{}",
        baton.log()
    );
    let mut pids: Vec<u32> = s.instances.iter().filter_map(|i| i.pid).collect();
    pids.sort();
    let mut procs = procs;
    procs.sort();
    assert_eq!(
        pids, procs,
        "every running process is a known instance: no orphan, no duplicate"
    );
    let o = baton.cli(&["history", "web", "--json"]);
    let h: Vec<baton_server::views::DeploymentView> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(h[0].phase, "succeeded");
    assert!(
        baton.log().contains("re-adopted"),
        "the restart re-adopted live instances"
    );
}
