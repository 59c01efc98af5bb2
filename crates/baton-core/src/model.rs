//! The model every part shares: releases, deployments, instances, events and their states.
//!
//! Times are unix milliseconds ([`Millis`]) taken by the caller, never read here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Unix time in milliseconds.
pub type Millis = i64;

/// How traffic moves from one release to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Replace instances in batches within `max_surge` / `max_unavailable`.
    #[default]
    Rolling,
    /// Start the whole new set, switch 100 % atomically, keep the old set warm.
    BlueGreen,
    /// Give the new release a growing weight of traffic step by step while the analysis
    /// compares it with the stable release.
    Canary,
    /// Start the new release beside the stable one with no user traffic; copy requests to it
    /// and compare its answers; then continue as a canary.
    Dark,
}

impl Strategy {
    /// The name used in config, CLI and API.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::BlueGreen => "blue-green",
            Strategy::Canary => "canary",
            Strategy::Dark => "dark",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rolling" => Ok(Strategy::Rolling),
            "blue-green" | "blue_green" | "bluegreen" => Ok(Strategy::BlueGreen),
            "canary" => Ok(Strategy::Canary),
            "dark" => Ok(Strategy::Dark),
            other => Err(format!(
                "unknown strategy {other:?}: expected rolling, blue-green, canary or dark"
            )),
        }
    }
}

/// The life of one instance as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Started, has not yet passed `healthy_threshold` checks.
    Starting,
    /// Passing health checks; may take traffic when it is in the split.
    Healthy,
    /// Failed `unhealthy_threshold` checks (or consecutive connect errors); takes no traffic.
    Unhealthy,
    /// Out of every split, finishing its in-flight requests before it stops.
    Draining,
    /// Gone.
    Stopped,
}

impl InstanceState {
    /// The name used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Healthy => "healthy",
            InstanceState::Unhealthy => "unhealthy",
            InstanceState::Draining => "draining",
            InstanceState::Stopped => "stopped",
        }
    }

    /// Parses the name written by [`InstanceState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "starting" => InstanceState::Starting,
            "healthy" => InstanceState::Healthy,
            "unhealthy" => InstanceState::Unhealthy,
            "draining" => InstanceState::Draining,
            "stopped" => InstanceState::Stopped,
            _ => return None,
        })
    }

    /// Draining or stopped: no longer part of the app's capacity.
    pub fn is_leaving(self) -> bool {
        matches!(self, InstanceState::Draining | InstanceState::Stopped)
    }
}

/// The phase of a deployment (docs/DESIGN.md "Rollout phases").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Recorded, not yet acted on.
    Pending,
    /// Moving traffic step by step.
    Progressing,
    /// Held by the operator.
    Paused,
    /// The new release serves 100 %.
    Succeeded,
    /// Going back to the previous release.
    Aborting,
    /// Back on the previous release after users saw the new one.
    RolledBack,
    /// Could not complete; users never left the previous release.
    Failed,
}

impl Phase {
    /// The name used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Succeeded => "succeeded",
            Phase::Aborting => "aborting",
            Phase::RolledBack => "rolled_back",
            Phase::Failed => "failed",
        }
    }

    /// Parses the name written by [`Phase::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Phase::Pending,
            "progressing" => Phase::Progressing,
            "paused" => Phase::Paused,
            "succeeded" => Phase::Succeeded,
            "aborting" => Phase::Aborting,
            "rolled_back" => Phase::RolledBack,
            "failed" => Phase::Failed,
            _ => return None,
        })
    }

    /// A phase the deployment never leaves.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::RolledBack | Phase::Failed)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An app's artifact + version + metadata. Append-only: never edited after it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The app this release belongs to.
    pub app: String,
    /// The version the user gave (`1.4.0`).
    pub version: String,
    /// `sha256:<hex>` of the artifact's canonical archive.
    pub digest: String,
    /// Free-form notes given at creation.
    pub notes: Option<String>,
    /// When it was created.
    pub created_at: Millis,
    /// The git commit it was built from (`--git`).
    #[serde(default)]
    pub commit: Option<String>,
    /// Every change since the previous release's commit, grouped (markdown).
    #[serde(default)]
    pub changelog: Option<String>,
    /// The user-facing changes: breaking changes, features, fixes (markdown).
    #[serde(default)]
    pub release_notes: Option<String>,
}

