//! Performing a plan: every state change is committed to the store before the action that
//! depends on it (DESIGN.md "Persistence").

use std::sync::Arc;

use baton_core::model::{EventKind, Instance, InstanceState, Millis};
use baton_core::plan::{Action, Plan};
use tokio::sync::mpsc;

use super::{Exited, instances, record};
use crate::shared::{Live, Shared};

/// Applies `plan` for `app`; returns the drains to start once the new split is published.
pub fn apply(shared: &Arc<Shared>, app: &str, all: &[Instance], plan: &Plan, now: Millis, exits: &mpsc::UnboundedSender<Exited>) -> anyhow::Result<Vec<(Instance, Option<Live>)>> {
    let find = |id: &str| all.iter().find(|i| i.id == id).cloned();
    let mut drains = Vec::new();
    // The deployment's new phase first: if Baton dies right after, it resumes from here.
    if let Some(d) = &plan.deployment {
        shared.store.update_deployment(d)?;
    }
    let deployment = plan.deployment.as_ref().map(|d| d.id).or(shared.store.active_deployment(app)?.map(|d| d.id));
    for (kind, message) in &plan.events {
        shared.store.append_event(now, app, deployment, *kind, message)?;
        tracing::info!(app = %app, event = %kind, "{message}");
    }
    for action in &plan.actions {
        match action {
            Action::Start { release } => instances::start(shared, app, release, now, exits)?,
            Action::Admit { instance } => {
                let Some(mut inst) = find(instance) else { continue };
                inst.in_split = true;
                inst.retire_at = None;
                shared.store.upsert_instance(&inst)?;
                record(shared, &inst, EventKind::SplitChanged, &format!("{} ({}) now takes traffic", inst.id, inst.release), now)?;
            }
            Action::KeepWarm { instance, until } => {
                let Some(mut inst) = find(instance) else { continue };
                inst.in_split = false;
                inst.retire_at = Some(*until);
                shared.store.upsert_instance(&inst)?;
            }
            Action::Reuse { instance } => {
                let Some(mut inst) = find(instance) else { continue };
                inst.retire_at = None;
                shared.store.upsert_instance(&inst)?;
            }
            Action::Drain { instance } => {
                let Some(mut inst) = find(instance) else { continue };
                inst.in_split = false;
                inst.state = InstanceState::Draining;
                inst.retire_at = None;
                shared.store.upsert_instance(&inst)?;
                record(shared, &inst, EventKind::InstanceDraining, &format!("{} ({}) left the split and is draining", inst.id, inst.release), now)?;
                let live = shared.live().get_mut(&inst.id).map(|l| {
                    l.stopping = true;
                    Live { backend: l.backend.clone(), process: l.process.clone(), checker: l.checker.take(), stopping: true }
                });
                drains.push((inst, live));
            }
            Action::SetCurrent { release } => shared.store.set_current_release(app, release.as_deref(), now)?,
        }
    }
    Ok(drains)
}
