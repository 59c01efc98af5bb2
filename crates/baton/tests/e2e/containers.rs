//! Apps with `driver = "docker"`: releases made from images of the local engine with
//! `--image`, rolled under load with no failed request, promoted as the same image ID (loaded
//! from the release when the engine lacks it), and re-adopted as the same containers after
//! `baton up` is killed; `read_only` mounts their root read-only. The images are `FROM
//! scratch` and hold the `baton` binary as `/app/baton-demo` with its `/app/demo.toml`, so
//! nothing is pulled and each version is its own image.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use baton_demo::DemoOptions;
use baton_runtime::docker::testing::{
    self, ImageBuild, LabelPrefixGuard, LabelledContainer, TestImage,
};
use baton_runtime::docker::{
    Docker, INSTANCE_LABEL, LOG_LABEL, OWNER_LABEL, RELEASE_LABEL, list_owned,
};
use baton_server::views::AppStatus;

use crate::deploys::{assert_no_failures, assert_only, load};
use crate::harness::{BATON, Baton, text, wait_until, wait_until_async};

/// One docker app of three instances; `command` is left out: the image's `CMD` runs.
const DOCKER_WEB: &str = r#"
[api]
listen = "127.0.0.1:@API@"

[apps.web]
listen = "127.0.0.1:@WEB@"
instances = 3
driver = "docker"
env = { GREETING = "hello" }

[apps.web.health]
interval = "200ms"
timeout = "2s"
healthy_threshold = 2
unhealthy_threshold = 3
deadline = "60s"

[apps.web.drain]
timeout = "10s"
stop_timeout = "5s"
"#;

/// The docker app in staging (2 instances) and production (3), each with its own config.
const DOCKER_TWO_ENVS: &str = r#"
environments = ["staging", "production"]

[promotion]
soak = "1s"

[api]
listen = "127.0.0.1:@API@"

[apps.web]
instances = 2
driver = "docker"
read_only = true
env = { GREETING = "hello", DATABASE_URL = "sqlite://default.db" }

[apps.web.health]
interval = "200ms"
deadline = "60s"

[apps.web.environments.staging]
listen = "127.0.0.1:@OTHER@"
env = { DATABASE_URL = "sqlite://staging.db" }

[apps.web.environments.production]
listen = "127.0.0.1:@WEB@"
instances = 3
env = { DATABASE_URL = "sqlite://production.db" }
"#;

/// How long containers may take to start, turn healthy, drain or be re-adopted.
const SETTLE: Duration = Duration::from_secs(60);

/// A `baton up` with docker apps and the demo's images. Fields drop in order: Baton stops
/// first, then the containers it left are removed, then the images.
struct Scenario {
    baton: Baton,
    docker: Docker,
    /// The containers whose log is under the test's directory: this Baton's, whatever owner
    /// id it chose.
    _containers: LabelPrefixGuard,
    images: BTreeMap<String, TestImage>,
}

impl Scenario {
    /// Starts Baton on `template`, then builds one demo image per version.
    async fn start(template: &str, versions: &[&str]) -> Scenario {
        let baton = Baton::start(template);
        let docker = testing::docker().await;
        let containers = LabelPrefixGuard::new(&docker, LOG_LABEL, &prefix(&baton));
        let mut images = BTreeMap::new();
        for version in versions {
            images.insert(version.to_string(), demo_image(&docker, version).await);
        }
        Scenario {
            baton,
            docker,
            _containers: containers,
            images,
        }
    }

    /// `baton release create web VERSION --image TAG --json`: returns the image ID it
    /// recorded, which must be the built image's.
    async fn release(&self, version: &str) -> String {
        let image = &self.images[version];
        let o = self
            .baton
            .cli_async(&[
                "release",
                "create",
                "web",
                version,
                "--image",
                image.tag(),
                "--json",
            ])
            .await;
        assert!(o.status.success(), "release create --image: {}", text(&o));
        let created: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(created["created"], true, "{created}");
        assert_eq!(created["image"]["id"], image.id(), "{created}");
        assert_eq!(created["image"]["reference"], image.tag(), "{created}");
        image.id().to_string()
    }

    /// Every container of this Baton, running or not.
    async fn containers(&self) -> Vec<LabelledContainer> {
        let prefix = prefix(&self.baton);
        let all = testing::labelled(&self.docker, LOG_LABEL)
            .await
            .expect("the engine lists containers");
        all.into_iter()
            .filter(|c| c.label(LOG_LABEL).starts_with(&prefix))
            .collect()
    }

