//! The host runtime's containers against the real engine, as an agent runs them: a release's
//! image loaded from its artifact (and refused if it is not the recorded one), one container
//! however many runs race, re-adopted after the agent dies with its orphans removed (also
//! when the engine answers only later), stopped and removed. Fails (never skips) when no
//! Docker engine is reachable.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::Duration;

use baton_core::model::{IMAGE_ARCHIVE, IMAGE_MANIFEST};

use super::*;
use crate::docker::testee::testee_image;
use crate::docker::testing::{OwnerGuard, TestImage, docker};
use crate::docker::{ContainerHandle, ContainerSpec, Docker, list_owned};
use crate::process::test_support::{eventually, within};

/// The testee listens on 127.0.0.1 only.
const ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn spec(n: u32) -> RunSpec {
    RunSpec {
        instance: format!("web-{n}"),
        app: "web".into(),
        release: "1.0.0".into(),
        digest: "sha256:test".into(),
        // The image's own `CMD` (`/testee serve`).
        command: Vec::new(),
        env: BTreeMap::new(),
        driver: Driver::Docker,
        read_only: true,
    }
}

/// A release artifact of image `id`: its `docker save` archive and `baton-image.json`.
async fn artifact(docker: &Docker, dir: &Path, id: &str, recorded: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    docker
        .save_image(id, &dir.join(IMAGE_ARCHIVE))
        .await
        .unwrap();
    let manifest = serde_json::json!({ "id": recorded, "reference": "testee:1.0.0" });
    std::fs::write(dir.join(IMAGE_MANIFEST), manifest.to_string()).unwrap();
    dir.to_path_buf()
}

/// One test's engine, host directory (with the owner id of an [`OwnerGuard`], so every
/// container the runtime makes goes with the test), image and release artifact. Fields drop
/// in order: containers first, then the image they use, then the directory.
struct Setup {
    owner: OwnerGuard,
    image: TestImage,
    docker: Docker,
    data: PathBuf,
    release: PathBuf,
    dir: tempfile::TempDir,
}

/// The testee's image, saved into a release artifact and then removed from the engine.
async fn setup() -> Setup {
    let docker = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let image = testee_image(&docker, dir.path()).await;
    let owner = OwnerGuard::new(&docker, "host");
    let data = dir.path().join("host");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("owner"), owner.owner()).unwrap();
    let release = artifact(&docker, &dir.path().join("release"), image.id(), image.id()).await;
    Setup {
        owner,
        image,
        docker,
        data,
        release,
        dir,
    }
}

impl Setup {
    async fn owned(&self) -> Vec<String> {
        let owned = list_owned(&self.docker, self.owner.owner()).await.unwrap();
        owned.into_iter().map(|c| c.id).collect()
    }
}

