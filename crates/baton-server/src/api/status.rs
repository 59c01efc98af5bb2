//! Building an app's status view from the store, the live backends and the published split.

use baton_core::model::Instance;

use crate::clock;
use crate::shared::Shared;
use crate::views::{AppStatus, DeploymentView, InstanceView, SplitView};

use super::ApiError;

/// The status of `app` now.
pub fn app_status(shared: &Shared, app: &str) -> Result<AppStatus, ApiError> {
    let config = shared.app(app).ok_or_else(|| unknown_app(shared, app))?;
    let now = clock::now();
    let deployment = shared.store.active_deployment(app)?;
    let instances: Vec<Instance> = shared.store.instances(Some(app), false)?;
    let live = shared.live();
    let instances = instances
        .iter()
        .map(|i| InstanceView {
            id: i.id.clone(),
            release: i.release.clone(),
            address: format!("127.0.0.1:{}", i.port),
            state: i.state.as_str().to_string(),
            in_split: i.in_split,
            pid: i.pid,
            restarts: i.restarts,
            in_flight: live.get(&i.id).map(|l| l.backend.in_flight()).unwrap_or(0),
        })
        .collect();
    drop(live);
    let table = shared.router.current();
    let mut split = Vec::new();
    if let Some(route) = table.apps.get(app) {
        let total: u32 = route.releases.iter().map(|r| r.weight).sum();
        for r in &route.releases {
            let weight = (r.weight * 100 + total / 2).checked_div(total).unwrap_or(0);
            split.push(SplitView { release: r.release.clone(), weight });
        }
    }
    Ok(AppStatus {
        app: app.to_string(),
        listen: config.listen.to_string(),
        phase: deployment.as_ref().map(|d| d.phase.as_str().to_string()).unwrap_or_else(|| "idle".into()),
        release: shared.store.current_release(app)?,
        deployment: deployment.as_ref().map(|d| DeploymentView::of(d, now)),
        instances,
        split,
    })
}

/// The error for an app that is not in the config, listing the ones that are.
pub fn unknown_app(shared: &Shared, app: &str) -> ApiError {
    let known: Vec<&str> = shared.config.apps.keys().map(String::as_str).collect();
    ApiError::not_found(format!("no app named {app:?} in the config; apps: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") }))
}
