//! Units a config reload removed: their listener is gone; their instances leave the split,
//! drain and stop (as in a scale to zero), then the unit is forgotten.

use std::sync::Arc;

use baton_core::model::Millis;
use baton_core::plan::{Action, Plan};
use tokio::sync::mpsc;

use super::{Exited, Ticked, act};
use crate::shared::Shared;

/// Drains the instances of every retired unit; forgets a unit once none is left running.
pub(crate) fn tick(
    shared: &Arc<Shared>,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> Vec<Ticked> {
    let keys: Vec<String> = shared
        .retired
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    let mut out = Vec::new();
    for key in keys {
        match drain_unit(shared, &key, now, exits) {
            Ok(Some(ticked)) => out.push(ticked),
            Ok(None) => {
                shared
                    .retired
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                tracing::info!(app = %key, "every instance of the removed app stopped");
            }
            Err(e) => {
                tracing::error!(app = %key, error = %format!("{e:#}"), "draining a removed app failed")
            }
        }
    }
    out
}

/// None once the unit has no instance left.
fn drain_unit(
    shared: &Arc<Shared>,
    key: &str,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<Option<Ticked>> {
    let all = shared.store.instances(Some(key), false)?;
    if all.is_empty() {
        return Ok(None);
    }
    let plan = Plan {
        actions: all
            .iter()
            .filter(|i| !i.state.is_leaving())
            .map(|i| Action::Drain {
                instance: i.id.clone(),
            })
            .collect(),
        ..Plan::default()
    };
    let drains = act::apply(shared, key, &all, &plan, now, exits)?;
    Ok(Some(Ticked {
        ends: None,
        drains,
        busy: true,
        wake_at: None,
    }))
}
