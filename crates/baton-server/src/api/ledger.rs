//! The release ledger: every release of an app with where it ran and how each deployment of it
//! ended. Releases are append-only; a rollback is a new deployment, never an edit.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use baton_core::model::Release;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::status::unknown_app;
use crate::shared::Shared;

/// One release and its deployments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The release.
    pub release: Release,
    /// Every deployment of it, oldest first.
    pub runs: Vec<Run>,
}

/// One deployment of a release into an environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// The environment.
    pub env: String,
    /// The deployment id.
    pub deployment: i64,
    /// How it ended (or where it is).
    pub phase: String,
    /// Who or what asked for it.
    pub trigger: String,
    /// When it was recorded.
    pub created_at: i64,
    /// When it ended.
    pub finished_at: Option<i64>,
}

pub async fn ledger(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
) -> Result<Json<Vec<LedgerEntry>>, ApiError> {
    let snapshot = shared.config();
    if !snapshot.config.apps.contains_key(&app) {
        return Err(unknown_app(&shared, &app));
    }
    let mut runs: Vec<(String, Run)> = Vec::new();
    for unit in snapshot.units.values().filter(|u| u.app == app) {
        for d in shared.store.deployments(Some(&unit.key), 100_000)? {
            let run = Run {
                env: unit.env.clone(),
                deployment: d.id,
                phase: d.phase.as_str().to_string(),
                trigger: d.trigger.clone(),
                created_at: d.created_at,
                finished_at: d.finished_at,
            };
            runs.push((d.to, run));
        }
    }
    runs.sort_by_key(|(_, r)| r.deployment);
    let entries = shared
        .store
        .releases(&app)?
        .into_iter()
        .map(|release| {
            let mine = runs
                .iter()
                .filter(|(to, _)| *to == release.version)
                .map(|(_, r)| r.clone())
                .collect();
            LedgerEntry {
                release,
                runs: mine,
            }
        })
        .collect();
    Ok(Json(entries))
}
