//! A host's instances: what an agent runs for its controller (docs/design-notes.md, "Many hosts
//! and containers"). It starts instances from [`RunSpec`]s on its own address and a free port,
//! as processes or as containers of the host's Docker Engine (`containers.rs`), exactly as the
//! controller does on its own host; stops them, re-adopts them after the agent restarts, and
//! reports exits. Starting an instance that already runs, or stopping one that does not,
//! changes nothing: a repeated message is harmless.

mod containers;
mod record;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_core::config::{CommandVars, Driver, render_command};
use baton_core::run::instance_env;
use tokio::sync::{OwnedMutexGuard, mpsc};

use crate::LocalHandle;
use crate::docker::DockerError;
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

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The process driver could not start it.
    #[error(transparent)]
    Process(#[from] DriverError),
    /// The docker driver could not start it.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Its run record could not be written (it was stopped again: without its record a
    /// restarted agent could not re-adopt it).
    #[error("cannot write {}: {source}", .path.display())]
    Record {
        /// The record.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

struct Entry {
    running: Running,
    handle: LocalHandle,
}

/// The instances of one host.
pub struct HostRuntime {
    address: IpAddr,
    dir: PathBuf,
    table: Mutex<HashMap<String, Entry>>,
    /// One start or stop of an instance at a time, so however many `run`s and `stop`s race,
    /// it starts once, and a stop waits for a start under way (which may take an image load).
    busy: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    engine: tokio::sync::Mutex<containers::Engine>,
    events: mpsc::UnboundedSender<HostEvent>,
    /// Tests point the runtime at another engine socket (one that does not answer).
    #[cfg(test)]
    socket: Mutex<Option<PathBuf>>,
}

/// Holds an instance's turn (see `HostRuntime::busy`); forgets its lock when nobody waits.
struct Turn<'a> {
    host: &'a HostRuntime,
    instance: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut busy = self.host.busy.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        if busy
            .get(&self.instance)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            busy.remove(&self.instance);
        }
    }
}

impl HostRuntime {
    /// A host whose instances listen on `address`, keeping its records, pid files, logs and
    /// owner id under `dir`. Exits arrive on the returned receiver.
    pub fn new(
        address: IpAddr,
        dir: &Path,
    ) -> (Arc<HostRuntime>, mpsc::UnboundedReceiver<HostEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let host = HostRuntime {
            address,
            dir: dir.to_path_buf(),
            table: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashMap::new()),
            engine: tokio::sync::Mutex::default(),
            events,
            #[cfg(test)]
            socket: Mutex::default(),
        };
        (Arc::new(host), rx)
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn turn(&self, instance: &str) -> Turn<'_> {
        let lock = self
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(instance.to_string())
            .or_default()
            .clone();
        Turn {
            host: self,
            instance: instance.to_string(),
            guard: Some(lock.lock_owned().await),
        }
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

    fn find(&self, instance: &str) -> Option<Running> {
        self.table().get(instance).map(|e| e.running.clone())
    }

