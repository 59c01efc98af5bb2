//! Running an app's migration steps: the expand step before a deployment's new instances start
//! (the old release keeps serving), the contract step when it is due (see `contracts.rs`). Each runs as a real
//! process from the release's stored artifact with the environment's config, bounded by
//! `migrate.timeout`, its output appended to `logs/<app@env>/migrate.log`.

use std::collections::BTreeMap;
use std::sync::Arc;

use baton_core::config::{CommandVars, render_command, split_key};
use baton_core::model::{EventKind, MigrationState};
use baton_runtime::{ProcessHandle, ProcessSpec, StopOutcome};
use baton_store::ContractState;

use crate::clock;
use crate::shared::Shared;

/// Which step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `migrate.command`, before the new instances.
    Expand,
    /// `migrate.after`, once due after success.
    Contract,
}

/// Starts `step` for deployment `id` of unit `key` unless it already runs.
pub fn start(shared: &Arc<Shared>, key: &str, id: i64, release: &str, step: Step) {
    if !shared.migrations().insert((id, step == Step::Contract)) {
        return;
    }
    let (shared, key, release) = (shared.clone(), key.to_string(), release.to_string());
    tokio::spawn(async move {
        let result = run(&shared, &key, &release, step).await;
        let now = clock::now();
        let deadline = shared
            .app(&key)
            .map(|a| now.saturating_add(a.health.deadline.as_millis_i64()));
        match (step, result) {
            (Step::Expand, Ok(())) => {
                let _ = shared
                    .store
                    .set_migration(id, &MigrationState::Done, deadline);
                let _ = shared.event(
                    now,
                    &key,
                    Some(id),
                    EventKind::Migration,
                    &format!("expand migration of {release} succeeded"),
                );
            }
            (Step::Expand, Err(why)) => {
                let _ = shared
                    .store
                    .set_migration(id, &MigrationState::Failed(why.clone()), None);
                let _ = shared.event(
                    now,
                    &key,
                    Some(id),
                    EventKind::MigrationFailed,
                    &format!("expand migration of {release} failed: {why}"),
                );
            }
            (Step::Contract, Ok(())) => {
                // Done also records the contract mark, in one transaction.
                let done = shared.store.set_contract_state(
                    id,
                    ContractState::Running,
                    ContractState::Done,
                    None,
                    now,
                );
                if matches!(done, Ok(true)) {
                    let _ = shared.event(now, &key, Some(id), EventKind::Migration, &format!("contract migration of {release} succeeded: older releases may no longer run here"));
                }
            }
            (Step::Contract, Err(why)) => {
                tracing::warn!(unit = %key, release = %release, "contract migration failed: {why:?}");
                let failed = shared.store.set_contract_state(
                    id,
                    ContractState::Running,
                    ContractState::Failed,
                    Some(&why),
                    now,
                );
                if matches!(failed, Ok(true)) {
                    let _ = shared.event(now, &key, Some(id), EventKind::MigrationFailed, &format!("contract migration of {release} failed: {why}; it is held, not retried: the schema is not contracted and older releases may still run; fix the cause, then deploy {release} again to schedule it anew"));
                }
            }
        }
        shared.migrations().remove(&(id, step == Step::Contract));
        shared.wake.notify_one();
    });
}

async fn run(shared: &Shared, key: &str, release: &str, step: Step) -> Result<(), String> {
    let app = shared.app(key).ok_or("the app left the config")?;
    let migrate = app.migrate.as_ref().ok_or("the app has no [migrate]")?;
    let command = match step {
        Step::Expand => &migrate.command,
        Step::Contract => migrate
            .after
            .as_ref()
            .ok_or("the app has no migrate.after")?,
    };
    let (name, env) = split_key(key);
    let r = shared
        .store
        .release(name, release)
        .map_err(|e| e.to_string())?
        .ok_or("the release is not in the store")?;
    let artifact = shared.artifacts.path(&r.digest);
    let artifact_str = artifact.to_string_lossy().to_string();
    let argv = render_command(
        command,
        &CommandVars {
            artifact: &artifact_str,
            host: "127.0.0.1",
            port: 0,
            version: release,
            instance: "migrate",
        },
    );
    let mut vars: BTreeMap<String, String> = app.env.clone();
    vars.insert("BATON_APP".into(), name.to_string());
    vars.insert("BATON_ENV".into(), env.to_string());
    vars.insert("BATON_RELEASE".into(), release.to_string());
    vars.insert(
        "BATON_MIGRATION".into(),
        if step == Step::Expand {
            "expand"
        } else {
            "contract"
        }
        .to_string(),
    );
    let spec = ProcessSpec {
        argv,
        env: vars,
        cwd: artifact,
        log_path: shared.data_dir.join("logs").join(key).join("migrate.log"),
        pid_file: None,
    };
    let handle = ProcessHandle::spawn(&spec).map_err(|e| e.to_string())?;
    match tokio::time::timeout(migrate.timeout.std(), handle.exited()).await {
        Ok(exit) if exit.code == Some(0) => Ok(()),
        Ok(exit) => Err(format!("{exit} (see {})", spec.log_path.display())),
        Err(_) => {
            let how = match handle.stop(app.drain.stop_timeout.std()).await {
                StopOutcome::Killed => "killed",
                _ => "stopped",
            };
            Err(format!(
                "did not finish within {} and was {how} (see {})",
                migrate.timeout,
                spec.log_path.display()
            ))
        }
    }
}
