//! The HTTP API: JSON over axum, every route behind the bearer token, errors as
//! `{"error": {"code", "message"}}`. It records intents and reads state; it never acts on
//! instances or routes (docs/DESIGN.md rule 1).

mod error;
mod handlers;
mod intents;
mod ledger;
mod status;
mod upload;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use error::ApiError;
pub use handlers::{RELEASE_ENVELOPE, ReleaseQuery};
pub use intents::{AnalysisView, PromoteRequest};
pub use ledger::{LedgerEntry, Run};

use crate::shared::Shared;

/// The API's routes.
pub fn router(shared: Arc<Shared>, token: String) -> axum::Router {
    axum::Router::new()
        .route("/v1/apps", get(handlers::list_apps))
        .route("/v1/apps/{app}", get(handlers::get_app))
        .route(
            "/v1/apps/{app}/releases",
            post(handlers::create_release).get(handlers::list_releases),
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
        .route("/v1/apps/{app}/ledger", get(ledger::ledger))
        .route("/v1/deployments/{id}", get(handlers::deployment))
        .layer(middleware::from_fn_with_state(Arc::new(token), authorize))
        .with_state(shared)
}

async fn authorize(
    State(token): State<Arc<String>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(next.run(req).await),
        _ => Err(ApiError::unauthorized()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
