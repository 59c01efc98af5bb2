//! What agents report, applied to the store and the live instances (docs/design-notes.md,
//! "Many hosts and containers"): starts, failed starts, exits and stops, a host's list of
//! running instances when its session opens, and hosts declared lost.

use std::collections::HashSet;
use std::sync::Arc;

use baton_cluster::{AgentMsg, ControllerMsg};
use baton_core::model::{EventKind, Instance, InstanceState, Millis};
use baton_core::run::Running;
use baton_runtime::ExitInfo;
use tokio::sync::mpsc;

use super::{Exited, instances, record};
use crate::handle::InstanceHandle;
use crate::shared::{AgentEvent, Shared};

/// A remote instance recorded as running, watched again after a restart of the controller.
pub fn keep(shared: &Shared, inst: &Instance) -> Option<InstanceHandle> {
    let cluster = shared.cluster.as_ref()?;
    // A host no longer configured has no address to reach it at (fenced at start).
    shared.config().config.hosts.get(&inst.host)?;
    let pid = inst.pid?;
    let running = Running {
        instance: inst.id.clone(),
        release: inst.release.clone(),
        pid,
        port: inst.port,
    };
    Some(InstanceHandle::Remote(
        shared.remote.register(cluster, &inst.host, &running),
    ))
}

