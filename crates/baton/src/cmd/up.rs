//! `baton up`: the daemon in the foreground until SIGINT, SIGTERM or `baton stop`; SIGHUP reloads
//! the config (as `baton reload` does); SIGUSR2 (or `baton restart`) hands over to the binary on
//! disk.

use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

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
    // Installed before the daemon starts, so an early SIGHUP never kills it.
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Failure::failed(e.to_string()))?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let (ready, daemon) = oneshot::channel::<baton_server::Daemon>();
    let reloads = tokio::spawn(async move {
        let Ok(daemon) = daemon.await else { return };
        while hup.recv().await.is_some() {
            // The daemon logs the outcome: what changed, or why nothing did.
            let _ = daemon.reload.reload().await;
        }
    });
    let result = baton_server::run(config_path, config, shutdown, Some(ready)).await;
    reloads.abort();
    result?;
    Ok(())
}
