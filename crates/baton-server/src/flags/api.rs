//! The admin API's flag routes (behind the API token): `GET /v1/apps/{app}/flags` (every
//! flag in force with its source and any breaker holding it off), `POST
//! /v1/apps/{app}/flags/{flag}` (a live change, recorded with its actor as a `flag_changed`
//! event), `POST /v1/apps/{app}/flag-tokens` (a read-only OFREP token, shown once), `GET`
//! there (every token, never a secret) and `POST /v1/apps/{app}/flag-tokens/{id}/revoke`.

use std::io::Read;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use baton_core::flags::{FlagRule, FlagSpec, valid_flag_name};
use baton_store::{FlagChange, FlagTokenRecord, Revoked};
use serde::{Deserialize, Serialize};

use super::{Source, load_stored, secret_sha256};
use crate::api::ApiError;
use crate::api::status::unknown_app;
use crate::api::{MAX_ACTOR_CHARS, quote};
use crate::clock;
use crate::shared::Shared;

/// `?env=ENV`
#[derive(Debug, Default, Deserialize)]
pub struct EnvQuery {
    /// Only this environment.
    pub env: Option<String>,
}

/// One flag in force, as `baton flags` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlagView {
    /// The flag.
    pub name: String,
    /// The environment.
    pub env: String,
    /// `on`, `off`, `10%`, `10% + 1 rule`.
    pub summary: String,
    /// The definition in force.
    pub spec: FlagSpec,
    /// `file` or `live`.
    pub source: String,
    /// Who changed it live.
    pub actor: Option<String>,
    /// When.
    pub changed_at: Option<i64>,
    /// A breaker's reason while it holds the flag off.
    pub forced_off: Option<String>,
}

/// `POST /v1/apps/{app}/flags/{flag}`: what changes; fields left out keep their value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSetRequest {
    /// The environment (default: the app's last one in `environments`).
    #[serde(default)]
    pub env: Option<String>,
    /// On or off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The rollout percentage.
    #[serde(default)]
    pub percent: Option<f64>,
    /// The targeting rules (replace the old ones).
    #[serde(default, rename = "match")]
    pub rules: Option<Vec<FlagRule>>,
    /// Drop the live definition: `baton.toml`'s is in force again.
    #[serde(default)]
    pub reset: bool,
    /// Who asks (recorded in the event).
    #[serde(default)]
    pub actor: Option<String>,
}

/// `POST /v1/apps/{app}/flag-tokens`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagTokenRequest {
    /// The environment (default: the app's last one).
    #[serde(default)]
    pub env: Option<String>,
    /// Who asks.
    #[serde(default)]
    pub actor: Option<String>,
}

/// A new OFREP token: the secret is shown only here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlagTokenCreated {
    /// Its id.
    pub id: i64,
    /// The app.
    pub app: String,
    /// The environment.
    pub env: String,
    /// The secret.
    pub token: String,
}

/// The environment `asked` for `app` (or its last one), if the app runs there.
fn resolve_env(shared: &Shared, app: &str, asked: Option<&str>) -> Result<String, ApiError> {
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
    let order = &snapshot.config.environments;
    match asked {
        Some(e) if envs.contains(&e) => Ok(e.to_string()),
        Some(e) => Err(ApiError::not_found(format!(
            "app {app} does not run in environment {}; it runs in: {}; pick one with --env",
            quote(e),
            envs.join(", ")
        ))),
        None => Ok(order
            .iter()
            .rev()
            .find(|e| envs.contains(&e.as_str()))
            .cloned()
            .unwrap_or_default()),
    }
}

