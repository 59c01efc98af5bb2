//! The process driver: instances as real child processes, each in its own process group.

mod error;
mod handle;
mod pid_file;
mod port;
mod procfs;
mod spawn;
mod spec;

pub use crate::exit::{ExitInfo, StopOutcome};
pub use error::DriverError;
pub use handle::ProcessHandle;
pub use pid_file::{kill_pid_files, read_pid_file};
pub use port::{free_port, free_port_on};
pub use procfs::proc_start_time;
pub use spec::ProcessSpec;

#[cfg(test)]
pub(crate) mod test_support;