/// One attempt to move an app from one release to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique, increasing.
    pub id: i64,
    /// The app being deployed.
    pub app: String,
    /// The release serving when the deployment started (none for the first deployment).
    pub from: Option<String>,
    /// The release being deployed.
    pub to: String,
    /// How traffic moves.
    pub strategy: Strategy,
    /// Where it is.
    pub phase: Phase,
    /// The current step (rolling: instances replaced so far; blue-green: 0 before, 1 after the switch).
    pub step: u32,
    /// Why it is in its phase (for final phases: why it ended).
    pub reason: Option<String>,
    /// Who or what asked for it (`deploy`, `rollback`).
    pub trigger: String,
    /// When it was recorded.
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// When it reached a final phase.
    pub finished_at: Option<Millis>,
    /// Whether users were ever served by `to` during this deployment.
    pub exposed: bool,
    /// Progress deadline: if the next step is not reached by then, the deployment goes back.
    /// Stored as data so that it survives a restart of Baton (docs/DESIGN.md I4). A resume
    /// sets a fresh one (a pause stops the clock). Canary: set while a step's instances come
    /// up, none while the step holds.
    pub deadline: Option<Millis>,
    /// Canary: the percent of requests the new release gets now (0 before the first step is
    /// ready and after an abort).
    #[serde(default)]
    pub weight: u32,
    /// Canary: when the current step's pause ends (none while it waits for `promote`).
    #[serde(default)]
    pub pause_until: Option<Millis>,
    /// What operators asked for; the planner reads and clears these (docs/DESIGN.md: intents are
    /// fields the planner reads, not code paths of their own).
    #[serde(default)]
    pub intents: Intents,
    /// The expand migration's outcome for this deployment (when the app has one).
    #[serde(default)]
    pub migration: MigrationState,
    /// The lost hosts it holds for, and those the operator let it go on without.
    #[serde(default)]
    pub hold: HostHold,
}

/// A deployment that holds while hosts of its app are lost (docs/design-notes.md, "Many hosts
/// and containers", "Host lost"): it takes no step forward until the hosts are back, drained
/// or no longer the app's, or the operator lets it go on without them (`baton resume`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHold {
    /// The lost hosts it holds for, in the app's `hosts` order; empty while it does not hold.
    #[serde(default)]
    pub lost: Vec<String>,
    /// Lost hosts the operator let it go on without; a host leaves this list when it is no
    /// longer lost, so losing it again holds again.
    #[serde(default)]
    pub without: Vec<String>,
}

impl HostHold {
    /// Whether the deployment holds now.
    pub fn holds(&self) -> bool {
        !self.lost.is_empty()
    }
}

/// Where a deployment's expand migration is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum MigrationState {
    /// Not run yet (or running).
    #[default]
    Pending,
    /// Ran and succeeded.
    Done,
    /// Ran and failed, with why.
    Failed(String),
}

/// Operator intents recorded on a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intents {
    /// Hold at the current step (`baton pause`); cleared by `baton resume`.
    #[serde(default)]
    pub pause: bool,
    /// Go on now (`baton promote`), or skip every remaining step and analysis (`--full`).
    #[serde(default)]
    pub promote: Option<Promote>,
    /// Go back to the stable release now (`baton abort`).
    #[serde(default)]
    pub abort: bool,
    /// `baton resume` was asked (besides clearing `pause`): a deployment that holds for lost
    /// hosts goes on without them. One-shot, like `promote`.
    #[serde(default)]
    pub resume: bool,
}

/// How far `baton promote` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Promote {
    /// To the next step, skipping the current pause and verdict.
    Step,
    /// Straight to 100 %, skipping every remaining step and analysis.
    Full,
}

/// The name of the controller's own host, where every app without `hosts` runs.
pub const LOCAL_HOST: &str = "local";

/// One running copy of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `<app>-<n>`, unique for the app's lifetime.
    pub id: String,
    /// The app it serves.
    pub app: String,
    /// The release version it runs.
    pub release: String,
    /// The host it runs on ([`LOCAL_HOST`] for the controller's own).
    pub host: String,
    /// The port it listens on at its host's address.
    pub port: u16,
    /// OS process id while running.
    pub pid: Option<u32>,
    /// The process start time (clock ticks since boot, `/proc/<pid>/stat` field 22), so a
    /// reused pid is never mistaken for this instance.
    pub proc_start: Option<u64>,
    /// Health and lifecycle state.
    pub state: InstanceState,
    /// Whether the controller put it in the app's split.
    pub in_split: bool,
    /// When the current process started.
    pub started_at: Millis,
    /// Times it was restarted after dying.
    pub restarts: u32,
    /// Earliest time of the next restart after a crash (backoff), if it is down.
    pub restart_at: Option<Millis>,
    /// When a warm, out-of-split instance (blue-green's previous set) is to be stopped.
    pub retire_at: Option<Millis>,
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique, increasing.
    pub id: i64,
    /// When it happened.
    pub at: Millis,
    /// The app concerned.
    pub app: String,
    /// The deployment concerned, if any.
    pub deployment: Option<i64>,
    /// What happened, from the catalogue in [`EventKind`].
    pub kind: String,
    /// A one-line human explanation with the reason.
    pub message: String,
}

