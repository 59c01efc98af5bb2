//! The host runtime's containers against the real engine, as an agent runs them: a release's
//! image loaded from its artifact (and refused if it is not the recorded one), one container
//! however many runs race, re-adopted after the agent dies with its orphans removed, stopped
//! and removed. Fails (never skips) when no Docker engine is reachable.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::Duration;

use baton_core::model::{IMAGE_ARCHIVE, IMAGE_MANIFEST};

use super::*;
use crate::docker::testee::testee_image;
use crate::docker::testing::{OwnerGuard, docker};
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

fn reply(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect((ADDRESS, port)).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_start_once_outlive_the_agent_and_orphans_go() {
    let docker = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let image = testee_image(&docker, dir.path()).await;
    // Dropped before the image: every container of the host's owner goes, even on a panic.
    let owner = OwnerGuard::new(&docker, "host");
    std::fs::create_dir_all(dir.path().join("host")).unwrap();
    std::fs::write(dir.path().join("host/owner"), owner.owner()).unwrap();
    let release = artifact(&docker, &dir.path().join("release"), image.id(), image.id()).await;
    let wrong = "sha256:".to_string() + &"0".repeat(64);
    let forged = artifact(&docker, &dir.path().join("forged"), image.id(), &wrong).await;
    // Not in the engine: each start must load it from the artifact.
    docker.remove_image(image.tag()).await.unwrap();
    docker.remove_image(image.id()).await.unwrap();

    let data = dir.path().join("host");
    let (host, _events) = HostRuntime::new(ADDRESS, &data);
    let error = host.run(&spec(2), &forged).await.unwrap_err().to_string();
    assert!(error.contains(&format!("not the image {wrong}")), "{error}");
    // Two runs of one instance at once: one container, one answer.
    let web1 = spec(1);
    let (a, b) = tokio::join!(host.run(&web1, &release), host.run(&web1, &release));
    let first = a.unwrap();
    assert_eq!(b.unwrap(), first);
    assert!(docker.has_image(image.id()).await.unwrap());
    let owned = list_owned(&docker, owner.owner()).await.unwrap();
    assert_eq!(owned.len(), 1, "{owned:?}");
    let container = owned[0].id.clone();
    let answer = eventually("the container to answer", || reply(first.port)).await;
    assert_eq!(answer, "hello from web-1\n");

    // The agent dies (its table with it); meanwhile a container of its owner appears that
    // no record wants (a crash between a start and its record).
    drop(host);
    let orphan = ContainerSpec {
        image: image.id().into(),
        owner: owner.owner().into(),
        instance: "web-9".into(),
        argv: Some(vec!["/testee".into(), "ignore-term".into()]),
        log_path: data.join("orphan.log"),
        ..ContainerSpec::default()
    };
    ContainerHandle::start(&docker, &orphan).await.unwrap();

    let (again, _events) = HostRuntime::new(ADDRESS, &data);
    assert_eq!(again.adopt().await, Vec::new());
    assert_eq!(again.running(), vec![first.clone()], "the same run");
    let owned = list_owned(&docker, owner.owner()).await.unwrap();
    let ids: Vec<&str> = owned.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [container.as_str()], "adopted, and the orphan removed");
    // A repeated run answers with the adopted container.
    assert_eq!(again.run(&spec(1), &release).await.unwrap(), first);

    let outcome = within("stop", again.stop("web-1", Duration::from_secs(20))).await;
    assert!(matches!(outcome, StopOutcome::Exited(_)), "{outcome:?}");
    assert!(list_owned(&docker, owner.owner()).await.unwrap().is_empty());
    assert!(again.running().is_empty());
    assert!(record::read_all(&again.records()).is_empty());
    let log = std::fs::read_to_string(again.log_path("web", "web-1")).unwrap();
    assert!(log.contains("got SIGTERM"), "{log}");
}