/// Applies one report of an agent.
pub fn on_event(
    shared: &Arc<Shared>,
    event: AgentEvent,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<Option<String>> {
    match event {
        AgentEvent::Hello { host, running } => {
            on_hello(shared, &host, running, now, exits)?;
            Ok(None)
        }
        AgentEvent::Msg { host, msg } => on_msg(shared, &host, msg, now, exits),
    }
}

fn find(shared: &Shared, instance: &str) -> anyhow::Result<Option<Instance>> {
    Ok(shared
        .store
        .instances(None, false)?
        .into_iter()
        .find(|i| i.id == instance))
}

fn stop_stale(shared: &Shared, host: &str, instance: &str) {
    let timeout_ms = baton_core::config::defaults::STOP_TIMEOUT.as_millis();
    if let Some(cluster) = &shared.cluster {
        let msg = ControllerMsg::Stop {
            instance: instance.to_string(),
            timeout_ms,
        };
        if cluster.send(host, msg).is_ok() {
            tracing::info!(
                host,
                instance,
                "stopping an instance the controller no longer wants"
            );
        }
    }
}

fn on_msg(
    shared: &Arc<Shared>,
    host: &str,
    msg: AgentMsg,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<Option<String>> {
    match msg {
        AgentMsg::Started(running) => {
            let record = find(shared, &running.instance)?.filter(|i| i.host == host);
            if record
                .as_ref()
                .is_some_and(|i| i.pid == Some(running.pid) && i.state != InstanceState::Stopped)
            {
                // The answer to a repeated `run`: this very run is already watched.
                return Ok(None);
            }
            let Some(mut inst) = record.filter(|i| i.pid.is_none() && !i.state.is_leaving()) else {
                stop_stale(shared, host, &running.instance);
                return Ok(None);
            };
            let app = inst.app.clone();
            accept(shared, host, &mut inst, &running, now, exits)?;
            Ok(Some(app))
        }
        AgentMsg::StartFailed { instance, error } => {
            let Some(mut inst) = find(shared, &instance)?
                .filter(|i| i.host == host && i.pid.is_none() && !i.state.is_leaving())
            else {
                return Ok(None);
            };
            let app = inst.app.clone();
            let why = format!("{error} (on host {host})");
            instances::running(shared, &mut inst, Err(why), now, exits)?;
            Ok(Some(app))
        }
        AgentMsg::Exited {
            instance,
            pid,
            info,
        } => {
            // The agent's driver wrote the status with `ExitInfo`'s Display (the same Baton
            // version: sessions check the protocol); the instance's event says it as reported.
            let parsed = ExitInfo::parse(&info).unwrap_or_else(|| {
                tracing::warn!(host, %instance, %info, "an agent reported an exit status this controller cannot read");
                ExitInfo::UNKNOWN
            });
            tracing::info!(host, %instance, pid, %info, "remote instance exited");
            shared.remote.exited(host, &instance, pid, parsed);
            Ok(None)
        }
        AgentMsg::Stopped { instance } => {
            shared.remote.stopped(host, &instance);
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Watches `running` as the run of `inst` that the controller asked for, at its port.
fn accept(
    shared: &Arc<Shared>,
    host: &str,
    inst: &mut Instance,
    running: &Running,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<()> {
    let Some(cluster) = &shared.cluster else {
        return Ok(());
    };
    inst.port = running.port;
    let handle = shared.remote.register(cluster, host, running);
    instances::running(shared, inst, Ok(InstanceHandle::Remote(handle)), now, exits)
}

/// A host's session opened: keep the instances it runs that the controller wants, stop the
/// others (stale: the host was lost and they were replaced), take those it no longer runs as
/// exited, and ask again for the ones still waiting to start.
fn on_hello(
    shared: &Arc<Shared>,
    host: &str,
    running: Vec<Running>,
    now: Millis,
    exits: &mpsc::UnboundedSender<Exited>,
) -> anyhow::Result<()> {
    // Not stopped: draining instances finish their requests under their own drain task.
    let records: Vec<Instance> = shared
        .store
        .instances(None, false)?
        .into_iter()
        .filter(|i| i.host == host)
        .collect();
    let wanted: Vec<Instance> = records
        .iter()
        .filter(|i| !i.state.is_leaving())
        .cloned()
        .collect();
    let mut reported = HashSet::new();
    for r in &running {
        reported.insert(r.instance.clone());
        let ours = records
            .iter()
            .any(|i| i.id == r.instance && i.pid == Some(r.pid));
        let pending = wanted
            .iter()
            .find(|i| i.id == r.instance && i.pid.is_none());
        match (ours, pending) {
            (true, _) => {}
            // Started while the answer was lost: take it as the answer.
            (false, Some(inst)) => accept(shared, host, &mut inst.clone(), r, now, exits)?,
            (false, None) => stop_stale(shared, host, &r.instance),
        }
    }
    for inst in &wanted {
        match inst.pid {
            Some(pid) if !reported.contains(&inst.id) => {
                // It ended while its agent was away, or the agent's host restarted.
                if shared.remote.pid(&inst.id) == Some(pid) {
                    shared.remote.exited(host, &inst.id, pid, ExitInfo::UNKNOWN);
                } else {
                    let _ = exits.send(Exited {
                        app: inst.app.clone(),
                        instance: inst.id.clone(),
                        pid,
                        info: format!("was gone when host {host} reconnected"),
                    });
                }
            }
            Some(_) => {}
            None if reported.contains(&inst.id) => {}
            None => {
                let mut inst = inst.clone();
                inst.restart_at = Some(now);
                shared.store.upsert_instance(&inst)?;
            }
        }
    }
    Ok(())
}

/// The instances of hosts away for longer than the heartbeat timeout will never serve again:
/// recorded as stopped (so the planner, which no longer counts them, starts replacements on
/// the other hosts) and taken out of the edge proxy. When such a host comes back, its `hello`
/// lists them and they are stopped there.
pub fn fence(shared: &Shared, lost: &[String], now: Millis) -> anyhow::Result<bool> {
    if lost.is_empty() {
        return Ok(false);
    }
    let mut changed = false;
    for mut inst in shared.store.instances(None, false)? {
        if inst.state.is_leaving() || !lost.contains(&inst.host) {
            continue;
        }
        if let Some(l) = shared.live().remove(&inst.id) {
            l.backend.start_drain();
            if let Some(c) = l.checker {
                c.abort();
            }
        }
        shared.remote.forget(&inst.id);
        inst.state = InstanceState::Stopped;
        inst.in_split = false;
        inst.pid = None;
        shared.store.upsert_instance(&inst)?;
        let msg = format!(
            "{} ({}) is on host {}, which is lost: it will not serve again; replacing it",
            inst.id, inst.release, inst.host
        );
        record(shared, &inst, EventKind::InstanceExited, &msg, now)?;
        changed = true;
    }
    Ok(changed)
}
