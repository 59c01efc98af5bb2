//! Performing a plan: every state change is committed to the store before the action that
//! depends on it (docs/DESIGN.md "Persistence").

use std::sync::Arc;

use baton_core::model::{EventKind, Instance, InstanceState, Millis};
use baton_core::plan::{Action, Plan};
use tokio::sync::mpsc;

use super::{Exited, instances, record};
use crate::shared::{Live, Shared};

/// Appends the plan's events. They come before the phase they explain, so whoever sees the new
/// phase (`--wait`) also finds the events.
pub fn record_events(shared: &Shared, app: &str, plan: &Plan, now: Millis) -> anyhow::Result<()> {
    let active = shared.store.active_deployment(app)?.map(|d| d.id);
    let deployment = plan.deployment.as_ref().map(|d| d.id).or(active);
    for (kind, message) in &plan.events {
        shared.event(now, app, deployment, *kind, message)?;
    }
    Ok(())
}

/// Records the deployment's new phase. A phase that ends the deployment is recorded only after
/// the split the plan asked for is published, so nobody reads `succeeded` while the previous
/// split still serves; a crash in between is harmless because the planner derives the end
/// again from the instances.
pub fn record_phase(shared: &Shared, plan: &Plan) -> anyhow::Result<()> {
    if let Some(d) = &plan.deployment {
        shared.store.update_deployment(d)?;
    }
    Ok(())
}

/// Applies the plan's actions for `app`, each committed before it takes effect; returns the
/// drains to start once the new split is published.
pub fn apply(
    shared: &Arc<Shared>,
    app: &str,
    all: &[Instance],
    plan: &Plan,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<Vec<(Instance, Option<Live>)>> {
    let find = |id: &str| all.iter().find(|i| i.id == id).cloned();
    let mut drains = Vec::new();
    for action in &plan.actions {
        match action {
            Action::Start { release, host } => {
                instances::start(shared, app, release, host, now, exits)?;
            }
            Action::Admit { instance } => {
                let Some(mut inst) = find(instance) else {
                    continue;
                };
                inst.in_split = true;
                inst.retire_at = None;
                shared.store.upsert_instance(&inst)?;
                record(
                    shared,
                    &inst,
                    EventKind::SplitChanged,
                    &format!("{} ({}) now takes traffic", inst.id, inst.release),
                    now,
                )?;
            }
            Action::KeepWarm { instance, until } => {
                let Some(mut inst) = find(instance) else {
                    continue;
                };
                inst.in_split = false;
                inst.retire_at = Some(*until);
                shared.store.upsert_instance(&inst)?;
            }
            Action::Reuse { instance } => {
                let Some(mut inst) = find(instance) else {
                    continue;
                };
                inst.retire_at = None;
                shared.store.upsert_instance(&inst)?;
            }
            Action::Drain { instance } => {
                let Some(mut inst) = find(instance) else {
                    continue;
                };
                inst.in_split = false;
                inst.state = InstanceState::Draining;
                inst.retire_at = None;
                shared.store.upsert_instance(&inst)?;
                record(
                    shared,
                    &inst,
                    EventKind::InstanceDraining,
                    &format!(
                        "{} ({}) left the split and is draining",
                        inst.id, inst.release
                    ),
                    now,
                )?;
                let live = shared.live().get_mut(&inst.id).map(Live::take_for_drain);
                drains.push((inst, live));
            }
            Action::Migrate { release } => {
                if let Some(d) = &plan
                    .deployment
                    .clone()
                    .or(shared.store.active_deployment(app)?)
                {
                    super::migrate::start(shared, app, d.id, release, super::migrate::Step::Expand);
                }
            }
            Action::Contract { release } => {
                if let Some(d) = &plan.deployment {
                    super::contracts::schedule(shared, app, d.id, release, now)?;
                }
            }
            Action::Lb { host, passing } => lb_endpoint(shared, app, host, *passing, now)?,
            Action::SetCurrent { release } => {
                shared
                    .store
                    .set_current_release(app, release.as_deref(), now)?
            }
        }
    }
    Ok(drains)
}

/// Records `host`'s health endpoint for `app`'s external load balancer; the host gets it with
/// its next split, sent when this round publishes.
fn lb_endpoint(
    shared: &Shared,
    app: &str,
    host: &str,
    passing: bool,
    now: Millis,
) -> anyhow::Result<()> {
    if !shared.store.set_lb_endpoint(app, host, passing, now)? {
        return Ok(());
    }
    let Some(lb) = shared.app(app).and_then(|c| c.external_lb.clone()) else {
        return Ok(());
    };
    let message = if passing {
        format!(
            "{host}'s load-balancer endpoint passes (200): waiting up to {} for traffic to return",
            baton_core::duration::Duration::from_millis(lb.rise_time().as_millis())
        )
    } else {
        format!(
            "{host}'s load-balancer endpoint fails (503): waiting until no request arrives for {} (at most {})",
            lb.quiet,
            lb.settle()
        )
    };
    let deployment = shared.store.active_deployment(app)?.map(|d| d.id);
    shared.event(now, app, deployment, EventKind::LbEndpoint, &message)?;
    Ok(())
}