    /// Waits until each environment in `envs` serves `version` on exactly its wanted number
    /// of healthy instances and nothing else, and this Baton's containers are exactly those
    /// instances, running, from image `image`. Returns the containers.
    async fn assert_serving(
        &self,
        envs: &[&str],
        version: &str,
        image: &str,
    ) -> BTreeMap<String, LabelledContainer> {
        let settled = wait_until_async(SETTLE, || async {
            let statuses = self.statuses(envs);
            let containers = self.containers().await;
            let ids = instance_ids(&statuses);
            statuses.iter().all(|s| serves_only(s, version))
                && containers.len() == ids.len()
                && by_instance(&containers)
                    .keys()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    == ids
                && containers.iter().all(|c| c.running)
        })
        .await;
        let statuses = self.statuses(envs);
        let containers = self.containers().await;
        assert!(
            settled,
            "want {envs:?} to serve only {version} and one running container per instance;\n\
             status: {statuses:?}\ncontainers: {containers:?}\nlog:\n{}",
            self.baton.log()
        );
        let containers = by_instance(&containers);
        for (instance, c) in &containers {
            assert_eq!(
                (c.image_id.as_str(), c.label(RELEASE_LABEL)),
                (image, version),
                "instance {instance} runs the release's image ID: {c:?}"
            );
        }
        containers
    }

    fn statuses(&self, envs: &[&str]) -> Vec<AppStatus> {
        envs.iter()
            .map(|env| self.baton.status_env("web", env))
            .collect()
    }
}

/// Idle, `version` at 100 %, and exactly the wanted number of instances: healthy, of `version`.
fn serves_only(s: &AppStatus, version: &str) -> bool {
    s.phase == "idle"
        && s.release.as_deref() == Some(version)
        && s.instances.len() == s.instances_wanted as usize
        && s.instances
            .iter()
            .all(|i| i.release == version && i.state == "healthy" && i.in_split)
}

fn by_instance(containers: &[LabelledContainer]) -> BTreeMap<String, LabelledContainer> {
    containers
        .iter()
        .map(|c| (c.label(INSTANCE_LABEL).to_string(), c.clone()))
        .collect()
}

/// The instances of `statuses` as their containers' `baton.instance` labels name them:
/// `web@production-3` is `web.production-3`, as labels allow `[A-Za-z0-9_.-]` only.
fn instance_ids(statuses: &[AppStatus]) -> BTreeSet<String> {
    statuses
        .iter()
        .flat_map(|s| s.instances.iter().map(|i| i.id.replace('@', ".")))
        .collect()
}

/// Where this Baton's files are: instance logs, hence the `baton.log` of its containers.
fn prefix(baton: &Baton) -> String {
    format!("{}/", baton.dir.path().display())
}

/// A `FROM scratch` image of the demo service at `version`: `baton` as `/app/baton-demo`
/// (which makes it the demo service) and `/app/demo.toml` beside it, where it looks.
pub(crate) async fn demo_image(docker: &Docker, version: &str) -> TestImage {
    let options = DemoOptions::new(version).to_toml().unwrap();
    ImageBuild::new()
        .binary(Path::new(BATON), "/app/baton-demo")
        .file("/app/demo.toml", options, 0o644)
        .cmd(&["/app/baton-demo"])
        .build(docker, "baton-e2e-demo")
        .await
}

