//! The HTTP API: JSON over axum, every route behind the bearer token, errors as
//! `{"error": {"code", "message"}}`. It records intents and reads state; it never acts on
//! instances or routes (docs/DESIGN.md rule 1). Beside it, on the same listener and without
//! the token, the dashboard's static page is served (crates/baton-server/src/dashboard/mod.rs).

mod dark;
mod error;
mod handlers;
mod hosts;
mod intents;
mod ledger;
mod lifecycle;
mod listener;
pub(crate) mod status;
#[cfg(test)]
mod tests;
mod upload;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use dark::DarkView;
pub use error::{ApiError, quote};
pub use handlers::{MAX_ACTOR_CHARS, RELEASE_ENVELOPE, ReleaseQuery};
pub use intents::{AnalysisView, PromoteRequest};
pub use ledger::{LedgerEntry, Run};
pub use lifecycle::{HANDING_OVER, StopRequest, Stopping};
pub use listener::{Limits, serve};

use crate::shared::Shared;

/// The largest body of every other route: they take a few fields of JSON.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// How much of a non-JSON error body (axum's rejections) is read to make its message.
const MAX_REJECTION_BYTES: usize = 4096;

/// The API's bearer tokens: the API token can do everything; the dashboard's read-only one
/// only `GET` (and `HEAD`), and it can be replaced live (`baton dashboard --rotate`).
pub struct ApiTokens {
    /// The API token (`data_dir/token`).
    pub admin: String,
    /// The read-only token (`data_dir/read-token`).
    pub read: arc_swap::ArcSwap<String>,
    /// Where the read-only token is kept, for a rotation.
    pub data_dir: std::path::PathBuf,
    /// One rotation at a time: the file and the token in memory stay the same.
    pub rotating: std::sync::Mutex<()>,
}

/// The API's routes, and the dashboard's page beside them.
///
/// The token check is a layer of the API's router alone, fallback included, so every path
/// that is not one of the page's few exact routes (also `/ui/../v1/apps`, which no route
/// matches) still needs the token.
pub fn router(shared: Arc<Shared>, tokens: ApiTokens) -> axum::Router {
    let tokens = Arc::new(tokens);
    let for_route = tokens.clone();
    let api = axum::Router::new()
        .route("/v1/apps", get(handlers::list_apps))
        .route("/v1/apps/{app}", get(handlers::get_app))
        .route(
            "/v1/apps/{app}/releases",
            // The upload streams its body within `[artifacts]` limits of its own.
            post(handlers::create_release)
                .layer(DefaultBodyLimit::disable())
                .get(handlers::list_releases),
        )
        .route(
            "/v1/apps/{app}/deployments",
            post(handlers::deploy).get(handlers::history),
        )
        .route("/v1/apps/{app}/rollback", post(handlers::rollback))
        .route("/v1/apps/{app}/promote", post(intents::promote))
        .route("/v1/apps/{app}/pause", post(intents::pause))
        .route("/v1/apps/{app}/resume", post(intents::resume))
        .route("/v1/apps/{app}/abort", post(intents::abort))
        .route("/v1/apps/{app}/analysis", get(intents::analysis))
        .route("/v1/apps/{app}/dark", get(dark::dark))
        .route("/v1/apps/{app}/ledger", get(ledger::ledger))
        .route("/v1/apps/{app}/flags", get(crate::flags::api::list))
        .route(
            "/v1/apps/{app}/flag-history",
            get(crate::flags::api::history),
        )
        .route("/v1/apps/{app}/flags/{flag}", post(crate::flags::api::set))
        .route(
            "/v1/apps/{app}/flag-tokens",
            post(crate::flags::api::create_token).get(crate::flags::api::list_tokens),
        )
        .route(
            "/v1/apps/{app}/flag-tokens/{id}/revoke",
            post(crate::flags::api::revoke_token),
        )
        .route("/v1/apps/{app}/breakers", get(intents::breakers))
        .route("/v1/deployments/{id}", get(handlers::deployment))
        .route("/v1/hosts", get(hosts::list))
        .route("/v1/hosts/tokens", post(hosts::create_token))
        .route("/v1/hosts/{host}/drain", post(hosts::drain))
        .route("/v1/hosts/{host}/undrain", post(hosts::undrain))
        .route("/v1/reload", post(reload))
        .route("/v1/restart", post(lifecycle::restart))
        .route("/v1/stop", post(lifecycle::stop))
        .route(
            "/v1/dashboard/token",
            post(move |body| dashboard_token(for_route.clone(), body)),
        )
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(middleware::from_fn_with_state(tokens, authorize));
    crate::dashboard::routes()
        .merge(api)
        .layer(middleware::from_fn(json_errors))
        .with_state(shared)
}

