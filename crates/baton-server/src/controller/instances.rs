//! Instances: starting, watching, restarting after a crash, draining and stopping, and
//! re-adopting them after Baton itself restarted (docs/DESIGN.md I2, I4).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use baton_core::config::defaults::STOP_TIMEOUT;
use baton_core::config::{AppConfig, CommandVars, Driver, render_command, split_key};
use baton_core::model::{EventKind, Instance, InstanceState, LOCAL_HOST, Millis};
use baton_core::run::instance_env;
use baton_proxy::{Backend, Health, HealthCheck};
use baton_runtime::{
    LocalHandle, ProcessHandle, ProcessSpec, StopOutcome, free_port, read_pid_file,
};
use tokio::sync::mpsc;

use super::containers;
use super::{Exited, record};
use crate::clock;
use crate::handle::InstanceHandle;
use crate::shared::{Live, Shared, Started};

/// First restart delay after a crash; doubles per restart up to [`RESTART_MAX_MS`].
const RESTART_BASE_MS: i64 = 250;
const RESTART_MAX_MS: i64 = 30_000;
/// How long a container start may take before the instance is started again (a start cut
/// short by a crash of Baton never reports back).
const START_GRACE_MS: i64 = 120_000;
/// The address instances on the controller's own host (`local`) listen on and are reached at.
const LOCAL_ADDRESS: &str = "127.0.0.1";

/// Records and starts a new instance of `release` on `host`.
pub fn start(
    shared: &Arc<Shared>,
    app: &str,
    release: &str,
    host: &str,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<()> {
    let n = shared.store.next_instance_number(app)?;
    let mut inst = Instance {
        id: format!("{app}-{n}"),
        app: app.to_string(),
        release: release.to_string(),
        host: host.to_string(),
        port: 0,
        pid: None,
        proc_start: None,
        state: InstanceState::Starting,
        in_split: false,
        started_at: now,
        restarts: 0,
        restart_at: None,
        retire_at: None,
    };
    // Recorded before the process exists: a crash in between leaves a record (and a pid file)
    // from which the next start adopts or restarts it, never an orphan.
    shared.store.upsert_instance(&inst)?;
    spawn(shared, &mut inst, now, exits)
}

/// Starts the process of `inst` on a fresh port, registers its backend and health checker.
fn spawn(
    shared: &Arc<Shared>,
    inst: &mut Instance,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<()> {
    let app = shared
        .app(&inst.app)
        .expect("instances of configured apps only");
    let release = shared
        .store
        .release(split_key(&inst.app).0, &inst.release)?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "release {} of {} is not in the store",
                inst.release,
                inst.app
            )
        })?;
    inst.started_at = now;
    inst.restart_at = None;
    if inst.host != LOCAL_HOST {
        return start_remote(shared, inst, &app, &release.digest, now);
    }
    let artifact = shared.artifacts.path(&release.digest);
    inst.port = free_port()?;
    let artifact_str = artifact.to_string_lossy().to_string();
    let argv = render_command(
        &app.command,
        &CommandVars {
            artifact: &artifact_str,
            host: LOCAL_ADDRESS,
            port: inst.port,
            version: &inst.release,
            instance: &inst.id,
        },
    );
    let env = instance_env(
        &super::dark::env_for(shared, &app, inst),
        (LOCAL_ADDRESS, inst.port),
        &inst.app,
        &inst.release,
        &inst.id,
    );
    if app.driver == Driver::Docker {
        // Until the container's start reports back, restart_due must not start it again.
        inst.pid = None;
        inst.restart_at = Some(now.saturating_add(START_GRACE_MS));
        shared.store.upsert_instance(inst)?;
        containers::spawn(
            shared,
            containers::Launch {
                app: inst.app.clone(),
                instance: inst.id.clone(),
                release: inst.release.clone(),
                attempt: now,
                artifact,
                env,
                argv: containers::argv(&app, argv),
                read_only: app.read_only,
                log_path: shared.log_path(&inst.app, &inst.id),
            },
        );
        return Ok(());
    }
    let spec = ProcessSpec {
        argv,
        env,
        cwd: artifact,
        log_path: shared.log_path(&inst.app, &inst.id),
        pid_file: Some(shared.pid_file(&inst.id)),
    };
    let result = ProcessHandle::spawn(&spec)
        .map(|p| InstanceHandle::Local(LocalHandle::Process(p)))
        .map_err(|e| e.to_string());
    running(shared, inst, result, now, exits)
}

