//! A host's instances: what an agent runs for its controller (docs/design-notes.md, "Many hosts
//! and containers"). It starts instances from [`RunSpec`]s on its own address and a free port,
//! stops them, re-adopts them after the agent restarts, and reports exits. Starting an instance
//! that already runs, or stopping one that does not, changes nothing: a repeated message is
//! harmless.

mod record;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_core::config::{CommandVars, render_command};
use tokio::sync::mpsc;

use crate::process::{DriverError, ProcessHandle, ProcessSpec, StopOutcome, free_port_on};
pub use baton_core::run::{RunSpec, Running};
use record::RunRecord;

/// Something that happened to an instance without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// The instance's process exited while it was meant to run (a crash).
    Exited {
        /// The instance id.
        instance: String,
        /// The pid of the run that ended.
        pid: u32,
        /// How it ended, for the event log.
        info: String,
    },
}

struct Entry {
    running: Running,
    handle: ProcessHandle,
}

/// The instances of one host.
pub struct HostRuntime {
    address: IpAddr,
    dir: PathBuf,
    table: Mutex<HashMap<String, Entry>>,
    events: mpsc::UnboundedSender<HostEvent>,
}

impl HostRuntime {
    /// A host whose instances listen on `address`, keeping its records, pid files and logs
    /// under `dir`. Exits arrive on the returned receiver.
    pub fn new(
        address: IpAddr,
        dir: &Path,
    ) -> (Arc<HostRuntime>, mpsc::UnboundedReceiver<HostEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let host = HostRuntime {
            address,
            dir: dir.to_path_buf(),
            table: Mutex::new(HashMap::new()),
            events,
        };
        (Arc::new(host), rx)
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn records(&self) -> PathBuf {
        self.dir.join("instances")
    }

    fn pid_file(&self, instance: &str) -> PathBuf {
        self.dir.join("run").join(format!("{instance}.pid"))
    }

    /// Where an instance's stdout and stderr go.
    pub fn log_path(&self, app: &str, instance: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(app)
            .join(format!("{instance}.log"))
    }

    /// Re-adopts every instance a previous run of this agent left running; returns the
    /// records of those that are gone (their records are removed).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn adopt(self: &Arc<Self>) -> Vec<Running> {
        let mut gone = Vec::new();
        for rec in record::read_all(&self.records()) {
            let id = rec.running.instance.clone();
            match ProcessHandle::adopt(rec.running.pid, rec.start_time) {
                Some(handle) => {
                    tracing::info!(instance = %id, pid = handle.pid(), "instance re-adopted");
                    self.watch(&rec.running, &handle);
                    self.table().insert(
                        id,
                        Entry {
                            running: rec.running,
                            handle,
                        },
                    );
                }
                None => {
                    record::remove(&self.records(), &id);
                    gone.push(rec.running);
                }
            }
        }
        gone
    }

    /// Starts the instance `spec` describes, its artifact unpacked at `artifact`; if it already
    /// runs, returns it as it is.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn run(self: &Arc<Self>, spec: &RunSpec, artifact: &Path) -> Result<Running, DriverError> {
        // Held until the instance is in the table: two runs of one instance at once start it
        // once (the second gets the first's answer).
        let mut table = self.table();
        if let Some(entry) = table.get(&spec.instance) {
            return Ok(entry.running.clone());
        }
        let port = free_port_on(self.address).map_err(DriverError::Port)?;
        let process = self.process_spec(spec, artifact, port);
        let handle = ProcessHandle::spawn(&process)?;
        let running = Running {
            instance: spec.instance.clone(),
            release: spec.release.clone(),
            pid: handle.pid(),
            port,
        };
        let rec = RunRecord {
            running: running.clone(),
            app: spec.app.clone(),
            start_time: handle.start_time(),
        };
        if let Err(source) = record::write(&self.records(), &rec) {
            // Without its record a restarted agent could not re-adopt it: an orphan.
            handle.kill();
            let path = record::path(&self.records(), &spec.instance);
            return Err(DriverError::PidFile { path, source });
        }
        table.insert(
            spec.instance.clone(),
            Entry {
                running: running.clone(),
                handle: handle.clone(),
            },
        );
        drop(table);
        self.watch(&running, &handle);
        Ok(running)
    }

    fn process_spec(&self, spec: &RunSpec, artifact: &Path, port: u16) -> ProcessSpec {
        let artifact_str = artifact.to_string_lossy();
        let host = self.address.to_string();
        let argv = render_command(
            &spec.command,
            &CommandVars {
                artifact: &artifact_str,
                host: &host,
                port,
                version: &spec.release,
                instance: &spec.instance,
            },
        );
        let mut env: BTreeMap<String, String> = spec.env.clone();
        env.insert("HOST".into(), host);
        env.insert("PORT".into(), port.to_string());
        env.insert("BATON_APP".into(), spec.app.clone());
        env.insert("BATON_RELEASE".into(), spec.release.clone());
        env.insert("BATON_INSTANCE".into(), spec.instance.clone());
        ProcessSpec {
            argv,
            env,
            cwd: artifact.to_path_buf(),
            log_path: self.log_path(&spec.app, &spec.instance),
            pid_file: Some(self.pid_file(&spec.instance)),
        }
    }

    /// Reports the exit of this run unless it was stopped on purpose (its entry is gone then).
    fn watch(self: &Arc<Self>, running: &Running, handle: &ProcessHandle) {
        let (host, id, pid, handle) = (
            Arc::downgrade(self),
            running.instance.clone(),
            handle.pid(),
            handle.clone(),
        );
        tokio::spawn(async move {
            let info = handle.exited().await;
            let Some(host) = host.upgrade() else { return };
            let ours = host.table().get(&id).is_some_and(|e| e.running.pid == pid);
            if !ours {
                return;
            }
            host.table().remove(&id);
            record::remove(&host.records(), &id);
            let _ = host.events.send(HostEvent::Exited {
                instance: id,
                pid,
                info: info.to_string(),
            });
        });
    }

    /// Stops an instance: SIGTERM, SIGKILL after `stop_timeout`. One it does not run is
    /// already gone.
    pub async fn stop(&self, instance: &str, stop_timeout: Duration) -> StopOutcome {
        let Some(entry) = self.table().remove(instance) else {
            return StopOutcome::AlreadyGone;
        };
        let outcome = entry.handle.stop(stop_timeout).await;
        record::remove(&self.records(), instance);
        outcome
    }

    /// Every instance it runs, by id.
    pub fn running(&self) -> Vec<Running> {
        let mut all: Vec<Running> = self.table().values().map(|e| e.running.clone()).collect();
        all.sort_by(|a, b| a.instance.cmp(&b.instance));
        all
    }
}

#[cfg(test)]
mod tests;