fn check_actor(actor: Option<&str>) -> Result<String, ApiError> {
    let actor = actor.unwrap_or("an operator");
    let n = actor.chars().count();
    if n > MAX_ACTOR_CHARS {
        return Err(ApiError::bad_request(format!(
            "\"actor\" is {n} characters long; at most {MAX_ACTOR_CHARS} are allowed: send a shorter name (e.g. the user's login)"
        )));
    }
    Ok(actor.to_string())
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Json<Vec<FlagView>>, ApiError> {
    if let Some(env) = &q.env {
        resolve_env(&shared, &app, Some(env))?;
    } else if !shared.config().config.apps.contains_key(&app) {
        return Err(unknown_app(&shared, &app));
    }
    let snap = shared.flags.snapshot();
    let mut out = Vec::new();
    for ((a, env), flags) in &snap.units {
        if *a != app || q.env.as_ref().is_some_and(|e| e != env) {
            continue;
        }
        for (name, e) in flags {
            let (source, actor, changed_at) = match &e.source {
                Source::File => ("file", None, None),
                Source::Live { actor, at } => ("live", Some(actor.clone()), Some(*at)),
            };
            out.push(FlagView {
                name: name.clone(),
                env: env.clone(),
                summary: e.spec.summary(),
                spec: e.spec.clone(),
                source: source.into(),
                actor,
                changed_at,
                forced_off: e.forced_off.clone(),
            });
        }
    }
    Ok(Json(out))
}

/// One live change of a flag, as the ledger shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlagChangeView {
    /// The environment.
    pub env: String,
    /// The flag.
    pub flag: String,
    /// What it became (`20% + 1 rule`), or `back to baton.toml`.
    pub summary: String,
    /// Who changed it.
    pub actor: String,
    /// When (unix ms).
    pub at: i64,
}

/// `GET /v1/apps/{app}/flag-history?limit=N`: the live changes, newest first (default 50).
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    /// At most this many (1 to 10000).
    pub limit: Option<usize>,
}

pub(crate) async fn history(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<FlagChangeView>>, ApiError> {
    if !shared.config().config.apps.contains_key(&app) {
        return Err(unknown_app(&shared, &app));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 10_000);
    let out = shared
        .store
        .flag_history(&app, limit)?
        .into_iter()
        .map(|c| {
            let summary = match &c.spec {
                None => "back to baton.toml".to_string(),
                Some(json) => serde_json::from_str::<FlagSpec>(json)
                    .map(|s| s.summary())
                    .unwrap_or_else(|_| "unreadable definition".into()),
            };
            FlagChangeView {
                env: c.env,
                flag: c.flag,
                summary,
                actor: c.actor,
                at: c.at,
            }
        })
        .collect();
    Ok(Json(out))
}

pub(crate) async fn set(
    State(shared): State<Arc<Shared>>,
    Path((app, flag)): Path<(String, String)>,
    body: Result<Json<FlagSetRequest>, JsonRejection>,
) -> Result<Json<Vec<FlagView>>, ApiError> {
    let req = body
        .map_err(|e| ApiError::json_body(&e, r#"{"env": "production", "percent": 10}"#))?
        .0;
    let env = resolve_env(&shared, &app, req.env.as_deref())?;
    if !valid_flag_name(&flag) {
        return Err(ApiError::bad_request(format!(
            "flag name {} is invalid: use 1 to 64 of a-z, A-Z, 0-9, '-', '_' and '.'",
            quote(&flag)
        )));
    }
    let actor = check_actor(req.actor.as_deref())?;
    let scope = (app.clone(), env.clone());
    let current = shared
        .flags
        .snapshot()
        .units
        .get(&scope)
        .and_then(|f| f.get(&flag))
        .map(|e| e.spec.clone());
    let (spec, message) = if req.reset {
        (None, format!("flag {flag} reset to baton.toml by {actor}"))
    } else {
        let mut spec = current.unwrap_or(FlagSpec {
            enabled: true,
            percent: 0.0,
            rules: Vec::new(),
        });
        if let Some(e) = req.enabled {
            spec.enabled = e;
        }
        if let Some(p) = req.percent {
            spec.percent = p;
        }
        if let Some(r) = req.rules {
            spec.rules = r;
        }
        spec.check()
            .map_err(|(key, m)| ApiError::bad_request(format!("{key}: {m}")))?;
        let message = format!("flag {flag} set to {} by {actor}", spec.summary());
        (Some(spec), message)
    };
    let change = FlagChange {
        app: app.clone(),
        env: env.clone(),
        flag,
        spec: spec.map(|s| serde_json::to_string(&s).expect("a spec serializes")),
        actor,
        at: clock::now(),
    };
    let event = shared.store.record_flag_change(&change, &message)?;
    load_stored(&shared.flags, &shared.store)?;
    // Logged, and to the webhooks: a flag flipped is a change users see.
    shared.published(&event);
    list(State(shared), Path(app), Query(EnvQuery { env: Some(env) })).await
}

pub(crate) async fn create_token(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    body: Result<Json<FlagTokenRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<FlagTokenCreated>), ApiError> {
    let req = match body {
        Ok(Json(r)) => r,
        Err(JsonRejection::MissingJsonContentType(_)) => FlagTokenRequest::default(),
        Err(e) => return Err(ApiError::json_body(&e, r#"{"env": "production"}"#)),
    };
    let env = resolve_env(&shared, &app, req.env.as_deref())?;
    let actor = check_actor(req.actor.as_deref())?;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("cannot read /dev/urandom: {e}"),
            )
        })?;
    let token: String = std::iter::once("bft_".to_string())
        .chain(bytes.iter().map(|b| format!("{b:02x}")))
        .collect();
    let (id, event) = shared.store.create_flag_token(
        &app,
        &env,
        &secret_sha256(token.as_bytes()),
        &actor,
        clock::now(),
    )?;
    load_stored(&shared.flags, &shared.store)?;
    shared.published(&event);
    Ok((
        StatusCode::CREATED,
        Json(FlagTokenCreated {
            id,
            app,
            env,
            token,
        }),
    ))
}

/// An OFREP token as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlagTokenView {
    /// Its id.
    pub id: i64,
    /// The environment whose flags it evaluates.
    pub env: String,
    /// Who made it.
    pub actor: String,
    /// When (unix ms).
    pub created_at: i64,
    /// When it was revoked, or null while it is valid.
    pub revoked_at: Option<i64>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
}

impl From<FlagTokenRecord> for FlagTokenView {
    fn from(t: FlagTokenRecord) -> FlagTokenView {
        FlagTokenView {
            id: t.id,
            env: t.env,
            actor: t.actor,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
            revoked_by: t.revoked_by,
        }
    }
}

/// `POST /v1/apps/{app}/flag-tokens/{id}/revoke`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagTokenRevokeRequest {
    /// Who asks (recorded in the event).
    #[serde(default)]
    pub actor: Option<String>,
}

