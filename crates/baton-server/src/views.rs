//! The JSON shapes the API returns and the CLI reads: one definition for both sides.

use baton_core::model::{Deployment, Event, Release};
use serde::{Deserialize, Serialize};

/// `GET /v1/apps/{app}`: what an app serves now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppStatus {
    /// The app.
    pub app: String,
    /// The environment.
    #[serde(default)]
    pub env: String,
    /// Where users connect.
    pub listen: String,
    /// The active deployment's phase, or `idle`.
    pub phase: String,
    /// The release serving 100 % when idle.
    pub release: Option<String>,
    /// Since when it serves (unix ms).
    #[serde(default)]
    pub since: Option<i64>,
    /// How many instances the environment runs.
    #[serde(default)]
    pub instances_wanted: u32,
    /// The active deployment, if any.
    pub deployment: Option<DeploymentView>,
    /// Every instance that is not stopped.
    pub instances: Vec<InstanceView>,
    /// The traffic split, as percentages per release.
    pub split: Vec<SplitView>,
    /// What the proxy counted per release, over the instances running now.
    #[serde(default)]
    pub traffic: Vec<TrafficView>,
    /// The active deployment's latest analysis verdict (canary).
    #[serde(default)]
    pub verdict: Option<baton_store::StoredVerdict>,
    /// The newest contract migration scheduled here (`migrate.after`): pending until its due
    /// time, then running, done, failed (held) or cancelled.
    #[serde(default)]
    pub contract: Option<baton_store::Contract>,
}

/// Requests the proxy served for one release (over its running instances).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrafficView {
    /// The release.
    pub release: String,
    /// Requests sent to its instances.
    pub requests: u64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 5],
    /// Connections to its instances that failed.
    pub connect_errors: u64,
    /// Requests that timed out waiting for a response.
    pub timeouts: u64,
    /// Median latency in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th-percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
}

/// One deployment, as shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentView {
    /// Deployment id.
    pub id: i64,
    /// The app.
    pub app: String,
    /// The environment.
    #[serde(default)]
    pub env: String,
    /// Release before.
    pub from: Option<String>,
    /// Release being deployed.
    pub to: String,
    /// `rolling` or `blue-green`.
    pub strategy: String,
    /// Phase.
    pub phase: String,
    /// Step.
    pub step: u32,
    /// Canary: the percent of requests the new release gets now.
    #[serde(default)]
    pub weight: u32,
    /// Operator intents not yet acted on (`pause` stays while paused).
    #[serde(default)]
    pub intents: baton_core::model::Intents,
    /// The lost hosts it holds for (`lost`, empty unless it holds) and those the operator let
    /// it go on without (`without`).
    #[serde(default)]
    pub hold: baton_core::model::HostHold,
    /// Why it is where it is.
    pub reason: Option<String>,
    /// Who asked.
    pub trigger: String,
    /// Created (unix ms).
    pub created_at: i64,
    /// Ended (unix ms).
    pub finished_at: Option<i64>,
    /// Milliseconds from creation to the end (or to now while running).
    pub duration_ms: i64,
}

impl DeploymentView {
    /// The view of `d` at `now`.
    pub fn of(d: &Deployment, now: i64) -> Self {
        Self {
            id: d.id,
            app: baton_core::config::split_key(&d.app).0.to_string(),
            env: baton_core::config::split_key(&d.app).1.to_string(),
            from: d.from.clone(),
            to: d.to.clone(),
            strategy: d.strategy.as_str().to_string(),
            phase: d.phase.as_str().to_string(),
            step: d.step,
            weight: d.weight,
            intents: d.intents.clone(),
            hold: d.hold.clone(),
            reason: d.reason.clone(),
            trigger: d.trigger.clone(),
            created_at: d.created_at,
            finished_at: d.finished_at,
            duration_ms: d.finished_at.unwrap_or(now) - d.created_at,
        }
    }
}

/// One instance, as shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// Release it runs.
    pub release: String,
    /// The host it runs on (`local`: the controller's own).
    #[serde(default)]
    pub host: String,
    /// `address:port`, where it listens on its host.
    pub address: String,
    /// starting | healthy | unhealthy | draining | stopped
    pub state: String,
    /// Whether it is in the split.
    pub in_split: bool,
    /// Process id.
    pub pid: Option<u32>,
    /// Restarts after crashes.
    pub restarts: u32,
    /// Requests in flight through the proxy.
    pub in_flight: u64,
    /// Requests the proxy sent to it since its process started.
    #[serde(default)]
    pub requests: u64,
}

/// One release's share of the traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitView {
    /// The release.
    pub release: String,
    /// Percentage of new requests.
    pub weight: u32,
}

/// `GET /v1/deployments/{id}`: a deployment and its events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentDetail {
    /// The deployment.
    pub deployment: DeploymentView,
    /// Its events, oldest first.
    pub events: Vec<Event>,
}

/// `POST /v1/apps/{app}/releases`: the stored release and whether it was new.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseCreated {
    /// The release.
    pub release: Release,
    /// False when the same version with the same digest already existed (a no-op).
    pub created: bool,
}

/// `POST /v1/apps/{app}/deployments` and `/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The release version (rollback: optional target).
    pub release: Option<String>,
    /// Overrides the app's strategy.
    pub strategy: Option<String>,
    /// The environment (default: the last one the app runs in).
    #[serde(default)]
    pub env: Option<String>,
    /// Deploy exactly the release serving in this environment.
    #[serde(default)]
    pub from_env: Option<String>,
    /// Go past the promotion gate (and, for a rollback, the contract mark); recorded.
    #[serde(default)]
    pub force: bool,
    /// Who asks (recorded with a forced deployment).
    #[serde(default)]
    pub actor: Option<String>,
}

/// An API error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable machine-readable code (`unauthorized`, `not_found`, `conflict`, `bad_request`, `internal`).
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// `POST /v1/reload`: what the reload changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadView {
    /// One line: what changed (as recorded in the `config_reloaded` event).
    pub summary: String,
    /// Units (`app@env`) that appeared.
    pub added: Vec<String>,
    /// Units that went away (their listeners closed, their instances drain and stop).
    pub removed: Vec<String>,
    /// Units whose settings changed, with the keys that changed.
    pub changed: std::collections::BTreeMap<String, Vec<String>>,
    /// Hosts that appeared (`+`), went away (`-`) or changed (`~`).
    pub hosts: Vec<String>,
    /// Other top-level keys that changed.
    pub other: Vec<String>,
}
