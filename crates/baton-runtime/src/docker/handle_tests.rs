//! The docker driver against the real engine: start, reach, stop, kill, adopt, logs, read-only.
//! These tests fail (never skip) when no Docker engine is reachable.

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;

use super::*;
use crate::docker::testee::testee_image;
use crate::docker::testing::{OwnerGuard, TestImage, docker};
use crate::docker::{OwnedContainer, list_owned};
use crate::process::free_port;
use crate::process::test_support::{eventually, wait_for_line, within};

/// How long a test waits for the testee to answer.
const DEADLINE: Duration = Duration::from_secs(20);
/// Generous: the engine may be slow to deliver a signal on a loaded machine.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// One test's engine, image and owner. Fields drop in order: containers first, then the image
/// they use, then the directory with the logs.
struct Setup {
    owner: OwnerGuard,
    image: TestImage,
    docker: Docker,
    dir: TempDir,
}

async fn setup() -> Setup {
    let docker = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let image = testee_image(&docker, dir.path()).await;
    Setup {
        owner: OwnerGuard::new(&docker, "t"),
        image,
        docker,
        dir,
    }
}

impl Setup {
    fn spec(&self, instance: &str, argv: Option<&[&str]>, port: u16) -> ContainerSpec {
        ContainerSpec {
            image: self.image.id().into(),
            owner: self.owner.owner().into(),
            instance: instance.into(),
            app: "web".into(),
            release: "1.0.0".into(),
            env: [
                ("PORT", port.to_string()),
                ("BATON_INSTANCE", instance.into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            argv: argv.map(|a| a.iter().map(|s| s.to_string()).collect()),
            read_only: false,
            log_path: self.dir.path().join(format!("log/{instance}.log")),
        }
    }

    async fn owned(&self) -> Vec<OwnedContainer> {
        list_owned(&self.docker, self.owner.owner()).await.unwrap()
    }
}

/// What the testee answers on 127.0.0.1:`port`, once it answers.
async fn reply(port: u16) -> String {
    let mut last_error = None;
    let answer = tokio::time::timeout(DEADLINE, async {
        loop {
            let answer = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).and_then(|mut stream| {
                let mut text = String::new();
                stream.read_to_string(&mut text).map(|_| text)
            });
            match answer {
                Ok(text) => return text,
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    answer.await.unwrap_or_else(|_| {
        panic!("timed out waiting for an answer on 127.0.0.1:{port}: {last_error:?}")
    })
}

fn count(path: &Path, line: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter(|l| *l == line).count()
}

#[tokio::test]
async fn serves_on_the_host_network_and_stops_on_sigterm() {
    let t = setup().await;
    let port = free_port().unwrap();
    let spec = t.spec("web-1", None, port);
    let handle = ContainerHandle::start(&t.docker, &spec).await.unwrap();
    assert_eq!(handle.instance(), "web-1");

    assert_eq!(reply(port).await, "hello from web-1\n");
    wait_for_line(&spec.log_path, &format!("listening on 127.0.0.1:{port}")).await;
    wait_for_line(&spec.log_path, "a line on stderr").await;
    assert_eq!(handle.exit(), None);

    let outcome = within("stop", handle.stop(STOP_TIMEOUT)).await.unwrap();
    let clean = ExitInfo {
        code: Some(0),
        signal: None,
    };
    assert_eq!(outcome, StopOutcome::Exited(clean.clone()));
    assert_eq!(handle.exit(), Some(clean));
    assert_eq!(
        count(&spec.log_path, "got SIGTERM"),
        1,
        "the last lines are kept"
    );
    assert_eq!(t.owned().await, [], "stop removes the container");
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
}

#[tokio::test]
async fn a_container_ignoring_sigterm_is_killed_after_the_timeout() {
    let t = setup().await;
    let spec = t.spec("stubborn", Some(&["/testee", "ignore-term"]), 0);
    let handle = ContainerHandle::start(&t.docker, &spec).await.unwrap();
    wait_for_line(&spec.log_path, "ignoring SIGTERM").await;

    let outcome = within("stop", handle.stop(Duration::from_millis(300))).await;
    assert_eq!(outcome.unwrap(), StopOutcome::Killed);
    let killed = ExitInfo {
        code: Some(128 + 9),
        signal: None,
    };
    assert_eq!(handle.exit(), Some(killed));
    assert_eq!(t.owned().await, []);
}

#[tokio::test]
async fn adopt_after_dropping_every_handle_finds_the_same_container() {
    let t = setup().await;
    let port = free_port().unwrap();
    let spec = t.spec("web-2", None, port);
    let first = ContainerHandle::start(&t.docker, &spec).await.unwrap();
    let id = first.id().to_string();
    let pid = first.pid();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists() && pid > 1,
        "the container's main process {pid} is a process of this host"
    );
    assert_eq!(reply(port).await, "hello from web-2\n");
    wait_for_line(&spec.log_path, "served").await;
    drop(first);

    // Printed while nobody follows the container: the adopter must copy it, once.
    assert_eq!(reply(port).await, "hello from web-2\n");
    let adopted = ContainerHandle::adopt(&t.docker, t.owner.owner(), "web-2")
        .await
        .unwrap()
        .expect("the running container is adopted");
    assert_eq!(adopted.id(), id);
    assert_eq!(adopted.pid(), pid, "the same run of the instance");
    assert_eq!(adopted.exit(), None);
    let owned = OwnedContainer {
        instance: "web-2".into(),
        id: id.clone(),
        running: true,
    };
    assert_eq!(t.owned().await, [owned], "one container, not a duplicate");
    assert_eq!(reply(port).await, "hello from web-2\n");
    eventually("three `served` lines", || {
        (count(&spec.log_path, "served") == 3).then_some(())
    })
    .await;

    let other_owner = ContainerHandle::adopt(&t.docker, "someone-else", "web-2").await;
    assert!(
        other_owner.unwrap().is_none(),
        "never another owner's container"
    );
    let other_instance = ContainerHandle::adopt(&t.docker, t.owner.owner(), "web-3").await;
    assert!(other_instance.unwrap().is_none());
    let again = ContainerHandle::start(&t.docker, &spec).await.unwrap_err();
    assert!(
        matches!(&again, DockerError::AlreadyRunning { container, .. } if *container == id),
        "{again}"
    );

    let outcome = within("stop", adopted.stop(STOP_TIMEOUT)).await.unwrap();
    assert!(matches!(outcome, StopOutcome::Exited(_)), "{outcome:?}");
    let listening = format!("listening on 127.0.0.1:{port}");
    for (line, times) in [(listening.as_str(), 1), ("served", 3), ("got SIGTERM", 1)] {
        assert_eq!(count(&spec.log_path, line), times, "{line:?} in the log");
    }
    assert_eq!(t.owned().await, []);
}

#[tokio::test]
async fn read_only_root_filesystem_refuses_writes() {
    let t = setup().await;
    let mut spec = t.spec("writer", Some(&["/testee", "write", "/probe"]), 0);
    spec.read_only = true;
    let handle = ContainerHandle::start(&t.docker, &spec).await.unwrap();
    let exit = within("the writer to exit", handle.exited()).await;
    assert_eq!(exit.code, Some(1));
    wait_for_line(&spec.log_path, "write failed: Read-only file system").await;
    let leftover = OwnedContainer {
        instance: "writer".into(),
        id: handle.id().into(),
        running: false,
    };
    assert_eq!(
        t.owned().await,
        [leftover],
        "an exited container stays until stopped"
    );

    // The stopped leftover of the same instance is replaced, and writes now work.
    spec.read_only = false;
    let handle = ContainerHandle::start(&t.docker, &spec).await.unwrap();
    let exit = within("the writer to exit", handle.exited()).await;
    assert_eq!(exit.code, Some(0));
    wait_for_line(&spec.log_path, "write ok").await;
    assert_eq!(t.owned().await.len(), 1);
    let outcome = handle.stop(STOP_TIMEOUT).await.unwrap();
    assert_eq!(outcome, StopOutcome::AlreadyGone);
    assert_eq!(t.owned().await, []);
}

#[tokio::test]
async fn a_missing_image_is_named_in_the_error() {
    let t = setup().await;
    let mut spec = t.spec("ghost", None, 0);
    spec.image = format!("sha256:{}", "0".repeat(64));
    let error = ContainerHandle::start(&t.docker, &spec).await.unwrap_err();
    assert!(
        matches!(error, DockerError::ImageNotFound { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&spec.image), "{error}");
    assert_eq!(t.owned().await, []);
}
