//! The controller: the only actor (docs/DESIGN.md rule 1). Each tick it observes every app's
//! instances, asks the pure planner what to do, records the decision, acts, and publishes the
//! split. It also restarts instances that die and re-adopts instances after a restart.

mod act;
mod agents;
mod analysis;
mod containers;
mod contracts;
pub mod dark;
mod instances;
mod migrate;
pub(crate) mod pinned;
pub(crate) mod remote;
mod retired;
mod routing;
mod schedule;

use std::sync::Arc;
use std::time::Duration;

use baton_core::model::{EventKind, Instance, InstanceState, LOCAL_HOST, Millis};
use baton_core::plan::{self, LbHost, PlanHost, PlanInput};
use baton_proxy::Health;
use tokio::sync::mpsc;

use crate::clock;
use crate::shared::Shared;

pub use instances::{adopt_all, drain as drain_task, stop_all};

/// How often the controller looks even when nothing wakes it: health changes are read from the
/// proxy's backends, so this bounds how long a newly healthy instance waits for admission.
const TICK: Duration = Duration::from_millis(100);

/// A process exit reported by an instance's watcher.
pub struct Exited {
    /// The unit the instance serves.
    pub app: String,
    pub instance: String,
    pub pid: u32,
    pub info: String,
}

/// What the controller loop reads: handed back when it stops, so that it can run again (a
/// restart whose new process failed gives the control plane back, `handover.rs`).
pub struct Inputs {
    /// Instances started in the background report here.
    pub started: mpsc::UnboundedReceiver<crate::shared::Started>,
    /// Agents' reports.
    pub agent_events: mpsc::Receiver<crate::shared::AgentEvent>,
    /// Instance exits.
    pub exits: mpsc::UnboundedReceiver<Exited>,
    /// Where exit watchers send, for the instances the loop starts.
    pub exits_tx: mpsc::UnboundedSender<Exited>,
}

/// Runs until `shutdown` changes; returns its inputs.
///
/// Each round ticks only the apps that are due (`schedule.rs`): a deployment in progress, a
/// health change, an exit, a deadline, a wake-up from the API, or the idle resync. Then the
/// split is published once for every app, so a round costs what the busy apps cost.
pub async fn run(
    shared: Arc<Shared>,
    mut inputs: Inputs,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Inputs {
    let Inputs {
        started,
        agent_events,
        exits,
        exits_tx,
    } = &mut inputs;
    let mut published = routing::Published::default();
    let mut windows = analysis::Windows::default();
    let mut schedule = schedule::Schedule::default();
    let mut everyone = true;
    let mut absence = remote::Absence::new(clock::now());
    let mut lost = Vec::new();
    let mut seen = shared.config();
    fence_removed_hosts(&shared);
    loop {
        let now = clock::now();
        // One config for the whole round; a reload shows at the next one.
        let snapshot = shared.config();
        if !Arc::ptr_eq(&snapshot, &seen) {
            seen = snapshot.clone();
            fence_removed_hosts(&shared);
            everyone = true;
        }
        let was_lost = std::mem::take(&mut lost);
        lost = lost_hosts(&shared, &mut absence, now);
        if fence_lost_hosts(&shared, &lost, now) || lost != was_lost {
            everyone = true;
        }
        let health = schedule::health_signatures(&shared);
        let mut after_publish = retired::tick(&shared, now, exits_tx);
        for app in snapshot.units.keys() {
            if !everyone && !schedule.is_due(app, now, &health) {
                continue;
            }
            match tick(&shared, app, now, &lost, exits_tx, &mut windows).await {
                Ok(ticked) => {
                    schedule.ticked(app, now, &ticked, &health);
                    after_publish.push(ticked);
                }
                Err(e) => {
                    schedule.failed(app, now);
                    tracing::error!(app = %app, error = %format!("{e:#}"), "controller tick failed");
                }
            }
        }
        everyone = false;
        let published_ok = after_publish.is_empty()
            || routing::publish(&shared, &mut published)
                .inspect_err(|e| {
                    tracing::error!(error = %format!("{e:#}"), "publishing the split failed");
                })
                .is_ok();
        for ticked in after_publish {
            finish(&shared, ticked, published_ok);
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(exit) = exits.recv() => {
                schedule.wake(&exit.app);
                if let Err(e) = instances::on_exit(&shared, exit, clock::now()) {
                    tracing::error!(error = %format!("{e:#}"), "recording an instance exit failed");
                }
            }
            Some(event) = agent_events.recv() => {
                match agents::on_event(&shared, event, clock::now(), exits_tx) {
                    Ok(Some(app)) => schedule.wake(&app),
                    Ok(None) => everyone = true,
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "applying an agent's report failed"),
                }
            }
            Some(start) = started.recv() => {
                schedule.wake(&start.app);
                if let Err(e) = instances::on_started(&shared, start, clock::now(), exits_tx).await {
                    tracing::error!(error = %format!("{e:#}"), "recording an instance start failed");
                }
            }
            _ = shared.wake.notified() => everyone = true,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    inputs
}

/// Publishes the split of the instances recorded in it, before the listeners accept: a
/// process that took over from another routes to the instances it re-adopted at once.
pub fn publish_now(shared: &Shared) -> anyhow::Result<()> {
    routing::publish(shared, &mut routing::Published::default())
}

/// The app's hosts as the planner sees them: the local host always takes instances; another
/// only while its agent is connected; none while drained. `lost` are the hosts away for
/// longer than the heartbeat timeout (a deployment holds for them).
///
/// With `external_lb`, each host carries its health endpoint's state (passing unless recorded
/// otherwise) and when its listener last saw a request.
fn plan_hosts(
    shared: &Shared,
    unit: &str,
    app: &baton_core::config::AppConfig,
    lost: &[String],
) -> Vec<PlanHost> {
    let drained = shared.store.drained_hosts().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read drained hosts");
        Vec::new()
    });
    let endpoints = match app.external_lb {
        Some(_) => shared.store.lb_endpoints().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read load-balancer endpoints");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let lb = |host: &str| {
        app.external_lb.as_ref()?;
        let (passing, since) = endpoints
            .iter()
            .find(|(a, h, _, _)| a == unit && h == host)
            .map_or((true, 0), |(_, _, p, s)| (*p, *s));
        let last_request = shared
            .cluster
            .as_ref()
            .and_then(|c| c.last_request(host, unit));
        Some(LbHost {
            passing,
            since,
            last_request,
        })
    };
    app.host_names()
        .into_iter()
        .map(|name| {
            let drained = drained.contains(&name);
            let connected = name == LOCAL_HOST
                || shared
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.link(&name).is_some());
            PlanHost {
                schedulable: connected && !drained,
                drained,
                lb: lb(&name),
                lost: lost.contains(&name),
                name,
            }
        })
        .collect()
}

