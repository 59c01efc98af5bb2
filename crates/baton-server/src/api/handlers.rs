//! Route handlers: validate, record the intent, wake the controller, answer with the state.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use baton_core::model::{EventKind, Release, Strategy};
use baton_store::{NewDeployment, ReleaseOutcome, StoreError};
use serde::{Deserialize, Serialize};

use super::error::quote;
use super::status::{EnvQuery, app_status, unit_key, unknown_app};
use super::{ApiError, upload};
use crate::clock;
use crate::shared::Shared;
use crate::views::{AppStatus, DeployRequest, DeploymentDetail, DeploymentView, ReleaseCreated};

type S = State<Arc<Shared>>;

pub async fn list_apps(State(shared): S) -> Result<Json<Vec<AppStatus>>, ApiError> {
    let apps: Result<Vec<_>, _> = shared
        .config()
        .units
        .keys()
        .map(|a| app_status(&shared, a))
        .collect();
    Ok(Json(apps?))
}

pub async fn get_app(
    State(shared): S,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Json<AppStatus>, ApiError> {
    let key = unit_key(&shared, &app, q.env.as_deref())?;
    Ok(Json(app_status(&shared, &key)?))
}

/// A release's metadata: from the query, or from the first line of a
/// [`RELEASE_ENVELOPE`] body.
#[derive(Deserialize, Serialize, Default)]
pub struct ReleaseQuery {
    /// The version.
    pub version: String,
    /// Free-form notes.
    pub notes: Option<String>,
    /// The git commit it was built from.
    #[serde(default)]
    pub commit: Option<String>,
    /// The full changelog (markdown).
    #[serde(default)]
    pub changelog: Option<String>,
    /// The release notes (markdown).
    #[serde(default)]
    pub release_notes: Option<String>,
}

/// The content type of a release upload that carries its metadata: one line of JSON
/// ([`ReleaseQuery`]), a newline, then the artifact (tar or tar.gz). A plain tar with
/// `?version=` works too (curl-friendly).
pub const RELEASE_ENVELOPE: &str = "application/vnd.baton.release";

/// Stores an artifact, streamed from the body within `[artifacts]`, and records the release.
pub async fn create_release(
    State(shared): S,
    Path(app): Path<String>,
    query: Result<Query<ReleaseQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<ReleaseCreated>), ApiError> {
    let config = shared.config();
    if !config.config.apps.contains_key(&app) {
        return Err(unknown_app(&shared, &app));
    }
    let limits = config.config.artifacts;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_upload_bytes) {
        return Err(upload::too_large_upload(limits.max_upload_bytes));
    }
    let envelope = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        == Some(RELEASE_ENVELOPE);
    let query = match (envelope, query) {
        (true, _) => None,
        (false, Ok(Query(q))) => Some(q),
        (false, Err(_)) => {
            return Err(ApiError::bad_request(
                "missing ?version=: the release's version",
            ));
        }
    };
    if let Some(q) = &query {
        valid_version(&q.version)?;
    }
    let mut upload = upload::Upload::start(body, limits.max_upload_bytes);
    let s = shared.clone();
    let (q, digest) = tokio::task::spawn_blocking(move || {
        let q = match query {
            Some(q) => q,
            None => {
                let line = upload.metadata_line()?;
                let q: ReleaseQuery = serde_json::from_slice(&line)
                    .map_err(|e| ApiError::bad_request(format!("invalid release metadata: {e}")))?;
                valid_version(&q.version)?;
                q
            }
        };
        let store_limits = baton_store::ImportLimits {
            max_unpacked_bytes: limits.max_unpacked_bytes,
            max_entries: limits.max_entries,
        };
        match s.artifacts.import(&mut upload, &store_limits) {
            Ok(digest) => Ok((q, digest)),
            Err(e) => Err(upload.refusal(e)),
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("artifact import task failed: {e}"))??;
    let release = Release {
        app: app.clone(),
        version: q.version.clone(),
        digest,
        notes: q.notes,
        created_at: clock::now(),
        commit: q.commit,
        changelog: q.changelog,
        release_notes: q.release_notes,
    };
    let created = record_release(&shared, &release)?;
    let release = shared.store.release(&app, &q.version)?.unwrap_or(release);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ReleaseCreated { release, created })))
}

