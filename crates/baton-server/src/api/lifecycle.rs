//! `POST /v1/restart` (start the binary on disk and hand over to it, answered once it serves)
//! and `POST /v1/stop` (with or without the instances), carried out by `handover.rs`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use tokio::sync::oneshot;

use super::ApiError;
use crate::handover::{Request, Restarted};
use crate::shared::Shared;

/// The body of `POST /v1/stop`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct StopRequest {
    /// Leave the instances running for the next `baton up`.
    #[serde(default)]
    pub keep_instances: bool,
}

/// The answer to `POST /v1/stop`: the process that stops.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Stopping {
    /// Its pid.
    pub pid: u32,
    /// Whether the instances keep running.
    pub keep_instances: bool,
}

/// The code of the answer a process that is handing over gives: the command may be run again.
pub const HANDING_OVER: &str = "handing_over";

fn handing_over() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        HANDING_OVER,
        "this baton is handing over to a new process (or stopping); run the command again",
    )
}

pub async fn restart(State(shared): State<Arc<Shared>>) -> Result<Json<Restarted>, ApiError> {
    let (tx, rx) = oneshot::channel();
    shared
        .lifecycle
        .try_send(Request::Restart(Some(tx)))
        .map_err(|_| handing_over())?;
    match rx.await {
        Ok(Ok(restarted)) => Ok(Json(restarted)),
        Ok(Err(why)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "restart_failed",
            format!("the new baton did not take over, this one keeps serving: {why}"),
        )),
        Err(_) => Err(handing_over()),
    }
}

pub async fn stop(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<StopRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Stopping>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::json_body(&e, r#"{"keep_instances": true}"#))?;
    shared
        .lifecycle
        .try_send(Request::Stop {
            keep_instances: req.keep_instances,
        })
        .map_err(|_| handing_over())?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Stopping {
            pid: std::process::id(),
            keep_instances: req.keep_instances,
        }),
    ))
}
