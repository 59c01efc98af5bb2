//! A docker app on two agents' hosts (127.0.0.2 and 127.0.0.3, a real `baton up`, real TLS, the
//! engine of this machine as each host's): the agents fetch the image releases like any
//! artifact and load them into their engine, run one container per instance with host
//! networking on their own address, and a rolling deploy through the edge loses no request.
//! An agent killed with SIGKILL and started again re-adopts the same containers (no duplicate,
//! and its owner's containers that no record wants are removed), without a failed request. The
//! controller runs no container itself. Everything is removed at the end, even on a panic
//! (docs/design-notes.md, "Many hosts and containers").

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use baton_runtime::docker::testing::{self, LabelPrefixGuard, LabelledContainer, TestImage};
use baton_runtime::docker::{
    ContainerHandle, ContainerSpec, Docker, INSTANCE_LABEL, LOG_LABEL, OWNER_LABEL, RELEASE_LABEL,
    container_instance, list_owned,
};

use crate::containers::demo_image;
use crate::deploys::{assert_no_failures, assert_only, load};
use crate::fleet::{spread, two_and_two};
use crate::harness::{Baton, free_port, text, wait_until_async};
use crate::hosts::{Agents, wait_state};

/// Two hosts, one docker app of four instances; `command` is left out: the image's `CMD`
/// runs. The heartbeat timeout outlasts an agent's restart, so the restart loses nothing.
const DOCKER_FLEET: &str = r#"
[api]
listen = "127.0.0.1:@API@"

[cluster]
listen = "127.0.0.1:@CLUSTER@"
heartbeat_timeout = "60s"

[hosts.web-1]
address = "127.0.0.2"

[hosts.web-2]
address = "127.0.0.3"

[apps.web]
listen = "127.0.0.1:@WEB@"
hosts = ["web-1", "web-2"]
instances = 4
driver = "docker"
read_only = true

[apps.web.health]
interval = "200ms"
timeout = "2s"
healthy_threshold = 2
unhealthy_threshold = 2
deadline = "90s"

[apps.web.drain]
timeout = "10s"
stop_timeout = "5s"
"#;

/// How long containers may take to start, load their image, turn healthy or be re-adopted.
const SETTLE: Duration = Duration::from_secs(90);

const HOSTS: [(&str, &str); 2] = [("web-1", "127.0.0.2"), ("web-2", "127.0.0.3")];

/// The controller, its agents and the demo's images. Fields drop in order: the agents and
/// Baton stop, then every container whose log lies under the test's directory (the agents')
/// is removed, then the images.
struct Fleet {
    agents: Agents,
    baton: Baton,
    docker: Docker,
    _containers: LabelPrefixGuard,
    images: BTreeMap<String, TestImage>,
}

impl Fleet {
    async fn start(versions: &[&str]) -> Fleet {
        let baton = Baton::start(DOCKER_FLEET);
        let docker = testing::docker().await;
        let containers = LabelPrefixGuard::new(&docker, LOG_LABEL, &prefix(&baton));
        let agents = Agents::join_all(&baton, &HOSTS);
        let mut images = BTreeMap::new();
        for version in versions {
            images.insert(version.to_string(), demo_image(&docker, version).await);
        }
        Fleet {
            agents,
            baton,
            docker,
            _containers: containers,
            images,
        }
    }

    /// `baton release create web VERSION --image TAG`; returns the image ID.
    async fn release(&self, version: &str) -> String {
        let image = &self.images[version];
        let args = ["release", "create", "web", version, "--image", image.tag()];
        let o = self.baton.cli_async(&args).await;
        assert!(o.status.success(), "release create --image: {}", text(&o));
        image.id().to_string()
    }

    /// The owner id in an agent's data directory.
    fn owner(&self, host: &str) -> String {
        let path = self.agents.dir.join(host).join("owner");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Every container under the test's directory (the agents'), running or not.
    async fn containers(&self) -> Vec<LabelledContainer> {
        let prefix = prefix(&self.baton);
        let all = testing::labelled(&self.docker, LOG_LABEL)
            .await
            .expect("the engine lists containers");
        all.into_iter()
            .filter(|c| c.label(LOG_LABEL).starts_with(&prefix))
            .collect()
    }

