//! `GET /v1/hosts` (every configured host and its state), `POST /v1/hosts/tokens` (a join
//! token, shown once: only its secret's sha256 is stored), and draining a host.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use baton_cluster::JoinToken;
use baton_core::duration::Duration;

use super::ApiError;
use crate::clock;
use crate::cluster::view::{DrainView, HostView, TokenCreated, TokenRequest, host_views};
use crate::shared::Shared;

/// A token's lifetime unless asked otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The longest lifetime of a token: a week.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub async fn list(State(shared): State<Arc<Shared>>) -> Result<Json<Vec<HostView>>, ApiError> {
    let stored = shared.store.hosts()?;
    let instances = shared.store.instances(None, false)?;
    let mut views = host_views(&shared.config().config, shared.cluster.as_deref(), &stored);
    let drained = shared.store.drained_hosts()?;
    for v in &mut views {
        v.drained = drained.contains(&v.name);
        let on_host = instances
            .iter()
            .filter(|i| i.host == v.name && !i.state.is_leaving());
        v.instances = u32::try_from(on_host.count()).unwrap_or(u32::MAX);
    }
    Ok(Json(views))
}

pub async fn create_token(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let req = match body {
        Ok(Json(r)) => r,
        Err(JsonRejection::MissingJsonContentType(_)) => TokenRequest::default(),
        Err(e) => return Err(ApiError::json_body(&e, r#"{"ttl": "1h"}"#)),
    };
    let Some(cluster) = &shared.cluster else {
        return Err(ApiError::conflict(
            "this Baton has no [cluster] in its baton.toml: add [cluster] with listen = \"0.0.0.0:7443\" (where agents connect) and restart `baton up`",
        ));
    };
    let ttl = match req.ttl.as_deref() {
        None => DEFAULT_TOKEN_TTL,
        Some(text) => text
            .parse::<Duration>()
            .map_err(|e| ApiError::bad_request(format!("ttl: {e}")))?,
    };
    if ttl.as_millis() == 0 || ttl > MAX_TOKEN_TTL {
        return Err(ApiError::bad_request(format!(
            "ttl {ttl} is out of range: use more than 0 and at most {MAX_TOKEN_TTL}"
        )));
    }
    let token = JoinToken::generate(cluster.fingerprint());
    let now = clock::now();
    let expires_at = now + ttl.as_millis_i64();
    shared
        .store
        .create_join_token(&token.id, &token.secret_hash(), now, expires_at)?;
    tracing::info!(token = %token.id, expires_at, "join token created");
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: token.reveal(),
            id: token.id.clone(),
            expires_at,
        }),
    ))
}

/// `POST /v1/hosts/{host}/drain`: the host takes no new instances and its instances move to
/// the app's other hosts (new ones first, then the old ones drain).
pub async fn drain(
    State(shared): State<Arc<Shared>>,
    Path(host): Path<String>,
) -> Result<Json<DrainView>, ApiError> {
    set_drained(&shared, &host, true)
}

/// `POST /v1/hosts/{host}/undrain`: the host takes instances again; the apps that run there
/// even out their spread, one instance at a time.
pub async fn undrain(
    State(shared): State<Arc<Shared>>,
    Path(host): Path<String>,
) -> Result<Json<DrainView>, ApiError> {
    set_drained(&shared, &host, false)
}

fn set_drained(shared: &Shared, host: &str, drained: bool) -> Result<Json<DrainView>, ApiError> {
    if !shared.config().config.hosts.contains_key(host) {
        return Err(ApiError::not_found(format!(
            "host {} is not in baton.toml: `baton hosts` lists the hosts",
            super::error::quote(host)
        )));
    }
    let changed = shared.store.set_host_drained(host, drained, clock::now())?;
    if changed {
        let what = if drained {
            "drained: its instances move to the other hosts"
        } else {
            "undrained: it takes instances again"
        };
        let msg = format!("host {host} {what}");
        let kind = baton_core::model::EventKind::HostDrain;
        shared.event(clock::now(), crate::cluster::EVENT_APP, None, kind, &msg)?;
        shared.wake.notify_one();
    }
    Ok(Json(DrainView {
        host: host.to_string(),
        drained,
        changed,
    }))
}
