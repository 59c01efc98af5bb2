//! Baton's drivers: start, adopt, watch and stop instances.
//!
//! The `process` driver runs each instance as a child process in its own process group, so
//! instances outlive a Baton killed with SIGKILL, and a restarted Baton re-adopts them by pid and
//! process start time (a reused pid is never mistaken for an instance). Linux only: it reads
//! `/proc`.
//!
//! The `docker` driver runs each instance as a container of the local Docker Engine (unix socket
//! only), in the host's network namespace, labelled with its owner and instance so that a
//! restarted Baton re-adopts exactly its own containers.
//!
//! [`LocalHandle`] is either, and [`host::HostRuntime`] runs both for an agent, as the
//! controller does on its own host.

pub mod docker;
mod exit;
pub mod host;
mod local;
pub mod process;

pub use exit::{ExitInfo, StopOutcome};
pub use local::LocalHandle;
pub use process::{
    DriverError, ProcessHandle, ProcessSpec, free_port, free_port_on, kill_pid_files,
    proc_start_time, read_pid_file,
};