/// What a revocation did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlagTokenRevoked {
    /// The token, as it is now.
    pub token: FlagTokenView,
    /// False when it had been revoked before.
    pub changed: bool,
}

/// The tokens of `app`, which must be configured or have tokens (a removed app's tokens can
/// still be listed and revoked).
fn token_records(shared: &Shared, app: &str) -> Result<Vec<FlagTokenRecord>, ApiError> {
    let records = shared.store.flag_token_records(app)?;
    if records.is_empty() && !shared.config().config.apps.contains_key(app) {
        return Err(unknown_app(shared, app));
    }
    Ok(records)
}

/// `GET /v1/apps/{app}/flag-tokens`: every OFREP token of the app, revoked ones too.
pub(crate) async fn list_tokens(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
) -> Result<Json<Vec<FlagTokenView>>, ApiError> {
    let records = token_records(&shared, &app)?;
    Ok(Json(records.into_iter().map(FlagTokenView::from).collect()))
}

/// `POST /v1/apps/{app}/flag-tokens/{id}/revoke`: the OFREP listener refuses the token from
/// now on; recorded as a `flag_token` event with who did it.
pub(crate) async fn revoke_token(
    State(shared): State<Arc<Shared>>,
    Path((app, id)): Path<(String, i64)>,
    body: Result<Json<FlagTokenRevokeRequest>, JsonRejection>,
) -> Result<Json<FlagTokenRevoked>, ApiError> {
    let req = match body {
        Ok(Json(r)) => r,
        Err(JsonRejection::MissingJsonContentType(_)) => FlagTokenRevokeRequest::default(),
        Err(e) => return Err(ApiError::json_body(&e, r#"{"actor": "alice"}"#)),
    };
    let actor = check_actor(req.actor.as_deref())?;
    token_records(&shared, &app)?;
    let (token, changed) = match shared
        .store
        .revoke_flag_token(&app, id, &actor, clock::now())?
    {
        Revoked::Now(token, event) => {
            // The OFREP listener's snapshot drops it before this answers.
            load_stored(&shared.flags, &shared.store)?;
            shared.published(&event);
            (token, true)
        }
        Revoked::Before(token) => (token, false),
        Revoked::Unknown => {
            return Err(ApiError::not_found(format!(
                "app {app} has no OFREP token {id}; `baton flag tokens {app}` lists them"
            )));
        }
    };
    Ok(Json(FlagTokenRevoked {
        token: token.into(),
        changed,
    }))
}