fn reply(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect((ADDRESS, port)).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_start_once_outlive_the_agent_and_orphans_go() {
    let t = setup().await;
    let wrong = "sha256:".to_string() + &"0".repeat(64);
    let forged = artifact(
        &t.docker,
        &t.dir.path().join("forged"),
        t.image.id(),
        &wrong,
    )
    .await;
    // Not in the engine: each start must load it from the artifact.
    t.docker.remove_image(t.image.tag()).await.unwrap();
    t.docker.remove_image(t.image.id()).await.unwrap();

    let (host, _events) = HostRuntime::new(ADDRESS, &t.data);
    let error = host.run(&spec(2), &forged).await.unwrap_err().to_string();
    assert!(error.contains(&format!("not the image {wrong}")), "{error}");
    // Two runs of one instance at once: one container, one answer.
    let web1 = spec(1);
    let (a, b) = tokio::join!(host.run(&web1, &t.release), host.run(&web1, &t.release));
    let first = a.unwrap();
    assert_eq!(b.unwrap(), first);
    assert!(t.docker.has_image(t.image.id()).await.unwrap());
    let container = t.owned().await;
    assert_eq!(container.len(), 1, "{container:?}");
    let answer = eventually("the container to answer", || reply(first.port)).await;
    assert_eq!(answer, "hello from web-1\n");

    // The agent dies (its table with it); meanwhile a container of its owner appears that
    // no record wants (a crash between a start and its record).
    drop(host);
    let orphan = ContainerSpec {
        image: t.image.id().into(),
        owner: t.owner.owner().into(),
        instance: "web-9".into(),
        argv: Some(vec!["/testee".into(), "ignore-term".into()]),
        log_path: t.data.join("orphan.log"),
        ..ContainerSpec::default()
    };
    ContainerHandle::start(&t.docker, &orphan).await.unwrap();

    let (again, _events) = HostRuntime::new(ADDRESS, &t.data);
    assert_eq!(again.adopt().await, Vec::new());
    assert_eq!(again.running(), vec![first.clone()], "the same run");
    assert_eq!(
        t.owned().await,
        container,
        "adopted, and the orphan removed"
    );
    // A repeated run answers with the adopted container.
    assert_eq!(again.run(&spec(1), &t.release).await.unwrap(), first);

    let outcome = within("stop", again.stop("web-1", Duration::from_secs(20))).await;
    assert!(matches!(outcome, StopOutcome::Exited(_)), "{outcome:?}");
    assert!(t.owned().await.is_empty());
    assert!(again.running().is_empty());
    assert!(record::read_all(&again.records()).is_empty());
    let log = std::fs::read_to_string(again.log_path("web", "web-1")).unwrap();
    assert!(log.contains("got SIGTERM"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_wait_for_an_engine_that_does_not_answer_and_no_stop_is_lost() {
    let t = setup().await;
    let (host, _events) = HostRuntime::new(ADDRESS, &t.data);
    let kept = host.run(&spec(1), &t.release).await.unwrap();
    host.run(&spec(2), &t.release).await.unwrap();
    let both = t.owned().await;
    assert_eq!(both.len(), 2, "{both:?}");
    drop(host);

    // The agent starts again while the engine does not answer: nothing is adopted, nothing
    // forgotten, and a start says why it cannot.
    let (again, _events) = HostRuntime::new(ADDRESS, &t.data);
    *again.socket.lock().unwrap() = Some(t.dir.path().join("no-docker.sock"));
    assert_eq!(again.adopt().await, Vec::new());
    assert!(again.running().is_empty());
    let error = again.run(&spec(1), &t.release).await.unwrap_err();
    assert!(
        error.to_string().contains("cannot reach the Docker engine"),
        "{error}"
    );
    // The controller stops web-2 meanwhile: it must not come back when the engine does.
    let outcome = again.stop("web-2", Duration::from_secs(20)).await;
    assert_eq!(outcome, StopOutcome::AlreadyGone);

    // The engine answers: the next run adopts web-1's container (the same run), and web-2's
    // goes as an orphan.
    *again.socket.lock().unwrap() = None;
    assert_eq!(again.run(&spec(1), &t.release).await.unwrap(), kept);
    assert_eq!(again.running(), vec![kept.clone()]);
    let left = t.owned().await;
    assert!(
        left.len() == 1 && both.contains(&left[0]),
        "{left:?} of {both:?}"
    );
    let answer = eventually("the adopted container to answer", || reply(kept.port)).await;
    assert_eq!(answer, "hello from web-1\n");
    let outcome = within("stop", again.stop("web-1", Duration::from_secs(20))).await;
    assert!(matches!(outcome, StopOutcome::Exited(_)), "{outcome:?}");
    assert!(t.owned().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_exits_is_reported_once_and_removed() {
    let t = setup().await;
    let (host, mut events) = HostRuntime::new(ADDRESS, &t.data);
    // Its root is read-only: the write fails and the testee exits 1.
    let mut crash = spec(3);
    crash.command = vec!["/testee".into(), "write".into(), "/x".into()];
    let run = host.run(&crash, &t.release).await.unwrap();
    let event = within("the exit", events.recv()).await.unwrap();
    assert_eq!(
        event,
        HostEvent::Exited {
            instance: "web-3".into(),
            pid: run.pid,
            info: "exited with code 1".into(),
        }
    );
    assert!(host.running().is_empty());
    assert!(record::read_all(&host.records()).is_empty());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !t.owned().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the exited container is still there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(host.log_path("web", "web-3")).unwrap();
    assert!(log.contains("write failed"), "{log}");
}
