//! The unit config a running deployment started with (recorded with the deployment): the
//! planner, the analysis and the split read it until the deployment ends, so a config reload
//! never changes a rollout's rules. Then the config in force applies again. Only `hosts`
//! (where instances run) always comes from the config in force.

use std::sync::Arc;

use baton_core::config::AppConfig;
use baton_core::model::Deployment;

use crate::shared::Shared;

/// The config unit `key` runs with now: its deployment's while one runs, else the one in force.
/// Pins it in [`Shared::pinned`] so every reader of [`Shared::app`] agrees. None when the unit
/// is not in the config in force.
pub(crate) fn config_for(
    shared: &Shared,
    key: &str,
    deployment: Option<&Deployment>,
) -> Option<Arc<AppConfig>> {
    let current = shared.config().apps.get(key).cloned()?;
    let mut pinned = shared.pinned.lock().unwrap_or_else(|e| e.into_inner());
    let Some(d) = deployment else {
        pinned.remove(key);
        return Some(current);
    };
    if let Some((id, config)) = pinned.get_mut(key)
        && *id == d.id
    {
        if config.hosts != current.hosts {
            Arc::make_mut(config).hosts = current.hosts.clone();
        }
        return Some(config.clone());
    }
    let recorded = match shared.store.deployment_config(d.id) {
        Ok(Some(text)) => match serde_json::from_str::<AppConfig>(&text) {
            Ok(config) => Some(Arc::new(config)),
            Err(error) => {
                tracing::error!(deployment = d.id, %error, "the config recorded with a deployment does not parse; it runs with the config in force");
                None
            }
        },
        // Recorded before deployments kept their config (schema 11): the config in force.
        Ok(None) => None,
        Err(error) => {
            tracing::error!(deployment = d.id, %error, "cannot read the config recorded with a deployment");
            return Some(current);
        }
    };
    // Where instances run is not a rollout rule: a host removed by a reload is left at once
    // (the planner replaces what it ran), as after a restart.
    let config = match recorded {
        Some(mut c) => {
            Arc::make_mut(&mut c).hosts = current.hosts.clone();
            c
        }
        None => current,
    };
    pinned.insert(key.to_string(), (d.id, config.clone()));
    Some(config)
}

/// Pins the recorded config of every unit's active deployment: at start, before instances
/// are adopted with their health checks, so they never see the file's settings first.
pub fn pin_all(shared: &Shared) {
    for key in shared.config().units.keys() {
        match shared.store.active_deployment(key) {
            Ok(d) => {
                config_for(shared, key, d.as_ref());
            }
            Err(error) => tracing::error!(app = %key, %error, "cannot read the active deployment"),
        }
    }
}

/// The config to record with a new deployment of unit `key`: the one in force, as JSON.
pub fn to_record(config: &AppConfig) -> String {
    serde_json::to_string(config).expect("the config serializes")
}