/// Instances recorded on hosts no longer in the config are lost for good (their agents are
/// refused): fenced at start and after each reload, so the planner replaces them.
fn fence_removed_hosts(shared: &Shared) {
    let hosts = &shared.config().config.hosts;
    let mut removed: Vec<String> = shared
        .store
        .instances(None, false)
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.host)
        .filter(|h| h != LOCAL_HOST && !hosts.contains_key(h))
        .collect();
    removed.dedup();
    if let Err(e) = agents::fence(shared, &removed, clock::now()) {
        tracing::error!(error = %format!("{e:#}"), "fencing the instances of removed hosts failed");
    }
}

/// The hosts away for longer than the heartbeat timeout: lost.
fn lost_hosts(shared: &Shared, absence: &mut remote::Absence, now: Millis) -> Vec<String> {
    let Some(cluster) = &shared.cluster else {
        return Vec::new();
    };
    let grace = i64::try_from(cluster.heartbeat_timeout().as_millis()).unwrap_or(i64::MAX);
    let snapshot = shared.config();
    let hosts = snapshot.config.hosts.keys().cloned();
    absence.update(cluster, hosts, now, grace)
}

/// Fences the instances of lost hosts; true if any instance was fenced.
fn fence_lost_hosts(shared: &Shared, lost: &[String], now: Millis) -> bool {
    agents::fence(shared, lost, now).unwrap_or_else(|e| {
        tracing::error!(error = %format!("{e:#}"), "fencing the instances of lost hosts failed");
        false
    })
}

/// What a tick leaves for after the split is published.
pub(crate) struct Ticked {
    /// The plan's deployment when the plan ends it: recorded only once its split serves.
    ends: Option<plan::Plan>,
    /// Instances to drain once the split without them is published.
    drains: Vec<(Instance, Option<crate::shared::Live>)>,
    /// A deployment is in progress: tick every round.
    busy: bool,
    /// The earliest deadline the app has (planner wake-up, restart backoff).
    wake_at: Option<Millis>,
}

