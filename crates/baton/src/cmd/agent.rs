//! `baton agent`: this host's agent in the foreground until SIGINT or SIGTERM.

use tokio::signal::unix::{SignalKind, signal};

use crate::cli::AgentArgs;
use crate::exit::{Failure, Result};

pub async fn run(args: AgentArgs) -> Result<()> {
    super::init_logs("info");
    let mut term = signal(SignalKind::terminate()).map_err(|e| Failure::failed(e.to_string()))?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let opts = baton_agent::AgentOptions {
        controller: args.join,
        token: args.token,
        name: args.name,
        address: args.address,
        tunnel_port: args.tunnel_port,
        data_dir: args.data_dir.unwrap_or_else(baton_agent::default_dir),
    };
    baton_agent::run(opts, shutdown).await.map_err(|e| {
        if e.is_usage() {
            Failure::usage(e.to_string())
        } else {
            Failure::failed(e.to_string())
        }
    })
}
