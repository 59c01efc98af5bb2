//! `baton restart` and `baton stop --keep-instances`: the new process takes the listeners and
//! re-adopts the instances, under keep-alive and new-connection load, with no request lost.

use std::time::Duration;

use crate::deploys::{assert_no_failures, load};
use crate::harness::{Baton, THREE_WEB, alive, processes_under, text, wait_until};

/// The pids of the app's instances, sorted.
fn instance_pids(baton: &Baton) -> Vec<u32> {
    let mut pids: Vec<u32> = baton
        .status("web")
        .instances
        .iter()
        .filter_map(|i| i.pid)
        .collect();
    pids.sort_unstable();
    pids
}

pub(crate) async fn restart_ok(baton: &Baton) -> u32 {
    let before = baton.serving_pid().expect("DATA/baton.pid");
    let o = baton.cli_async(&["restart"]).await;
    assert!(
        o.status.success(),
        "baton restart: {}\nlog:\n{}",
        text(&o),
        baton.log()
    );
    let after = baton.serving_pid().expect("DATA/baton.pid");
    assert_ne!(before, after, "a new process serves: {}", text(&o));
    assert!(alive(after));
    // The old one finishes its requests, then exits without stopping the instances.
    assert!(
        wait_until(Duration::from_secs(30), || !alive(before)),
        "the old baton (pid {before}) did not exit\n{}",
        baton.log()
    );
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_restarts_under_load_lose_no_request_and_keep_every_instance() {
    let baton = Baton::start(THREE_WEB);
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &["--startup-ms", "1000"]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let pids = instance_pids(&baton);
    assert_eq!(pids.len(), 3, "{:?}", baton.status("web"));

    let load = load(&baton);
    for _ in 0..10 {
        restart_ok(&baton).await;
    }
    assert_eq!(
        instance_pids(&baton),
        pids,
        "instances are re-adopted, never restarted"
    );
    assert_eq!(processes_under(baton.dir.path()).len(), 3, "no duplicate");

    // A deployment in progress continues in the new process.
    let o = baton.cli_async(&["deploy", "web", "1.1.0"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let mid = wait_until(Duration::from_secs(30), || {
        baton
            .status("web")
            .deployment
            .as_ref()
            .is_some_and(|d| d.step >= 1)
    });
    assert!(mid, "the rollout never started: {:?}", baton.status("web"));
    restart_ok(&baton).await;
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
    let report = load.stop().await;
    assert_no_failures(&report, "10 restarts and a rollout across a restart");
    assert!(baton.log().contains("re-adopted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_cannot_start_leaves_the_old_baton_serving() {
    let baton = Baton::start_from_copy(THREE_WEB);
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let pid = baton.serving_pid().unwrap();
    let load = load(&baton);

    // An invalid config: the new process refuses, and the command says why. (The CLI finds
    // the API through the environment: it would stop at the config itself.)
    let good = std::fs::read_to_string(&baton.config).unwrap();
    std::fs::write(&baton.config, format!("{good}\nthis is not toml\n")).unwrap();
    let token = std::fs::read_to_string(baton.data_dir().join("token")).unwrap();
    let o = tokio::task::spawn_blocking({
        let api = baton.api.to_string();
        move || {
            std::process::Command::new(crate::harness::BATON)
                .arg("restart")
                .env("BATON_API", api)
                .env("BATON_TOKEN", token.trim())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("keeps serving") && err.contains("baton.toml"),
        "{}",
        text(&o)
    );
    std::fs::write(&baton.config, &good).unwrap();
    assert_eq!(baton.serving_pid(), Some(pid));

    // A broken binary (an upgrade gone wrong).
    let bin = baton.dir.path().join("bin").join("baton");
    let next = bin.with_extension("new");
    std::fs::write(&next, "#!/bin/sh\necho 'broken build' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&next, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&next, &bin).unwrap();
    let o = baton.cli_async(&["restart"]).await;
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("exit status: 3") && err.contains("keeps serving"),
        "{}",
        text(&o)
    );
    assert_eq!(baton.serving_pid(), Some(pid));
    assert!(baton.log().contains("broken build"));

    // The old baton still runs its controller: a deployment goes through.
    baton.deploy_ok("web", "1.1.0", &[]).await;

    // The binary fixed: the restart goes through.
    std::fs::copy(crate::harness::BATON, &next).unwrap();
    std::fs::rename(&next, &bin).unwrap();
    restart_ok(&baton).await;
    let report = load.stop().await;
    assert_no_failures(&report, "failed restarts, a deploy and a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_keep_instances_then_up_re_adopts_the_same_processes() {
    let mut baton = Baton::start(THREE_WEB);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let pids = instance_pids(&baton);
    let pid = baton.serving_pid().unwrap();

    let o = baton.cli_async(&["stop", "--keep-instances"]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(!alive(pid), "baton stop returns once the process exited");
    assert_eq!(baton.serving_pid(), None, "DATA/baton.pid is removed");
    let mut alive_now = processes_under(baton.dir.path());
    alive_now.sort_unstable();
    assert_eq!(alive_now, pids, "the instances keep running");

    baton.up();
    let readopted = wait_until(Duration::from_secs(30), || {
        let s = baton.status("web");
        s.instances.len() == 3 && s.instances.iter().all(|i| i.state == "healthy")
    });
    assert!(readopted, "{:?}", baton.status("web"));
    assert_eq!(instance_pids(&baton), pids, "re-adopted, not restarted");

    // A full stop stops them.
    let o = baton.cli_async(&["stop"]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        wait_until(Duration::from_secs(20), || processes_under(
            baton.dir.path()
        )
        .is_empty()),
        "baton stop stops the instances"
    );
}

/// An HTTP answer (any status) from `addr`: the status line.
fn status_line(addr: std::net::SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out.lines().next().unwrap_or_default().to_string())
}

/// A restart hands over the listeners the process has now, not only those it started with:
/// an app a reload added keeps its socket (the new process could not bind it while the old
/// one holds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_hands_over_the_listeners_a_reload_added() {
    let baton = Baton::start(THREE_WEB);
    let port = crate::harness::free_port();
    let config = std::fs::read_to_string(&baton.config).unwrap();
    let added = format!(
        "{config}\n[apps.api]\nlisten = \"127.0.0.1:{port}\"\ncommand = [\"{{artifact}}/baton-demo\", \"--port\", \"{{port}}\"]\n"
    );
    std::fs::write(&baton.config, added).unwrap();
    let o = baton.cli_async(&["reload"]).await;
    assert!(o.status.success(), "baton reload: {}", text(&o));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // No release yet: the new app's listener answers 503.
    let before = status_line(addr);
    assert!(
        before.as_deref().is_ok_and(|l| l.contains(" 503")),
        "{before:?}"
    );
    let old = restart_ok(&baton).await;
    assert!(alive(old));
    let after = status_line(addr);
    assert!(
        after.as_deref().is_ok_and(|l| l.contains(" 503")),
        "the added app's listener after the restart: {after:?}\n{}",
        baton.log()
    );
}

/// A restart never moves the data directory: with `data_dir` changed in the file, the new
/// process refuses before taking anything over, and the running baton keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_to_another_data_dir_is_refused() {
    let baton = Baton::start(THREE_WEB);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let pids = instance_pids(&baton);
    let before = baton.serving_pid().expect("DATA/baton.pid");
    let elsewhere = baton.dir.path().join("elsewhere");
    let config = std::fs::read_to_string(&baton.config).unwrap();
    std::fs::write(
        &baton.config,
        format!("data_dir = \"{}\"\n{config}", elsewhere.display()),
    )
    .unwrap();
    // The CLI would look for the token in the new directory: the signal asks directly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before as i32),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
    let refused = wait_until(Duration::from_secs(30), || {
        baton.log().contains("data_dir changed")
    });
    assert!(refused, "{}", baton.log());
    std::fs::write(&baton.config, config).unwrap();
    assert_eq!(baton.serving_pid(), Some(before));
    assert!(alive(before));
    let answered = wait_until(Duration::from_secs(10), || {
        status_line(baton.web()).is_ok_and(|l| l.contains(" 200"))
    });
    assert!(answered, "{:?}", status_line(baton.web()));
    assert_eq!(instance_pids(&baton), pids);
}