    /// Waits until `version` serves alone on four healthy instances, two per host, and the
    /// containers are exactly those instances, running, from `image`, each labelled with the
    /// owner of its host's agent. Returns them by instance.
    async fn assert_serving(
        &self,
        version: &str,
        image: &str,
    ) -> BTreeMap<String, LabelledContainer> {
        let settled = wait_until_async(SETTLE, || async {
            let s = self.baton.status("web");
            let containers = self.containers().await;
            let ids: BTreeSet<String> = s
                .instances
                .iter()
                .map(|i| container_instance(&i.id))
                .collect();
            s.phase == "idle"
                && s.release.as_deref() == Some(version)
                && s.instances.len() == 4
                && s.instances
                    .iter()
                    .all(|i| i.release == version && i.state == "healthy" && i.in_split)
                && spread(&s, version) == two_and_two()
                && by_instance(&containers)
                    .keys()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    == ids
                && containers.len() == ids.len()
                && containers.iter().all(|c| c.running)
        })
        .await;
        let s = self.baton.status("web");
        let containers = self.containers().await;
        assert!(
            settled,
            "want {version} on 4 containers, 2 per host;\nstatus: {s:?}\ncontainers: {containers:?}\nlog:\n{}\nweb-1:\n{}\nweb-2:\n{}",
            self.baton.log(),
            self.agents.log("web-1"),
            self.agents.log("web-2"),
        );
        let containers = by_instance(&containers);
        for i in &s.instances {
            let c = &containers[&container_instance(&i.id)];
            assert_eq!(
                (
                    c.image_id.as_str(),
                    c.label(RELEASE_LABEL),
                    c.label(OWNER_LABEL)
                ),
                (image, version, self.owner(&i.host).as_str()),
                "{} on {} runs the release's image, labelled with its agent's owner: {c:?}",
                i.id,
                i.host
            );
            assert!(
                c.label(LOG_LABEL)
                    .starts_with(&format!("{}/", self.agents.dir.join(&i.host).display())),
                "its output goes to its agent's instance log: {c:?}"
            );
            let read_only = testing::read_only(&self.docker, &c.id).await.unwrap();
            assert!(read_only, "read_only = true on agents too: {c:?}");
        }
        containers
    }
}

fn by_instance(containers: &[LabelledContainer]) -> BTreeMap<String, LabelledContainer> {
    containers
        .iter()
        .map(|c| (c.label(INSTANCE_LABEL).to_string(), c.clone()))
        .collect()
}

fn prefix(baton: &Baton) -> String {
    format!("{}/", baton.dir.path().display())
}