    /// Re-adopts every instance a previous run of this agent left running; returns the
    /// records of those that are gone (their records are removed). Containers are adopted
    /// from the Docker Engine, which is then rid of this host's containers that no record
    /// wants; if it cannot be reached now, they are adopted when it first answers.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn adopt(self: &Arc<Self>) -> Vec<Running> {
        let mut gone = Vec::new();
        let mut containers = Vec::new();
        for rec in record::read_all(&self.records()) {
            if rec.driver == Driver::Docker {
                containers.push(rec);
                continue;
            }
            let id = rec.running.instance.clone();
            match ProcessHandle::adopt(rec.running.pid, rec.start_time) {
                Some(handle) => {
                    tracing::info!(instance = %id, pid = handle.pid(), "instance re-adopted");
                    self.keep(rec.running, LocalHandle::Process(handle));
                }
                None => {
                    record::remove(&self.records(), &id);
                    gone.push(rec.running);
                }
            }
        }
        gone.extend(self.adopt_containers(containers).await);
        gone.sort_by(|a, b| a.instance.cmp(&b.instance));
        gone
    }

    /// Starts the instance `spec` describes, its artifact unpacked at `artifact`; if it already
    /// runs, returns it as it is.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn run(
        self: &Arc<Self>,
        spec: &RunSpec,
        artifact: &Path,
    ) -> Result<Running, RunError> {
        let _turn = self.turn(&spec.instance).await;
        if let Some(running) = self.find(&spec.instance) {
            return Ok(running);
        }
        let (handle, port) = match spec.driver {
            Driver::Process => {
                let port = free_port_on(self.address).map_err(DriverError::Port)?;
                let process = self.process_spec(spec, artifact, port);
                (LocalHandle::Process(ProcessHandle::spawn(&process)?), port)
            }
            Driver::Docker => {
                let engine = self.engine().await?;
                // Reaching the engine for the first time adopts what a previous run of the
                // agent left: this very instance, perhaps.
                if let Some(running) = self.find(&spec.instance) {
                    return Ok(running);
                }
                let port = free_port_on(self.address).map_err(DriverError::Port)?;
                let container = self.start_container(&engine, spec, artifact, port).await?;
                (LocalHandle::Container(container), port)
            }
        };
        let running = Running {
            instance: spec.instance.clone(),
            release: spec.release.clone(),
            pid: handle.pid(),
            port,
        };
        let rec = RunRecord {
            running: running.clone(),
            app: spec.app.clone(),
            start_time: handle.start_time().unwrap_or(0),
            driver: spec.driver,
        };
        if let Err(source) = record::write(&self.records(), &rec) {
            handle.kill().await;
            let path = record::path(&self.records(), &spec.instance);
            return Err(RunError::Record { path, source });
        }
        self.keep(running.clone(), handle);
        Ok(running)
    }

    /// What `{artifact}`, `{host}`, `{port}`... in the command stand for here.
    fn argv(&self, spec: &RunSpec, artifact: &Path, port: u16) -> Vec<String> {
        render_command(
            &spec.command,
            &CommandVars {
                artifact: &artifact.to_string_lossy(),
                host: &self.address.to_string(),
                port,
                version: &spec.release,
                instance: &spec.instance,
            },
        )
    }

    fn env(&self, spec: &RunSpec, port: u16) -> BTreeMap<String, String> {
        let host = self.address.to_string();
        instance_env(
            &spec.env,
            (&host, port),
            &spec.app,
            &spec.release,
            &spec.instance,
        )
    }

    fn process_spec(&self, spec: &RunSpec, artifact: &Path, port: u16) -> ProcessSpec {
        ProcessSpec {
            argv: self.argv(spec, artifact, port),
            env: self.env(spec, port),
            cwd: artifact.to_path_buf(),
            log_path: self.log_path(&spec.app, &spec.instance),
            pid_file: Some(self.pid_file(&spec.instance)),
        }
    }

    /// Puts a running instance in the table and watches it.
    fn keep(self: &Arc<Self>, running: Running, handle: LocalHandle) {
        let id = running.instance.clone();
        let entry = Entry {
            running: running.clone(),
            handle: handle.clone(),
        };
        // In the table first: the watcher reports only an exit of what the table holds.
        self.table().insert(id, entry);
        self.watch(&running, &handle);
    }

    /// Reports the exit of this run unless it was stopped on purpose (its entry is gone then).
    /// A container that ended by itself is removed (its output is in the instance's log).
    fn watch(self: &Arc<Self>, running: &Running, handle: &LocalHandle) {
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
            handle.reap().await;
        });
    }

    /// Stops an instance: SIGTERM, SIGKILL after `stop_timeout` (a container is then removed).
    /// One it does not run is already gone.
    pub async fn stop(self: &Arc<Self>, instance: &str, stop_timeout: Duration) -> StopOutcome {
        let _turn = self.turn(instance).await;
        let mut found = self.table().remove(instance);
        if found.is_none() {
            self.settle_pending(instance).await;
            found = self.table().remove(instance);
        }
        let Some(entry) = found else {
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

#[cfg(test)]
mod container_tests;
