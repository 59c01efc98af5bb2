//! `baton up`: the daemon in the foreground until SIGINT or SIGTERM.

use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use crate::exit::{Failure, Result};

pub async fn run(config_path: &Path) -> Result<()> {
    let config =
        baton_server::load_config(config_path).map_err(|e| Failure::usage(e.to_string()))?;
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
