//! Errors of the process driver, each saying what failed, where, and what to do.

use std::io;
use std::path::PathBuf;

/// Why the process driver could not start an instance.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The spec had no program to run.
    #[error("the instance command is empty; set `command` in baton.toml")]
    EmptyCommand,
    /// The program does not exist (absolute, relative to `cwd`, or on `PATH`).
    #[error(
        "program `{program}` not found (working directory {cwd}); check `command` in baton.toml"
    )]
    ProgramNotFound {
        /// The program as written in the spec.
        program: String,
        /// The working directory it was resolved from.
        cwd: PathBuf,
    },
    /// The program exists but may not be executed.
    #[error(
        "program `{program}` is not executable (working directory {cwd}); check `command` in baton.toml and the file's permissions"
    )]
    NotExecutable {
        /// The program as written in the spec.
        program: String,
        /// The working directory it was resolved from.
        cwd: PathBuf,
    },
    /// The working directory is missing or not a directory.
    #[error("working directory {cwd} does not exist or is not a directory: {source}")]
    Cwd {
        /// The working directory from the spec.
        cwd: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The log file (or its parent directory) could not be opened for appending.
    #[error("cannot open log file {path} for appending: {source}")]
    Log {
        /// The log file from the spec.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The pid file could not be written. The process was killed again: an instance Baton
    /// cannot re-adopt after a restart would be orphaned.
    #[error("cannot write pid file {path}: {source}")]
    PidFile {
        /// The pid file from the spec.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Any other failure of the operating system to start the program.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program as written in the spec.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No free port could be found on the host's address.
    #[error(
        "cannot find a free port on the host's address: {0}; is the address configured on this machine?"
    )]
    Port(#[source] io::Error),
}