/// Asks the agent of `inst.host` to run it; the answer arrives as an agent event. Until it
/// does, `restart_at` keeps `restart_due` from asking again; a host that is away gets asked
/// once that passes, or its instances are replaced when it is declared lost.
fn start_remote(
    shared: &Arc<Shared>,
    inst: &mut Instance,
    app: &AppConfig,
    digest: &str,
    now: Millis,
) -> anyhow::Result<()> {
    inst.pid = None;
    inst.port = 0;
    inst.restart_at = Some(now.saturating_add(START_GRACE_MS));
    shared.store.upsert_instance(inst)?;
    let mut spec = super::remote::run_spec(inst, app, digest);
    spec.env = super::dark::env_for(shared, app, inst);
    let sent = match &shared.cluster {
        Some(cluster) => cluster
            .send(&inst.host, baton_cluster::ControllerMsg::Run(spec))
            .map_err(|e| e.to_string()),
        None => Err("this Baton has no [cluster]".to_string()),
    };
    if let Err(e) = sent {
        tracing::info!(instance = %inst.id, host = %inst.host, error = %e, "cannot ask for an instance now");
    }
    Ok(())
}

/// Records the outcome of a start: a running instance is watched; a failed start is treated
/// like a crash, retried with backoff (the deployment's deadline decides).
pub(super) fn running(
    shared: &Arc<Shared>,
    inst: &mut Instance,
    result: Result<InstanceHandle, String>,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<()> {
    let app = shared
        .app(&inst.app)
        .expect("instances of configured apps only");
    match result {
        Ok(handle) => {
            inst.pid = Some(handle.pid());
            inst.proc_start = handle.start_time();
            inst.state = InstanceState::Starting;
            inst.restart_at = None;
            shared.store.upsert_instance(inst)?;
            let msg = format!(
                "{} ({}) started as {handle} on port {}",
                inst.id, inst.release, inst.port
            );
            record(shared, inst, EventKind::InstanceStarted, &msg, now)?;
            watch(shared, inst, &app, handle, Health::Starting, exits);
        }
        Err(e) => {
            inst.pid = None;
            inst.restarts += 1;
            inst.restart_at = Some(now + backoff(inst.restarts));
            shared.store.upsert_instance(inst)?;
            record(
                shared,
                inst,
                EventKind::InstanceExited,
                &format!("{} could not start: {e}", inst.id),
                now,
            )?;
        }
    }
    Ok(())
}

/// A start that ran in the background (a container) reported back. An answer to an attempt
/// the controller no longer waits for (the instance left, or started again) is stopped.
pub async fn on_started(
    shared: &Arc<Shared>,
    started: Started,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<()> {
    let current = shared
        .store
        .instances(Some(&started.app), false)?
        .into_iter()
        .find(|i| i.id == started.instance);
    let mut inst = match current {
        Some(i) if i.pid.is_none() && !i.state.is_leaving() && i.started_at == started.attempt => i,
        _ => {
            if let Ok(handle) = started.result {
                let timeout = shared
                    .app(&started.app)
                    .map_or(STOP_TIMEOUT.std(), |a| a.drain.stop_timeout.std());
                tokio::spawn(async move { handle.stop(timeout).await });
            }
            return Ok(());
        }
    };
    running(shared, &mut inst, started.result, now, exits)
}

fn backoff(restarts: u32) -> Millis {
    (RESTART_BASE_MS << restarts.saturating_sub(1).min(10)).min(RESTART_MAX_MS)
}

/// Registers a running process: its backend (in `health`), checker and exit watcher.
pub(super) fn watch(
    shared: &Arc<Shared>,
    inst: &Instance,
    app: &AppConfig,
    handle: InstanceHandle,
    health: Health,
    exits: &mpsc::UnboundedSender<Exited>,
) {
    let addr = SocketAddr::new(shared.host_address(&inst.host), inst.port);
    let backend = Backend::dialed(
        inst.id.clone(),
        inst.release.clone(),
        addr,
        shared.dial(&inst.host, inst.port),
        app.health.unhealthy_threshold,
    );
    backend.set_health(health);
    let checker = baton_proxy::spawn_health_checker(backend.clone(), health_check(app));
    let (app_name, id, pid) = (inst.app.clone(), inst.id.clone(), handle.pid());
    let (tx, h) = (exits.clone(), handle.clone());
    tokio::spawn(async move {
        let info = h.exited().await;
        let _ = tx.send(Exited {
            app: app_name,
            instance: id,
            pid,
            info: info.to_string(),
        });
    });
    let old = shared.live().insert(
        inst.id.clone(),
        Live {
            app: inst.app.clone(),
            backend,
            process: Some(handle),
            checker: Some(checker),
            stopping: false,
        },
    );
    if let Some(old) = old.and_then(|o| o.checker) {
        old.abort();
    }
}

fn health_check(app: &AppConfig) -> HealthCheck {
    HealthCheck {
        path: app.health.path.clone(),
        interval: app.health.interval.std(),
        timeout: app.health.timeout.std(),
        healthy_threshold: app.health.healthy_threshold,
        unhealthy_threshold: app.health.unhealthy_threshold,
    }
}

/// An instance's process exited. Unless Baton was stopping it, it is a crash: record it and
/// schedule a restart with backoff; the instance takes no traffic until healthy again (I1).
pub fn on_exit(shared: &Shared, exit: Exited, now: Millis) -> anyhow::Result<()> {
    {
        let mut live = shared.live();
        match live.get(&exit.instance) {
            Some(l) if l.stopping => return Ok(()),
            Some(l) if l.process.as_ref().map(|p| p.pid()) != Some(exit.pid) => return Ok(()),
            _ => {}
        }
        if let Some(l) = live.remove(&exit.instance) {
            l.backend.set_health(Health::Unhealthy);
            if let Some(c) = l.checker {
                c.abort();
            }
            // A crash, not a stop (which removes its container itself): the exited container
            // goes once its last lines are in the log.
            if let Some(p) = l.process {
                tokio::spawn(async move { p.reap().await });
            }
        }
    }
    let Some(mut inst) = shared
        .store
        .instances(None, false)?
        .into_iter()
        .find(|i| i.id == exit.instance)
    else {
        return Ok(());
    };
    if inst.state.is_leaving() || inst.pid != Some(exit.pid) {
        return Ok(());
    }
    inst.pid = None;
    inst.proc_start = None;
    inst.state = InstanceState::Starting;
    inst.restarts += 1;
    let delay = backoff(inst.restarts);
    inst.restart_at = Some(now + delay);
    shared.store.upsert_instance(&inst)?;
    let on = if inst.host == baton_core::model::LOCAL_HOST {
        String::new()
    } else {
        format!(" on host {}", inst.host)
    };
    let msg = format!(
        "{} ({}) pid {}{on} {}; restarting in {}ms (restart #{})",
        inst.id, inst.release, exit.pid, exit.info, delay, inst.restarts
    );
    record(shared, &inst, EventKind::InstanceExited, &msg, now)
}

/// Starts again those of `instances` (one app's, as stored) whose restart time has come (or
/// that were recorded but never started because Baton died in between); true if it tried any.
pub fn restart_due(
    shared: &Arc<Shared>,
    instances: &[Instance],
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<bool> {
    let mut tried = false;
    for inst in instances {
        if inst.pid.is_some() || inst.state.is_leaving() {
            continue;
        }
        if inst.restart_at.is_some_and(|at| at > now) {
            continue;
        }
        tried = true;
        spawn(shared, &mut inst.clone(), now, exits)?;
    }
    Ok(tried)
}

/// Takes an instance out of service for good: no new request (the backend's drain flag), wait
/// for in-flight requests up to the drain timeout, close idle connections, stop the process.
pub async fn drain(shared: Arc<Shared>, mut inst: Instance, live: Option<Live>) {
    let Some(app) = shared.app(&inst.app) else {
        return;
    };
    if let Some(live) = live {
        live.backend.start_drain();
        let idle = live.backend.wait_idle(app.drain.timeout.std()).await;
        if !idle {
            let msg = format!(
                "{} still had {} requests in flight after {}; stopping it anyway",
                inst.id,
                live.backend.in_flight(),
                app.drain.timeout
            );
            let _ = record(&shared, &inst, EventKind::DrainTimedOut, &msg, clock::now());
        }
        live.backend.close_idle_connections();
        if let Some(c) = live.checker {
            c.abort();
        }
        let outcome = match &live.process {
            Some(p) => p.stop(app.drain.stop_timeout.std()).await,
            None => StopOutcome::AlreadyGone,
        };
        let how = match outcome {
            StopOutcome::Exited(info) => info.to_string(),
            StopOutcome::Killed => format!("killed after {}", app.drain.stop_timeout),
            StopOutcome::AlreadyGone => "already gone".to_string(),
        };
        inst.state = InstanceState::Stopped;
        inst.pid = None;
        let _ = shared.store.upsert_instance(&inst);
        let _ = record(
            &shared,
            &inst,
            EventKind::InstanceStopped,
            &format!("{} ({}) drained and stopped: {how}", inst.id, inst.release),
            clock::now(),
        );
    } else {
        inst.state = InstanceState::Stopped;
        inst.pid = None;
        let _ = shared.store.upsert_instance(&inst);
    }
    shared.live().remove(&inst.id);
    let _ = std::fs::remove_file(shared.pid_file(&inst.id));
    shared.wake.notify_one();
}

/// After a (re)start of Baton: re-adopts every recorded instance whose process still runs
/// (same pid and start time), so none is orphaned or duplicated (docs/DESIGN.md I4).
pub async fn adopt_all(
    shared: &Arc<Shared>,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<Vec<(Instance, Option<Live>)>> {
    let now = clock::now();
    let mut drains = Vec::new();
    let mut containers_wanted = HashSet::new();
    for mut inst in shared.store.instances(None, false)? {
        let docker = shared
            .app(&inst.app)
            .is_some_and(|a| a.driver == Driver::Docker);
        let handle = if inst.host != LOCAL_HOST {
            // Its agent confirms (or not) when it connects; meanwhile the edge keeps routing
            // to it on its health checks (docs/DESIGN.md I8).
            super::agents::keep(shared, &inst)
        } else if docker {
            containers_wanted.insert(baton_runtime::docker::container_instance(&inst.id));
            containers::adopt(shared, &inst).await?
        } else {
            inst.pid
                .zip(inst.proc_start)
                .or_else(|| read_pid_file(&shared.pid_file(&inst.id)))
                .and_then(|(pid, start)| ProcessHandle::adopt(pid, start))
                .map(|p| InstanceHandle::Local(LocalHandle::Process(p)))
        };
        let Some(app) = shared.app(&inst.app) else {
            // The app left the config: its instances go too.
            if let Some(h) = handle {
                tokio::spawn(async move { h.stop(std::time::Duration::from_secs(10)).await });
            }
            inst.state = InstanceState::Stopped;
            inst.pid = None;
            shared.store.upsert_instance(&inst)?;
            continue;
        };
        match handle {
            Some(h) => {
                inst.pid = Some(h.pid());
                inst.proc_start = h.start_time();
                shared.store.upsert_instance(&inst)?;
                // It was serving a moment ago: keep it serving; checks take it out if it is not.
                let health = if inst.state == InstanceState::Healthy {
                    Health::Healthy
                } else {
                    Health::Starting
                };
                watch(shared, &inst, &app, h.clone(), health, exits);
                record(
                    shared,
                    &inst,
                    EventKind::InstanceAdopted,
                    &format!(
                        "{} ({}) re-adopted: {h} still running",
                        inst.id, inst.release
                    ),
                    now,
                )?;
                if inst.state == InstanceState::Draining {
                    let live = shared.live().get_mut(&inst.id).map(Live::take_for_drain);
                    drains.push((inst, live));
                }
            }
            None if inst.state == InstanceState::Draining => {
                inst.state = InstanceState::Stopped;
                inst.pid = None;
                shared.store.upsert_instance(&inst)?;
            }
            None => {
                // Gone while Baton was away: restart it at once.
                inst.pid = None;
                inst.proc_start = None;
                inst.state = InstanceState::Starting;
                inst.restart_at = Some(now);
                shared.store.upsert_instance(&inst)?;
                record(
                    shared,
                    &inst,
                    EventKind::InstanceExited,
                    &format!(
                        "{} ({}) was gone when Baton started; restarting it",
                        inst.id, inst.release
                    ),
                    now,
                )?;
            }
        }
    }
    containers::remove_unwanted(shared, &containers_wanted).await?;
    Ok(drains)
}

/// Stops every instance (Baton is shutting down and its proxies are closed).
pub async fn stop_all(shared: &Arc<Shared>) {
    // Instances on other hosts keep running with their agents (and serve on `host_port`);
    // the next `baton up` adopts them again.
    let all: Vec<(String, Live)> = {
        let mut live = shared.live();
        let local: Vec<String> = live
            .iter()
            .filter(|(_, l)| !matches!(l.process, Some(InstanceHandle::Remote(_))))
            .map(|(id, _)| id.clone())
            .collect();
        local
            .into_iter()
            .filter_map(|id| {
                let mut l = live.remove(&id)?;
                l.stopping = true;
                Some((id, l))
            })
            .collect()
    };
    let records = shared.store.instances(None, false).unwrap_or_default();
    let mut tasks = Vec::new();
    for (id, l) in all {
        let shared = shared.clone();
        let record = records.iter().find(|i| i.id == id).cloned();
        tasks.push(tokio::spawn(async move {
            if let Some(c) = l.checker {
                c.abort();
            }
            let timeout = record
                .as_ref()
                .and_then(|i| shared.app(&i.app))
                .map(|a| a.drain.stop_timeout.std())
                .unwrap_or(STOP_TIMEOUT.std());
            if let Some(p) = &l.process {
                p.stop(timeout).await;
            }
            if let Some(mut inst) = record {
                inst.state = InstanceState::Stopped;
                inst.pid = None;
                inst.in_split = false;
                let _ = shared.store.upsert_instance(&inst);
            }
            let _ = std::fs::remove_file(shared.pid_file(&id));
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