async fn tick(
    shared: &Arc<Shared>,
    app: &str,
    now: Millis,
    lost: &[String],
    exits: &mpsc::UnboundedSender<Exited>,
    windows: &mut analysis::Windows,
) -> anyhow::Result<Ticked> {
    let deployment = shared.store.active_deployment(app)?;
    // The deployment's own config while one runs (`pinned.rs`).
    let Some(config) = pinned::config_for(shared, app, deployment.as_ref()) else {
        anyhow::bail!("{app} left the config");
    };
    let config = &*config;
    // Read again only after a step wrote to them: an idle tick reads its instances once.
    let mut all = shared.store.instances(Some(app), false)?;
    if observe_health(shared, &all, now)? {
        all = shared.store.instances(Some(app), false)?;
    }
    if instances::restart_due(shared, &all, now, exits)? {
        all = shared.store.instances(Some(app), false)?;
    }

    let current = shared.store.current_release(app)?;
    analysis::run(shared, windows, app, config, deployment.as_ref(), now).await?;
    let verdict = match &deployment {
        Some(d) => analysis::judgement(shared, d)?,
        None => None,
    };
    if deployment.is_some() {
        // The analysis awaited: a drain or an API call may have changed them meanwhile.
        all = shared.store.instances(Some(app), false)?;
    }
    let p = plan::plan(PlanInput {
        app: config,
        current: current.as_deref(),
        deployment: deployment.as_ref(),
        instances: &all,
        now,
        verdict: verdict.as_ref(),
        hosts: &plan_hosts(shared, app, config, lost),
    });
    if let (Some(before), Some(after)) = (&deployment, &p.deployment) {
        // One-shot intents the planner acted on are cleared, keeping any recorded since.
        let promoted = before.intents.promote.is_some() && after.intents.promote.is_none();
        let aborted = before.intents.abort && !after.intents.abort;
        let resumed = before.intents.resume && !after.intents.resume;
        shared
            .store
            .clear_consumed_intents(before.id, promoted, aborted, resumed)?;
    }

    // A deployment that ends with this plan is recorded as ended only once its split is
    // published; any other change is recorded first, so Baton resumes from it after a crash.
    let ends = p.deployment.as_ref().is_some_and(|d| d.phase.is_final());
    act::record_events(shared, app, &p, now)?;
    if !ends {
        act::record_phase(shared, &p)?;
    }
    let drains = act::apply(shared, app, &all, &p, now, exits)?;
    contracts::run_due(shared, app, now)?;
    let restart_at = all
        .iter()
        .filter(|i| i.pid.is_none() && !i.state.is_leaving())
        .filter_map(|i| i.restart_at)
        .min();
    Ok(Ticked {
        busy: deployment.is_some() || !p.actions.is_empty(),
        wake_at: [p.wake_at, restart_at].into_iter().flatten().min(),
        ends: ends.then_some(p),
        drains,
    })
}

/// After the split is published: a deployment that ended is recorded as ended (unless the
/// split could not be published: the planner derives the end again next tick), and drains
/// begin (their own flag covers requests that still hold the previous snapshot).
fn finish(shared: &Arc<Shared>, ticked: Ticked, published: bool) {
    if let Some(Err(e)) = ticked
        .ends
        .as_ref()
        .filter(|_| published)
        .map(|p| act::record_phase(shared, p))
    {
        tracing::error!(error = %format!("{e:#}"), "recording a deployment's end failed");
    }
    for (inst, live) in ticked.drains {
        tokio::spawn(instances::drain(shared.clone(), inst, live));
    }
}

/// Copies the proxy's view of the health of `instances` (one app's, as stored) into the
/// store, with an event per change; true if it changed any.
fn observe_health(shared: &Shared, instances: &[Instance], now: Millis) -> anyhow::Result<bool> {
    let mut changed = false;
    for inst in instances {
        if inst.state.is_leaving() || inst.pid.is_none() {
            continue;
        }
        let health = match shared.live().get(&inst.id) {
            Some(live) => live.backend.health(),
            None => continue,
        };
        let state = match health {
            Health::Starting => InstanceState::Starting,
            Health::Healthy => InstanceState::Healthy,
            Health::Unhealthy => InstanceState::Unhealthy,
        };
        if state == inst.state {
            continue;
        }
        let was = inst.state;
        let mut inst = inst.clone();
        inst.state = state;
        changed = true;
        shared.store.upsert_instance(&inst)?;
        let (kind, msg) = match state {
            InstanceState::Healthy => (
                EventKind::InstanceHealthy,
                format!("{} ({}) passed its health checks", inst.id, inst.release),
            ),
            _ => (
                EventKind::InstanceUnhealthy,
                format!(
                    "{} ({}) went from {} to {}",
                    inst.id,
                    inst.release,
                    was.as_str(),
                    state.as_str()
                ),
            ),
        };
        record(shared, &inst, kind, &msg, now)?;
    }
    Ok(changed)
}

/// Appends an event about an instance, tied to the app's active deployment if there is one.
pub(crate) fn record(
    shared: &Shared,
    inst: &Instance,
    kind: EventKind,
    message: &str,
    now: Millis,
) -> anyhow::Result<()> {
    let deployment = shared.store.active_deployment(&inst.app)?.map(|d| d.id);
    shared.event(now, &inst.app, deployment, kind, message)?;
    Ok(())
}