/// Records an uploaded release; whether it is new. Under the artifact store's hold, so an
/// artifact is removed after a version conflict only if no release names it, and never
/// while another upload of the same content records its release.
fn record_release(shared: &Shared, release: &Release) -> Result<bool, ApiError> {
    let held = shared.artifacts.hold();
    if !shared.artifacts.contains(&release.digest) {
        // Removed after a conflicting upload of the same content, once this one was stored.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "retry",
            "the artifact was removed while it was being stored (another upload of the same \
             content was refused): send it again",
        ));
    }
    match shared.store.create_release(release) {
        Ok(outcome) => Ok(matches!(outcome, ReleaseOutcome::Created)),
        Err(e @ StoreError::VersionConflict { .. }) => {
            if !shared.store.digest_in_use(&release.digest)?
                && let Err(error) = shared.artifacts.remove(&held, &release.digest)
            {
                tracing::warn!(%error, "could not remove the artifact of a refused release");
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn valid_version(v: &str) -> Result<(), ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid version {}: use at most 128 letters, digits and . _ - + (e.g. 1.4.0)",
            quote(v)
        )))
    }
}

pub async fn list_releases(
    State(shared): S,
    Path(app): Path<String>,
) -> Result<Json<Vec<Release>>, ApiError> {
    if !shared.config().config.apps.contains_key(&app) {
        return Err(unknown_app(&shared, &app));
    }
    Ok(Json(shared.store.releases(&app)?))
}

/// The longest `actor` a deployment request may name, in characters: it is stored in the
/// deployment's trigger and printed by `history`.
pub const MAX_ACTOR_CHARS: usize = 256;

fn parse_body(body: Result<Json<DeployRequest>, JsonRejection>) -> Result<DeployRequest, ApiError> {
    match body {
        Ok(Json(b)) => {
            let n = b.actor.as_deref().map_or(0, |a| a.chars().count());
            if n > MAX_ACTOR_CHARS {
                return Err(ApiError::bad_request(format!(
                    "\"actor\" is {n} characters long; at most {MAX_ACTOR_CHARS} are allowed: send a shorter name (e.g. the user's login)"
                )));
            }
            Ok(b)
        }
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(DeployRequest::default()),
        Err(e) => Err(ApiError::json_body(
            &e,
            r#"{"release": "1.4.0", "strategy": "rolling"}"#,
        )),
    }
}

/// Records the intent to deploy a release; the controller carries it out.
pub async fn deploy(
    State(shared): S,
    Path(app): Path<String>,
    body: Result<Json<DeployRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<DeploymentView>), ApiError> {
    let req = parse_body(body)?;
    let key = unit_key(&shared, &app, req.env.as_deref())?;
    let version = match (&req.release, &req.from_env) {
        (Some(v), None) => v.clone(),
        (None, Some(from)) => {
            let from_key = unit_key(&shared, &app, Some(from))?;
            shared.store.current_release(&from_key)?.ok_or_else(|| {
                ApiError::conflict(format!(
                    "nothing serves {app} in {from} yet: there is no release to promote from it"
                ))
            })?
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either a release or --from ENV, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing \"release\": the version to deploy (or \"from_env\")",
            ));
        }
    };
    let (trigger, forced) = promotion_gate(&shared, &app, &key, &version, &req, "deploy")?;
    let created = create(
        &shared,
        &key,
        version,
        req.strategy.as_deref(),
        &trigger,
        req.force,
    )?;
    record_forced(&shared, &key, created.1.id, forced)?;
    Ok(created)
}

