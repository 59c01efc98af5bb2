//! The host runtime against real processes on a real second address (127.0.0.2).

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::kill_pid_files;
use crate::process::test_support::{eventually, within};

const ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Kills every instance the test's runtime started, even when the test panics.
struct KillAll(PathBuf);

impl Drop for KillAll {
    fn drop(&mut self) {
        kill_pid_files(&self.0.join("run"));
    }
}

/// An instance that listens on `$HOST:$PORT` (so the test sees it took its host's address)
/// and writes what `{host}` and `{port}` rendered to.
fn spec(n: u32, script: &str) -> RunSpec {
    RunSpec {
        instance: format!("web-{n}"),
        app: "web".into(),
        release: "1.0.0".into(),
        digest: "sha256:test".into(),
        command: vec![
            "python3".into(),
            "-c".into(),
            script.into(),
            "{host}:{port}".into(),
        ],
        env: [("GREETING".to_string(), "hi".to_string())].into(),
        driver: Driver::Process,
        read_only: false,
    }
}

const LISTEN: &str = "import os, socket, sys, time\n\
s = socket.socket(); s.bind((os.environ['HOST'], int(os.environ['PORT']))); s.listen()\n\
assert sys.argv[1] == os.environ['HOST'] + ':' + os.environ['PORT'], sys.argv\n\
assert os.environ['GREETING'] == 'hi' and os.environ['BATON_INSTANCE'] == 'web-1'\n\
while True: s.accept()[0].close()";

fn reachable(port: u16) -> bool {
    TcpStream::connect_timeout(&(ADDRESS, port).into(), Duration::from_secs(1)).is_ok()
}

fn setup(
    dir: &Path,
) -> (
    Arc<HostRuntime>,
    mpsc::UnboundedReceiver<HostEvent>,
    KillAll,
) {
    let (host, events) = HostRuntime::new(ADDRESS, dir);
    (host, events, KillAll(dir.to_path_buf()))
}

#[tokio::test]
async fn runs_on_the_hosts_address_once_however_often_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _events, _kill) = setup(dir.path());
    let first = host.run(&spec(1, LISTEN), dir.path()).await.unwrap();
    eventually("the instance to listen on 127.0.0.2", || {
        reachable(first.port).then_some(())
    })
    .await;
    let again = host.run(&spec(1, LISTEN), dir.path()).await.unwrap();
    assert_eq!(
        again, first,
        "a repeated start must not start a second process"
    );
    assert_eq!(host.running(), vec![first.clone()]);
    let outcome = within("stop", host.stop("web-1", Duration::from_secs(5))).await;
    assert!(matches!(outcome, StopOutcome::Exited(_)), "{outcome:?}");
    assert!(!reachable(first.port));
    assert!(host.running().is_empty());
    let twice = within("stop again", host.stop("web-1", Duration::from_secs(5))).await;
    assert_eq!(twice, StopOutcome::AlreadyGone);
}

#[tokio::test]
async fn a_crash_is_reported_once_and_the_instance_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut events, _kill) = setup(dir.path());
    let run = host
        .run(&spec(2, "import sys; sys.exit(3)"), dir.path())
        .await
        .unwrap();
    let event = within("the exit", events.recv()).await.unwrap();
    assert_eq!(
        event,
        HostEvent::Exited {
            instance: "web-2".into(),
            pid: run.pid,
            info: "exited with code 3".into(),
        }
    );
    assert!(host.running().is_empty());
    assert!(record::read_all(&host.records()).is_empty());
}

#[tokio::test]
async fn a_restarted_agent_re_adopts_its_instances_with_their_ports() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _events, _kill) = setup(dir.path());
    let running = host.run(&spec(1, LISTEN), dir.path()).await.unwrap();
    // Ends once the test creates `gone` in its working directory: after the agent died.
    let until_gone = "import os, time\nwhile not os.path.exists('gone'): time.sleep(0.01)";
    let dead = host.run(&spec(2, until_gone), dir.path()).await.unwrap();
    eventually("the instance to listen", || {
        reachable(running.port).then_some(())
    })
    .await;
    // The agent dies: its table is gone, its processes are not.
    drop(host);
    std::fs::write(dir.path().join("gone"), "").unwrap();
    eventually("the short-lived instance to end", || {
        (!crate::process::test_support::alive(dead.pid)).then_some(())
    })
    .await;
    let (again, _events) = HostRuntime::new(ADDRESS, dir.path());
    let gone = again.adopt().await;
    assert_eq!(gone, vec![dead]);
    assert_eq!(again.running(), vec![running.clone()]);
    assert!(reachable(running.port));
    let outcome = within("stop", again.stop("web-1", Duration::from_secs(5))).await;
    assert!(!matches!(outcome, StopOutcome::AlreadyGone), "{outcome:?}");
}