/// The catalogue of event kinds, so reasons are named in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A deployment intent was recorded.
    DeploymentCreated,
    /// The controller began acting on a deployment.
    DeploymentStarted,
    /// A deployment moved to its next step.
    DeploymentStep,
    /// A deployment reached `succeeded`.
    DeploymentSucceeded,
    /// A deployment began going back to the previous release.
    DeploymentAborting,
    /// A deployment ended `rolled_back`.
    DeploymentRolledBack,
    /// A deployment ended `failed`.
    DeploymentFailed,
    /// An instance process was started.
    InstanceStarted,
    /// An instance passed its health checks.
    InstanceHealthy,
    /// An instance failed its health checks.
    InstanceUnhealthy,
    /// An instance process exited without being asked to.
    InstanceExited,
    /// A live instance was re-adopted after Baton restarted.
    InstanceAdopted,
    /// An operator paused a deployment.
    DeploymentPaused,
    /// An operator resumed a deployment.
    DeploymentResumed,
    /// An operator promoted a canary.
    DeploymentPromoted,
    /// A deployment holds because hosts of its app are lost (or holds for other hosts now).
    DeploymentHeld,
    /// An analysis verdict failed.
    VerdictFailed,
    /// A migration step ran (or a contract was scheduled, started or cancelled).
    Migration,
    /// A migration step failed.
    MigrationFailed,
    /// An instance was taken out of the split to be stopped.
    InstanceDraining,
    /// An instance's drain timed out with requests still in flight.
    DrainTimedOut,
    /// An instance was stopped.
    InstanceStopped,
    /// The split changed.
    SplitChanged,
    /// A host joined the cluster with a join token (or joined again with a new one).
    HostJoined,
    /// A join was refused: the token, the name or the address was wrong.
    HostJoinRefused,
    /// A joined host's agent opened a session.
    HostConnected,
    /// A joined host's agent was refused a session (e.g. its address no longer matches).
    HostRefused,
    /// A host's session ended: its agent went away or sent no heartbeat in time.
    HostLost,
    /// The operator drained a host (`baton host drain`) or lifted the drain.
    HostDrain,
    /// A host's health endpoint for the app's external load balancer now passes or fails.
    LbEndpoint,
    /// `baton reload` (or SIGHUP) put a new config in force; the message says what changed.
    ConfigReloaded,
    /// A feature flag was changed live (`baton flag set`); the message says how and by whom.
    FlagChanged,
    /// An OFREP token was created or revoked; the message says which and by whom.
    FlagToken,
    /// A circuit breaker opened: its route's window crossed a threshold (or a probe failed).
    BreakerOpened,
    /// An open breaker's cooldown ended: it admits probe requests.
    BreakerHalfOpen,
    /// A breaker closed: its probes succeeded.
    BreakerClosed,
}

impl EventKind {
    /// The stable name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DeploymentCreated => "deployment_created",
            EventKind::DeploymentStarted => "deployment_started",
            EventKind::DeploymentStep => "deployment_step",
            EventKind::DeploymentSucceeded => "deployment_succeeded",
            EventKind::DeploymentAborting => "deployment_aborting",
            EventKind::DeploymentRolledBack => "deployment_rolled_back",
            EventKind::DeploymentFailed => "deployment_failed",
            EventKind::InstanceStarted => "instance_started",
            EventKind::InstanceHealthy => "instance_healthy",
            EventKind::InstanceUnhealthy => "instance_unhealthy",
            EventKind::InstanceExited => "instance_exited",
            EventKind::InstanceAdopted => "instance_adopted",
            EventKind::DeploymentPaused => "deployment_paused",
            EventKind::DeploymentResumed => "deployment_resumed",
            EventKind::DeploymentPromoted => "deployment_promoted",
            EventKind::DeploymentHeld => "deployment_held",
            EventKind::VerdictFailed => "verdict_failed",
            EventKind::Migration => "deployment_migration",
            EventKind::MigrationFailed => "deployment_migration_failed",
            EventKind::InstanceDraining => "instance_draining",
            EventKind::DrainTimedOut => "drain_timed_out",
            EventKind::InstanceStopped => "instance_stopped",
            EventKind::SplitChanged => "split_changed",
            EventKind::HostJoined => "host_joined",
            EventKind::HostJoinRefused => "host_join_refused",
            EventKind::HostConnected => "host_connected",
            EventKind::HostRefused => "host_refused",
            EventKind::HostLost => "host_lost",
            EventKind::HostDrain => "host_drain",
            EventKind::LbEndpoint => "lb_endpoint",
            EventKind::ConfigReloaded => "config_reloaded",
            EventKind::FlagChanged => "flag_changed",
            EventKind::FlagToken => "flag_token",
            EventKind::BreakerOpened => "breaker_opened",
            EventKind::BreakerHalfOpen => "breaker_half_open",
            EventKind::BreakerClosed => "breaker_closed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The file in an image release's artifact that names the image: the artifact of a release
/// made with `baton release create --image` holds this beside [`IMAGE_ARCHIVE`].
pub const IMAGE_MANIFEST: &str = "baton-image.json";
/// The `docker save` archive of the image, in an image release's artifact: hosts that lack the
/// image load it from here, so no registry is needed.
pub const IMAGE_ARCHIVE: &str = "image.tar";

/// What [`IMAGE_MANIFEST`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// The image ID (`sha256:` of its config): immutable, the same in every environment.
    pub id: String,
    /// The reference it was created from (`myapp:1.2.0`), for people only.
    pub reference: String,
}