async fn whoami(addr: SocketAddr) -> serde_json::Value {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri = format!("http://{addr}/whoami?env=GREETING,DATABASE_URL,BATON_APP");
    let resp = client.get(uri.parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_between_images_loses_no_request() {
    let s = Scenario::start(DOCKER_WEB, &["1.0.0", "1.1.0"]).await;
    // An image the engine does not have: a clear error, and nothing is stored.
    let missing = format!(
        "{}-missing:1.0.0",
        s.images["1.0.0"].tag().split(':').next().unwrap()
    );
    let o = s
        .baton
        .cli(&["release", "create", "web", "1.0.0", "--image", &missing]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!(
            "image {missing} is not in the local Docker engine: build or pull it first"
        )),
        "{}",
        text(&o)
    );
    let o = s.baton.cli(&["release", "list", "web", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "[]",
        "{}",
        text(&o)
    );
    let old = s.release("1.0.0").await;
    let new = s.release("1.1.0").await;
    assert_ne!(old, new, "each version is its own image");

    s.baton.deploy_ok("web", "1.0.0", &[]).await;
    assert_only(&s.baton, "1.0.0").await;
    s.assert_serving(&["production"], "1.0.0", &old).await;

    // Rolling 1.0.0 -> 1.1.0 under keep-alive and new-connection load through the proxy.
    let l = load(&s.baton);
    s.baton
        .deploy_ok("web", "1.1.0", &["--strategy", "rolling"])
        .await;
    let report = l.stop().await;
    assert_no_failures(&report, "rolling between images");
    assert!(
        report.stats.by_version.contains_key("1.0.0")
            && report.stats.by_version.contains_key("1.1.0"),
        "both releases answered during the rollout: {:?}",
        report.stats.by_version
    );
    assert_only(&s.baton, "1.1.0").await;
    // The old containers are drained, stopped and removed: only the new ones are left.
    let containers = s.assert_serving(&["production"], "1.1.0", &new).await;
    assert_eq!(containers.len(), 3, "{containers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_runs_the_same_image_id_with_each_environments_config() {
    let s = Scenario::start(DOCKER_TWO_ENVS, &["1.0.0"]).await;
    let (staging, production) = (s.baton.apps["other"], s.baton.apps["web"]);
    let image = s.release("1.0.0").await;
    // Gone from the engine: Baton loads it back from the release's stored archive, so no
    // registry is needed, and it is the same image ID.
    let tag = s.images["1.0.0"].tag();
    for reference in [tag, image.as_str()] {
        s.docker.remove_image(reference).await.unwrap();
    }
    assert!(!s.docker.has_image(&image).await.unwrap());

    s.baton
        .deploy_ok("web", "1.0.0", &["--env", "staging"])
        .await;
    assert!(s.docker.has_image(&image).await.unwrap());
    // Production takes exactly what serves in staging, once its 1 s soak has passed.
    let accepted = wait_until(Duration::from_secs(30), || {
        let o = s
            .baton
            .cli(&["deploy", "web", "--from", "staging", "--env", "production"]);
        o.status.success()
    });
    assert!(
        accepted,
        "production accepts what staging serves after the soak"
    );
    let containers = s
        .assert_serving(&["staging", "production"], "1.0.0", &image)
        .await;
    assert_eq!(containers.len(), 5, "2 in staging, 3 in production");
    for c in containers.values() {
        let read_only = testing::read_only(&s.docker, &c.id).await.unwrap();
        assert!(read_only, "read_only = true: {c:?}");
    }

    // One image ID, each environment's own values.
    let (st, pr) = (whoami(staging).await, whoami(production).await);
    assert_eq!(
        (&st["version"], &pr["version"]),
        (&"1.0.0".into(), &"1.0.0".into())
    );
    assert_eq!(st["env"]["GREETING"], "hello", "{st}");
    assert_eq!(st["env"]["DATABASE_URL"], "sqlite://staging.db", "{st}");
    assert_eq!(pr["env"]["DATABASE_URL"], "sqlite://production.db", "{pr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_readopted_after_baton_is_killed() {
    let mut s = Scenario::start(DOCKER_WEB, &["1.0.0"]).await;
    let image = s.release("1.0.0").await;
    s.baton.deploy_ok("web", "1.0.0", &[]).await;
    let before = s.assert_serving(&["production"], "1.0.0", &image).await;
    let owners: BTreeSet<&str> = before.values().map(|c| c.label(OWNER_LABEL)).collect();
    assert!(
        owners.len() == 1 && !owners.contains(""),
        "one owner labels every container of this Baton: {before:?}"
    );
    let owner = owners.first().unwrap().to_string();
    let ids = |containers: &BTreeMap<String, LabelledContainer>| -> BTreeMap<String, String> {
        containers
            .iter()
            .map(|(instance, c)| (instance.clone(), c.id.clone()))
            .collect()
    };

    // kill -9 while idle: the containers outlive Baton.
    s.baton.kill9();
    let alive = s.containers().await;
    assert_eq!(ids(&by_instance(&alive)), ids(&before), "{alive:?}");
    assert!(alive.iter().all(|c| c.running), "{alive:?}");

    s.baton.up();
    let after = s.assert_serving(&["production"], "1.0.0", &image).await;
    assert_eq!(
        ids(&after),
        ids(&before),
        "the same containers serve the same instances: adopted, not started again"
    );
    // Nothing of this owner besides them: no duplicate, no orphan, no stopped leftover.
    let owned = list_owned(&s.docker, &owner).await.unwrap();
    let mut owned_ids: Vec<&str> = owned.iter().map(|c| c.id.as_str()).collect();
    owned_ids.sort();
    let mut want: Vec<&str> = before.values().map(|c| c.id.as_str()).collect();
    want.sort();
    assert_eq!(owned_ids, want, "{owned:?}");
    assert!(owned.iter().all(|c| c.running), "{owned:?}");
    // And users get answers through the proxy after the restart.
    assert_only(&s.baton, "1.0.0").await;
}
