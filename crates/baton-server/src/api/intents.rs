//! Operator intents on the active deployment (promote, pause, resume, abort) and the analysis
//! verdicts. Intents are recorded for the controller to obey; they survive a restart.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use baton_core::model::{Intents, Promote, Strategy};
use baton_store::StoredVerdict;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::status::unknown_app;
use crate::clock;
use crate::shared::Shared;
use crate::views::DeploymentView;

type S = State<Arc<Shared>>;

/// `POST /v1/apps/{app}/promote` body.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct PromoteRequest {
    /// Skip every remaining step and analysis.
    #[serde(default)]
    pub full: bool,
}

fn record(shared: &Shared, app: &str, what: &str, change: impl FnOnce(&mut Intents), canary_only: bool) -> Result<Json<DeploymentView>, ApiError> {
    if shared.app(app).is_none() {
        return Err(unknown_app(shared, app));
    }
    if canary_only
        && let Some(d) = shared.store.active_deployment(app)?
        && d.strategy != Strategy::Canary
    {
        return Err(ApiError::conflict(format!("{what} applies to canary deployments; deployment #{} of {app} is {}", d.id, d.strategy)));
    }
    let d = shared
        .store
        .set_intents(app, change)?
        .ok_or_else(|| ApiError::conflict(format!("{app} has no deployment in progress to {what}")))?;
    tracing::info!(app = %app, deployment = d.id, "operator asked to {what}");
    shared.wake.notify_one();
    Ok(Json(DeploymentView::of(&d, clock::now())))
}

pub async fn promote(State(shared): S, Path(app): Path<String>, body: Result<Json<PromoteRequest>, JsonRejection>) -> Result<Json<DeploymentView>, ApiError> {
    let full = match body {
        Ok(Json(b)) => b.full,
        Err(JsonRejection::MissingJsonContentType(_)) => false,
        Err(e) => return Err(ApiError::bad_request(format!("invalid JSON body: {e}; expected {{\"full\": true|false}}"))),
    };
    let promote = if full { Promote::Full } else { Promote::Step };
    record(&shared, &app, "promote", |i| i.promote = Some(promote), true)
}

pub async fn pause(State(shared): S, Path(app): Path<String>) -> Result<Json<DeploymentView>, ApiError> {
    record(&shared, &app, "pause", |i| i.pause = true, false)
}

pub async fn resume(State(shared): S, Path(app): Path<String>) -> Result<Json<DeploymentView>, ApiError> {
    record(&shared, &app, "resume", |i| i.pause = false, false)
}

pub async fn abort(State(shared): S, Path(app): Path<String>) -> Result<Json<DeploymentView>, ApiError> {
    record(&shared, &app, "abort", |i| i.abort = true, false)
}

/// `GET /v1/apps/{app}/analysis`: the current (or last) deployment and its verdicts.
#[derive(Debug, Serialize, Deserialize)]
pub struct AnalysisView {
    /// The deployment judged.
    pub deployment: DeploymentView,
    /// Its verdicts, oldest first.
    pub verdicts: Vec<StoredVerdict>,
}

pub async fn analysis(State(shared): S, Path(app): Path<String>) -> Result<Json<AnalysisView>, ApiError> {
    if shared.app(&app).is_none() {
        return Err(unknown_app(&shared, &app));
    }
    let d = match shared.store.active_deployment(&app)? {
        Some(d) => d,
        None => shared
            .store
            .deployments(Some(&app), 1)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(format!("{app} has no deployments yet")))?,
    };
    let verdicts = shared.store.verdicts(d.id, 10_000)?;
    Ok(Json(AnalysisView { deployment: DeploymentView::of(&d, clock::now()), verdicts }))
}
