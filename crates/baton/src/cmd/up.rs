//! `baton up`: the daemon in the foreground until SIGINT, SIGTERM or `baton stop`; SIGUSR2 (or
//! `baton restart`) hands over to the binary on disk.

use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use crate::exit::{Failure, Result};

pub async fn run(config_path: &Path) -> Result<()> {
    let config = match baton_server::load_config(config_path) {
        Ok(config) => config,
        Err(e) => {
            // Started by `baton restart`: the running baton keeps serving, and says why.
            baton_server::handover::refuse(&e.to_string()).await;
            return Err(Failure::usage(e.to_string()));
        }
    };
    super::init_logs("info");
    let mut term = signal(SignalKind::terminate()).map_err(|e| Failure::failed(e.to_string()))?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    baton_server::run(config_path, config, shutdown, None).await?;
    Ok(())
}