fn ids(containers: &BTreeMap<String, LabelledContainer>) -> BTreeMap<String, String> {
    containers
        .iter()
        .map(|(instance, c)| (instance.clone(), c.id.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_on_agents_roll_under_load_and_survive_an_agent_restart() {
    let mut f = Fleet::start(&["1.0.0", "1.1.0"]).await;
    let old = f.release("1.0.0").await;
    let new = f.release("1.1.0").await;
    let tags: Vec<String> = f.images.values().map(|i| i.tag().to_string()).collect();
    // Gone from the engine: each host's agent loads them from the release it downloads.
    for (tag, id) in tags.iter().zip([&old, &new]) {
        f.docker.remove_image(tag).await.unwrap();
        f.docker.remove_image(id).await.unwrap();
    }

    f.baton.deploy_ok("web", "1.0.0", &[]).await;
    f.assert_serving("1.0.0", &old).await;
    assert!(f.docker.has_image(&old).await.unwrap());

    // Rolling 1.0.0 -> 1.1.0 under load through the edge proxy.
    let l = load(&f.baton);
    f.baton
        .deploy_ok("web", "1.1.0", &["--strategy", "rolling"])
        .await;
    let report = l.stop().await;
    assert_no_failures(&report, "rolling between images on agents");
    assert!(
        report.stats.by_version.contains_key("1.0.0")
            && report.stats.by_version.contains_key("1.1.0"),
        "both releases answered during the rollout: {:?}",
        report.stats.by_version
    );
    // The old containers were stopped and removed on their hosts: only the new ones are left.
    let before = f.assert_serving("1.1.0", &new).await;
    assert_only(&f.baton, "1.1.0").await;
    // The controller ran none of them: no container carries its own owner id.
    let controller = std::fs::read_to_string(f.baton.data_dir().join("owner")).unwrap();
    assert!(
        before
            .values()
            .all(|c| c.label(OWNER_LABEL) != controller.trim()),
        "{before:?}"
    );
    let pids = |b: &Baton| -> BTreeMap<String, Option<u32>> {
        b.status("web")
            .instances
            .iter()
            .map(|i| (i.id.clone(), i.pid))
            .collect()
    };
    let pids_before = pids(&f.baton);

    // kill -9 of web-1's agent under load: its containers keep serving. Meanwhile a container
    // of its owner appears that no run record wants (as a crash between a start and its
    // record leaves).
    let owner = f.owner("web-1");
    let l = load(&f.baton);
    f.agents.kill9("web-1");
    let orphan = ContainerSpec {
        image: new.clone(),
        owner: owner.clone(),
        instance: "web-99".into(),
        app: "web".into(),
        release: "1.1.0".into(),
        env: [
            ("HOST", "127.0.0.2".to_string()),
            ("PORT", free_port().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        log_path: f.agents.dir.join("web-1/logs/orphan.log"),
        ..ContainerSpec::default()
    };
    let orphan = ContainerHandle::start(&f.docker, &orphan).await.unwrap();
    let alive = f.containers().await;
    assert!(
        alive.iter().filter(|c| c.running).count() == 5,
        "the agent's containers outlive it: {alive:?}"
    );

    f.agents.start(&f.baton, "web-1", "127.0.0.2", None);
    wait_state(&f.baton, &f.agents, "web-1", "connected");
    let after = f.assert_serving("1.1.0", &new).await;
    let report = l.stop().await;
    assert_no_failures(&report, "an agent killed and restarted");
    assert_eq!(
        ids(&after),
        ids(&before),
        "the same containers serve the same instances: re-adopted, not started again"
    );
    assert_eq!(pids(&f.baton), pids_before, "the controller kept every run");
    // web-1's owner has exactly its two instances' containers: no duplicate, and the orphan
    // was removed.
    let owned = list_owned(&f.docker, &owner).await.unwrap();
    let mut owned_ids: Vec<&str> = owned.iter().map(|c| c.id.as_str()).collect();
    owned_ids.sort();
    let mut want: Vec<&str> = before
        .values()
        .filter(|c| c.label(OWNER_LABEL) == owner)
        .map(|c| c.id.as_str())
        .collect();
    want.sort();
    assert_eq!(want.len(), 2, "{before:?}");
    assert_eq!(
        owned_ids,
        want,
        "{owned:?}\nweb-1:\n{}",
        f.agents.log("web-1")
    );
    assert!(!owned.iter().any(|c| c.id == orphan.id()));
    assert!(
        f.agents
            .log("web-1")
            .contains("removing an orphaned container"),
        "{}",
        f.agents.log("web-1")
    );

    // Everything goes with the test: containers, images, processes.
    let prefix = prefix(&f.baton);
    let mut pids: Vec<u32> = f.agents.children.iter().map(|(_, c)| c.id()).collect();
    pids.push(f.baton.pid());
    let docker = f.docker.clone();
    drop(f);
    let left: Vec<LabelledContainer> = testing::labelled(&docker, LOG_LABEL)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.label(LOG_LABEL).starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "containers left behind: {left:?}");
    for (tag, id) in tags.iter().zip([&old, &new]) {
        assert!(!docker.has_image(tag).await.unwrap(), "{tag} left behind");
        assert!(!docker.has_image(id).await.unwrap(), "{id} left behind");
    }
    // Each was waited for: not even a zombie is left.
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} left behind"
        );
    }
}
