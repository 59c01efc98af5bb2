//! Building an app's status view from the store, the live backends and the published split.

use std::collections::BTreeMap;

use baton_core::model::Instance;
use baton_proxy::MetricsSnapshot;

use crate::clock;
use crate::shared::Shared;
use crate::views::{AppStatus, DeploymentView, InstanceView, SplitView, TrafficView};

use super::ApiError;
use super::error::quote;

/// Which environment: `?env=` on app routes.
#[derive(Debug, Default, serde::Deserialize)]
pub struct EnvQuery {
    /// The environment (default: the last one the app runs in, production).
    pub env: Option<String>,
}

/// The unit key of `app` in `env` (default: the last environment it runs in).
pub fn unit_key(shared: &Shared, app: &str, env: Option<&str>) -> Result<String, ApiError> {
    let snapshot = shared.config();
    if !snapshot.config.apps.contains_key(app) {
        return Err(unknown_app(shared, app));
    }
    let envs: Vec<&str> = snapshot
        .units
        .values()
        .filter(|u| u.app == app)
        .map(|u| u.env.as_str())
        .collect();
    let env = match env {
        Some(e) => e,
        None => snapshot
            .config
            .environments
            .iter()
            .rev()
            .map(String::as_str)
            .find(|e| envs.contains(e))
            .expect("an app runs somewhere"),
    };
    if !envs.contains(&env) {
        return Err(ApiError::not_found(format!(
            "{app} does not run in {}: it runs in {}",
            quote(env),
            envs.join(", ")
        )));
    }
    Ok(baton_core::config::unit_key(app, env))
}

/// The status of the unit `key` (`app@env`) now.
pub fn app_status(shared: &Shared, key: &str) -> Result<AppStatus, ApiError> {
    let unit = shared.unit(key).ok_or_else(|| unknown_app(shared, key))?;
    let (config, app) = (&unit.config, key);
    let now = clock::now();
    let deployment = shared.store.active_deployment(app)?;
    let records: Vec<Instance> = shared.store.instances(Some(app), false)?;
    let live = shared.live();
    let instances = records
        .iter()
        .map(|i| InstanceView {
            id: i.id.clone(),
            release: i.release.clone(),
            host: i.host.clone(),
            address: std::net::SocketAddr::new(shared.host_address(&i.host), i.port).to_string(),
            state: i.state.as_str().to_string(),
            in_split: i.in_split,
            pid: i.pid,
            restarts: i.restarts,
            in_flight: live.get(&i.id).map(|l| l.backend.in_flight()).unwrap_or(0),
            requests: live
                .get(&i.id)
                .map(|l| l.backend.metrics().requests)
                .unwrap_or(0),
        })
        .collect();
    let mut per_release: BTreeMap<String, MetricsSnapshot> = BTreeMap::new();
    for i in &records {
        if let Some(l) = live.get(&i.id) {
            per_release
                .entry(i.release.clone())
                .or_default()
                .merge(&l.backend.metrics());
        }
    }
    drop(live);
    let ms = |d: Option<std::time::Duration>| d.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0);
    let traffic = per_release
        .into_iter()
        .filter(|(_, m)| m.requests > 0)
        .map(|(release, m)| TrafficView {
            release,
            requests: m.requests,
            status: m.status,
            connect_errors: m.connect_errors,
            timeouts: m.timeouts,
            p50_ms: ms(m.percentile(0.5)),
            p99_ms: ms(m.percentile(0.99)),
        })
        .collect();
    let table = shared.router.current();
    let mut split = Vec::new();
    if let Some(route) = table.apps.get(app) {
        let total: u32 = route.releases.iter().map(|r| r.weight).sum();
        for r in &route.releases {
            let weight = (r.weight * 100 + total / 2).checked_div(total).unwrap_or(0);
            split.push(SplitView {
                release: r.release.clone(),
                weight,
            });
        }
    }
    Ok(AppStatus {
        app: unit.app.clone(),
        env: unit.env.clone(),
        listen: config.listen.map(|l| l.to_string()).unwrap_or_default(),
        phase: deployment
            .as_ref()
            .map(|d| d.phase.as_str().to_string())
            .unwrap_or_else(|| "idle".into()),
        release: shared.store.current_release(app)?,
        since: shared.store.current_since(app)?,
        instances_wanted: config.instances,
        deployment: deployment.as_ref().map(|d| DeploymentView::of(d, now)),
        instances,
        split,
        traffic,
        verdict: match &deployment {
            Some(d) => shared.store.verdicts(d.id, 1)?.pop(),
            None => None,
        },
        contract: shared.store.latest_contract(app)?,
    })
}

/// The error for an app that is not in the config, listing the ones that are.
pub fn unknown_app(shared: &Shared, app: &str) -> ApiError {
    let snapshot = shared.config();
    let known: Vec<&str> = snapshot.config.apps.keys().map(String::as_str).collect();
    ApiError::not_found(format!(
        "no app named {} in the config; apps: {}",
        quote(app),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
}