/// Records a deployment back to the previous release (or to `release`).
///
/// A release that already served in this environment goes back without the promotion gate:
/// that is what a rollback is. One that never did (`--to` a release that skipped the previous
/// environment) passes the same gate as a deploy, and `force` past it is recorded the same way.
/// `from_env` is refused: a rollback goes back to what served *here*; promoting what serves in
/// another environment is `deploy --from`.
pub async fn rollback(
    State(shared): S,
    Path(app): Path<String>,
    body: Result<Json<DeployRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<DeploymentView>), ApiError> {
    let req = parse_body(body)?;
    let key = unit_key(&shared, &app, req.env.as_deref())?;
    if let Some(from) = &req.from_env {
        return Err(ApiError::bad_request(format!(
            "rollback does not take \"from_env\" ({from:?}): it goes back to a release that served in this environment; to deploy what serves in another environment use `baton deploy {app} --from ENV`"
        )));
    }
    let version = match &req.release {
        Some(v) => v.clone(),
        None => shared.store.previous_release(&key)?.ok_or_else(|| {
            ApiError::conflict(format!("{app} has no earlier successful release to roll back to; name one with --to VERSION"))
        })?,
    };
    let here = shared.store.deployments(Some(&key), 10_000)?;
    let (mut trigger, forced) =
        if baton_core::promotion::served_for(&here, &version, clock::now()).is_some() {
            ("rollback".to_string(), None)
        } else {
            promotion_gate(&shared, &app, &key, &version, &req, "rollback")?
        };
    if req.force && forced.is_none() {
        // Past the contract mark (checked in `create`).
        trigger = format!(
            "rollback --force by {}",
            req.actor.as_deref().unwrap_or("an operator")
        );
    }
    let created = create(
        &shared,
        &key,
        version,
        req.strategy.as_deref(),
        &trigger,
        req.force,
    )?;
    record_forced(&shared, &key, created.1.id, forced)?;
    Ok(created)
}

/// The promotion gate of unit `key` for `version` (docs/DESIGN.md I5; pure check in
/// crates/baton-core/src/promotion.rs): the trigger to record (`{verb}` or `{verb} --force by
/// WHO`) and, when forced, the note saying what was skipped. A 409 when refused without force.
fn promotion_gate(
    shared: &Shared,
    app: &str,
    key: &str,
    version: &str,
    req: &DeployRequest,
    verb: &str,
) -> Result<(String, Option<String>), ApiError> {
    let unit = shared.unit(key).expect("resolved");
    let Some(previous) = &unit.previous else {
        return Ok((verb.to_string(), None));
    };
    let previous_key = baton_core::config::unit_key(app, previous);
    let history = shared.store.deployments(Some(&previous_key), 10_000)?;
    let gate = baton_core::promotion::check(
        app,
        version,
        &unit.env,
        previous,
        &history,
        shared.config().config.promotion.soak,
        clock::now(),
    );
    match gate {
        Ok(()) => Ok((verb.to_string(), None)),
        Err(refusal) if req.force => {
            let who = req.actor.clone().unwrap_or_else(|| "an operator".into());
            Ok((
                format!("{verb} --force by {who}"),
                Some(format!("promotion gate forced by {who}: {refusal}")),
            ))
        }
        Err(refusal) => Err(ApiError::conflict(refusal.to_string())),
    }
}

/// Records what a forced deployment skipped, as an event of that deployment.
fn record_forced(
    shared: &Shared,
    key: &str,
    id: i64,
    forced: Option<String>,
) -> Result<(), ApiError> {
    if let Some(note) = forced {
        shared.event(
            clock::now(),
            key,
            Some(id),
            EventKind::DeploymentCreated,
            &note,
        )?;
    }
    Ok(())
}

