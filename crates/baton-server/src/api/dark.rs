//! `GET /v1/apps/{app}/dark`: the app's latest dark launch: what was copied, dropped and
//! compared, the differences per route with samples, and the dark step's latest verdict.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use baton_proxy::mirror::DarkReport;
use baton_store::StoredVerdict;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::status::{EnvQuery, unit_key};
use crate::controller::dark::in_dark_step;
use crate::shared::Shared;

/// The answer of `GET /v1/apps/{app}/dark`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DarkView {
    /// The unit (`app` or `app@env`).
    pub app: String,
    /// The deployment the launch belongs to.
    pub deployment: i64,
    /// The dark release.
    pub release: String,
    /// The release users see.
    pub stable: Option<String>,
    /// Copies flow now (the deployment is in its dark step).
    pub copying: bool,
    /// The dark step's latest verdict.
    pub verdict: Option<StoredVerdict>,
    /// Counters and the differences per route.
    pub report: DarkReport,
}

pub async fn dark(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Json<DarkView>, ApiError> {
    let key = unit_key(&shared, &app, q.env.as_deref())?;
    let Some(launch) = shared.mirrors.get(&key) else {
        return Err(ApiError::not_found(format!(
            "{key} has had no dark launch since Baton started; start one with `baton deploy {app} VERSION --strategy dark`"
        )));
    };
    let d = shared.store.deployment(launch.deployment)?;
    let copying = d.as_ref().is_some_and(in_dark_step);
    let verdict = shared
        .store
        .verdicts(launch.deployment, 10_000)?
        .into_iter()
        .rfind(|v| v.step == 0);
    Ok(Json(DarkView {
        app: key,
        deployment: launch.deployment,
        release: launch.release,
        stable: launch.stable,
        copying,
        verdict,
        report: launch.mirror.report(),
    }))
}