/// Reloads the config file: 200 with what changed; 400 when the file is invalid (its
/// file:line:col) or changes a restart-only key; 409 when it cannot be applied now. A refused
/// reload changes nothing.
async fn reload(
    State(shared): State<Arc<Shared>>,
) -> Result<axum::Json<crate::views::ReloadView>, ApiError> {
    use crate::reload::ReloadError;
    use axum::http::StatusCode;
    match shared.reload.reload().await {
        Ok(d) => Ok(axum::Json(crate::views::ReloadView {
            summary: d.to_string(),
            added: d.added,
            removed: d.removed,
            changed: d.changed,
            hosts: d.hosts,
            other: d.other,
        })),
        Err(e @ (ReloadError::Invalid(_) | ReloadError::RestartOnly(_))) => {
            Err(ApiError::bad_request(e.to_string()))
        }
        Err(e @ ReloadError::Refused(_)) => Err(ApiError::conflict(e.to_string())),
        Err(e @ ReloadError::Stopping) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "internal",
            e.to_string(),
        )),
    }
}

async fn no_route(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}: the routes are listed in the README's \"HTTP API\" section",
        req.method(),
        error::quote(req.uri().path())
    ))
}

/// Gives axum's own answers (a path or query that does not parse, a wrong method, a body too
/// large) the API's error shape, with their text cut to a bounded message.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), MAX_REJECTION_BYTES)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message = match text.trim() {
        "" => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
        text => text.to_string(),
    };
    ApiError::new(status, error::code_of(status), message).into_response()
}

async fn authorize(
    State(tokens): State<Arc<ApiTokens>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()));
    let Some(p) = presented else {
        return Err(ApiError::unauthorized());
    };
    if constant_time_eq(p, tokens.admin.as_bytes()) {
        return Ok(next.run(req).await);
    }
    if constant_time_eq(p, tokens.read.load().as_bytes()) {
        let reads = matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        return if reads {
            Ok(next.run(req).await)
        } else {
            Err(ApiError::read_only())
        };
    }
    Err(ApiError::unauthorized())
}

/// `POST /v1/dashboard/token`: the dashboard's read-only token, replaced by a new one first
/// with `{"rotate": true}` (URLs printed before then stop working at once). A `POST`, so only
/// the API token gets it.
async fn dashboard_token(
    tokens: Arc<ApiTokens>,
    body: Result<axum::Json<DashboardTokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<DashboardToken>, ApiError> {
    use axum::extract::rejection::JsonRejection;
    let req = match body {
        Ok(axum::Json(r)) => r,
        Err(JsonRejection::MissingJsonContentType(_)) => DashboardTokenRequest::default(),
        Err(e) => return Err(ApiError::json_body(&e, r#"{"rotate": true}"#)),
    };
    if req.rotate {
        let _one = tokens.rotating.lock().unwrap_or_else(|e| e.into_inner());
        let token = crate::token::rotate_read(&tokens.data_dir).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!(
                    "cannot write a new read-only token in {}: {e}",
                    tokens.data_dir.display()
                ),
            )
        })?;
        tokens.read.store(Arc::new(token));
        tracing::info!("the dashboard's read-only token was replaced");
    }
    Ok(axum::Json(DashboardToken {
        token: tokens.read.load().as_ref().clone(),
        rotated: req.rotate,
    }))
}

/// `POST /v1/dashboard/token`
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardTokenRequest {
    /// Replace the token first.
    #[serde(default)]
    pub rotate: bool,
}

/// The dashboard's read-only token.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DashboardToken {
    /// The token.
    pub token: String,
    /// Whether it was just made.
    pub rotated: bool,
}

/// The token of an `Authorization: Bearer TOKEN` value (also for the OFREP listener).
pub(crate) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    bearer(value)
}

/// The token of an `Authorization: Bearer TOKEN` value; the scheme is case-insensitive
/// (RFC 9110 11.1).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    Some(rest.trim_ascii())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
