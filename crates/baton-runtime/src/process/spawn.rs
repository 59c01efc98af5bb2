//! Starting a child process from a [`ProcessSpec`]: its own process group, its own log file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::{DriverError, ProcessSpec};

/// Starts the program of `spec`. Must run inside a tokio runtime.
pub(crate) fn spawn_child(spec: &ProcessSpec) -> Result<Child, DriverError> {
    let program = spec.argv.first().ok_or(DriverError::EmptyCommand)?;
    check_cwd(&spec.cwd)?;
    let log = open_log(&spec.log_path)?;
    let log_err = log.try_clone().map_err(|source| DriverError::Log {
        path: spec.log_path.clone(),
        source,
    })?;
    let mut command = Command::new(program);
    command
        .args(&spec.argv[1..])
        .envs(&spec.env)
        // Where a restarting Baton waited for this Baton (crates/baton-proxy/src/handoff/mod.rs):
        // nothing of the instance's.
        .env_remove("BATON_HANDOFF")
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        // The child writes its log itself, so it keeps logging while Baton is down.
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // Its own group: a SIGKILL to Baton's group (e.g. Ctrl-C in a terminal, a service
        // manager) does not reach instances, and `stop` can signal the instance's helpers too.
        .process_group(0)
        .kill_on_drop(false);
    command.spawn().map_err(|source| {
        let program = program.clone();
        let cwd = spec.cwd.clone();
        match source.kind() {
            io::ErrorKind::NotFound => DriverError::ProgramNotFound { program, cwd },
            io::ErrorKind::PermissionDenied => DriverError::NotExecutable { program, cwd },
            _ => DriverError::Spawn { program, source },
        }
    })
}

/// Checked first so that a missing directory is not misreported as a missing program (both
/// come back from exec as `ENOENT`).
fn check_cwd(cwd: &Path) -> Result<(), DriverError> {
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(DriverError::Cwd {
            cwd: cwd.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        }),
        Err(source) => Err(DriverError::Cwd {
            cwd: cwd.to_path_buf(),
            source,
        }),
    }
}

fn open_log(path: &Path) -> Result<File, DriverError> {
    let log_error = |source| DriverError::Log {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(log_error)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(log_error)
}
