//! Operator intents on the active deployment (promote, pause, resume, abort) and the analysis
//! verdicts. Intents are recorded for the controller to obey; they survive a restart.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use baton_core::model::{Intents, Promote, Strategy};
use baton_store::StoredVerdict;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::status::{EnvQuery, unit_key};
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

fn record(
    shared: &Shared,
    app: &str,
    env: Option<&str>,
    what: &str,
    change: impl FnOnce(&mut Intents),
    canary_only: bool,
) -> Result<Json<DeploymentView>, ApiError> {
    let key = unit_key(shared, app, env)?;
    let app = key.as_str();
    if canary_only
        && let Some(d) = shared.store.active_deployment(app)?
        && !matches!(d.strategy, Strategy::Canary | Strategy::Dark)
    {
        return Err(ApiError::conflict(format!(
            "{what} applies to canary and dark deployments; deployment #{} of {app} is {}",
            d.id, d.strategy
        )));
    }
    let d = shared.store.set_intents(app, change)?.ok_or_else(|| {
        ApiError::conflict(format!("{app} has no deployment in progress to {what}"))
    })?;
    tracing::info!(app = %app, deployment = d.id, "operator asked to {what}");
    shared.wake.notify_one();
    Ok(Json(DeploymentView::of(&d, clock::now())))
}

pub async fn promote(
    State(shared): S,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
    body: Result<Json<PromoteRequest>, JsonRejection>,
) -> Result<Json<DeploymentView>, ApiError> {
    let full = match body {
        Ok(Json(b)) => b.full,
        Err(JsonRejection::MissingJsonContentType(_)) => false,
        Err(e) => return Err(ApiError::json_body(&e, r#"{"full": true|false}"#)),
    };
    let promote = if full { Promote::Full } else { Promote::Step };
    record(
        &shared,
        &app,
        q.env.as_deref(),
        "promote",
        |i| i.promote = Some(promote),
        true,
    )
}

pub async fn pause(
    State(shared): S,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Json<DeploymentView>, ApiError> {
    record(
        &shared,
        &app,
        q.env.as_deref(),
        "pause",
        |i| i.pause = true,
        false,
    )
}

pub async fn resume(
    State(shared): S,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Json<DeploymentView>, ApiError> {
    record(
        &shared,
        &app,
        q.env.as_deref(),
        "resume",
        |i| {
            i.pause = false;
            i.resume = true;
        },
        false,
    )
}

pub async fn abort(
    State(shared): S,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Json<DeploymentView>, ApiError> {
    record(
        &shared,
        &app,
        q.env.as_deref(),
        "abort",
        |i| i.abort = true,
        false,
    )
}

/// `GET /v1/apps/{app}/analysis`: the current (or last) deployment and its verdicts.
#[derive(Debug, Serialize, Deserialize)]
pub struct AnalysisView {
    /// The deployment judged.
    pub deployment: DeploymentView,
    /// Its verdicts, oldest first.
    pub verdicts: Vec<StoredVerdict>,
}

pub async fn analysis(
    State(shared): S,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Json<AnalysisView>, ApiError> {
    let key = unit_key(&shared, &app, q.env.as_deref())?;
    let app = key;
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
    Ok(Json(AnalysisView {
        deployment: DeploymentView::of(&d, clock::now()),
        verdicts,
    }))
}

/// `GET /v1/apps/{app}/breakers`: the app's circuit breakers in one environment.
pub async fn breakers(
    State(shared): S,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Json<crate::breakers::BreakersView>, ApiError> {
    let key = unit_key(&shared, &app, q.env.as_deref())?;
    let breakers = shared
        .router
        .breakers(&key)
        .into_iter()
        .map(crate::breakers::BreakerView::of)
        .collect();
    let ejected = shared
        .router
        .ejected(&key)
        .into_iter()
        .map(crate::breakers::EjectedView::of)
        .collect();
    Ok(Json(crate::breakers::BreakersView {
        app: key,
        breakers,
        ejected,
    }))
}
