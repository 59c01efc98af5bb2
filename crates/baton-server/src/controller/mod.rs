//! The controller: the only actor (docs/DESIGN.md rule 1). Each tick it observes every app's
//! instances, asks the pure planner what to do, records the decision, acts, and publishes the
//! split. It also restarts instances that die and re-adopts instances after a restart.

mod act;
mod analysis;
mod contracts;
mod instances;
mod migrate;
mod routing;

use std::sync::Arc;
use std::time::Duration;

use baton_core::model::{EventKind, Instance, InstanceState, LOCAL_HOST, Millis};
use baton_core::plan::{self, PlanHost, PlanInput};
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
    pub instance: String,
    pub pid: u32,
    pub info: String,
}

/// Runs until `shutdown` resolves.
pub async fn run(
    shared: Arc<Shared>,
    mut exits: mpsc::UnboundedReceiver<Exited>,
    exits_tx: mpsc::UnboundedSender<Exited>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut published = routing::Published::default();
    let mut windows = analysis::Windows::default();
    loop {
        let now = clock::now();
        for app in shared.units.keys() {
            if let Err(e) = tick(&shared, app, now, &exits_tx, &mut published, &mut windows).await {
                tracing::error!(app = %app, error = %format!("{e:#}"), "controller tick failed");
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            Some(exit) = exits.recv() => {
                if let Err(e) = instances::on_exit(&shared, exit, clock::now()) {
                    tracing::error!(error = %format!("{e:#}"), "recording an instance exit failed");
                }
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn tick(
    shared: &Arc<Shared>,
    app: &str,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
    published: &mut routing::Published,
    windows: &mut analysis::Windows,
) -> anyhow::Result<()> {
    let config = shared.app(app).expect("apps come from the config");
    observe_health(shared, app, now)?;
    instances::restart_due(shared, app, now, exits)?;

    let current = shared.store.current_release(app)?;
    let deployment = shared.store.active_deployment(app)?;
    analysis::run(shared, windows, app, config, deployment.as_ref(), now).await?;
    let verdict = match &deployment {
        Some(d) => analysis::judgement(shared, d)?,
        None => None,
    };
    let all = shared.store.instances(Some(app), false)?;
    let p = plan::plan(PlanInput {
        app: config,
        current: current.as_deref(),
        deployment: deployment.as_ref(),
        instances: &all,
        now,
        verdict: verdict.as_ref(),
        hosts: &[PlanHost::up(LOCAL_HOST)],
    });
    if let (Some(before), Some(after)) = (&deployment, &p.deployment) {
        // One-shot intents the planner acted on are cleared, keeping any recorded since.
        let promoted = before.intents.promote.is_some() && after.intents.promote.is_none();
        let aborted = before.intents.abort && !after.intents.abort;
        shared
            .store
            .clear_consumed_intents(before.id, promoted, aborted)?;
    }

    // A deployment that ends with this plan is recorded as ended only once its split is
    // published; any other change is recorded first, so Baton resumes from it after a crash.
    let ends = p.deployment.as_ref().is_some_and(|d| d.phase.is_final());
    act::record_events(shared, app, &p, now)?;
    if !ends {
        act::record_phase(shared, &p)?;
    }
    let drains = act::apply(shared, app, &all, &p, now, exits)?;
    routing::publish(shared, published)?;
    if ends {
        act::record_phase(shared, &p)?;
    }
    // Drains begin after the split without them is published; their own flag covers requests
    // that still hold the previous snapshot.
    for (inst, live) in drains {
        tokio::spawn(instances::drain(shared.clone(), inst, live));
    }
    contracts::run_due(shared, app, now)?;
    Ok(())
}

/// Copies the proxy's view of each instance's health into the store, with an event per change.
fn observe_health(shared: &Shared, app: &str, now: Millis) -> anyhow::Result<()> {
    let instances = shared.store.instances(Some(app), false)?;
    for mut inst in instances {
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
        inst.state = state;
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
    Ok(())
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