/// Records a deployment of `version` to the unit `key` (`app@env`).
fn create(
    shared: &Shared,
    key: &str,
    version: String,
    strategy: Option<&str>,
    trigger: &str,
    force: bool,
) -> Result<(StatusCode, Json<DeploymentView>), ApiError> {
    // The config in force, never a finished deployment's: the new deployment records it and
    // runs with it to its end, whatever reloads happen meanwhile.
    let config = shared
        .config()
        .apps
        .get(key)
        .cloned()
        .ok_or_else(|| unknown_app(shared, key))?;
    let (app, env) = baton_core::config::split_key(key);
    let strategy: Strategy = match strategy {
        Some(s) => s.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "unknown strategy {}: expected rolling, blue-green, canary or dark",
                quote(s)
            ))
        })?,
        None => config.strategy,
    };
    let Some(target) = shared.store.release(app, &version)? else {
        // Only a valid version is worth repeating in the command to run.
        let hint = if valid_version(&version).is_ok() {
            version.as_str()
        } else {
            "VERSION"
        };
        return Err(ApiError::not_found(format!(
            "{app} has no release {}; create it with `baton release create {app} {hint} --artifact PATH`",
            quote(&version)
        )));
    };
    // A release older than the one that contracted the schema may not run against it.
    if let Some(contracted) = shared.store.contracted_release(key)?
        && contracted != version
        && let Some(c) = shared.store.release(app, &contracted)?
        && target.created_at < c.created_at
        && !force
    {
        return Err(ApiError::conflict(format!(
            "{app} in {env} ran the contract migration of {contracted}: {version} is older and may not work with the contracted schema; deploy {contracted} or newer, or pass --force (recorded)"
        )));
    }
    // A contract that started may finish at any moment: going below it now would race it.
    if let Some(running) = shared
        .store
        .open_contracts(key)?
        .into_iter()
        .find(|c| c.state == baton_store::ContractState::Running)
        && running.release != version
        && let Some(c) = shared.store.release(app, &running.release)?
        && target.created_at < c.created_at
        && !force
    {
        return Err(ApiError::conflict(format!(
            "{app} in {env} is running the contract migration of {}: {version} is older and may not work with the contracted schema; wait for it (`baton status {app} --env {env}`), or pass --force (recorded)",
            running.release
        )));
    }
    let now = clock::now();
    let from = shared.store.current_release(key)?;
    if strategy == Strategy::Dark && from.as_deref().is_none_or(|f| f == version) {
        return Err(ApiError::conflict(format!(
            "a dark launch copies the requests of the release users see to another one; {app} in {env} {}: deploy it with `--strategy rolling` first",
            match &from {
                Some(f) => format!("already serves {}", quote(f)),
                None => "serves nothing yet".to_string(),
            }
        )));
    }
    let msg = format!(
        "{trigger}: {app} in {env} {} -> {version} ({strategy}) recorded as #{{id}}",
        from.as_deref().unwrap_or("nothing")
    );
    let new = NewDeployment {
        app: key.to_string(),
        from: from.clone(),
        to: version.clone(),
        strategy,
        trigger: trigger.to_string(),
        now,
        config: Some(crate::controller::pinned::to_record(&config)),
    };
    // The deployment and its first event in one transaction: the controller may start it at
    // once, and its `started` must never come before `created`.
    let (d, event) = shared
        .store
        .create_deployment_with_event(&new, Some((EventKind::DeploymentCreated, &msg)))?;
    if let Some(e) = event {
        shared.published(&e);
    }
    shared.wake.notify_one();
    Ok((StatusCode::CREATED, Json(DeploymentView::of(&d, now))))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<usize>,
    env: Option<String>,
}

pub async fn history(
    State(shared): S,
    Path(app): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<DeploymentView>>, ApiError> {
    let key = unit_key(&shared, &app, q.env.as_deref())?;
    let now = clock::now();
    let list = shared
        .store
        .deployments(Some(&key), q.limit.unwrap_or(50).min(1000))?;
    Ok(Json(
        list.iter().map(|d| DeploymentView::of(d, now)).collect(),
    ))
}

pub async fn deployment(
    State(shared): S,
    Path(id): Path<String>,
) -> Result<Json<DeploymentDetail>, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "deployment id {} is not a number: use the #N that `baton history APP` shows",
            quote(&id)
        ))
    })?;
    let d = shared
        .store
        .deployment(id)?
        .ok_or_else(|| ApiError::not_found(format!("no deployment {id}")))?;
    let events = shared.store.events(None, Some(id), 0, 10_000)?;
    Ok(Json(DeploymentDetail {
        deployment: DeploymentView::of(&d, clock::now()),
        events,
    }))
}
