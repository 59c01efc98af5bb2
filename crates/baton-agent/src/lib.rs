//! The host side of Baton: `baton agent`. It joins the cluster once with a token (verifying
//! the controller against the CA the token pins), keeps its certificate and key in its data
//! directory, and then holds a mutually authenticated session with the controller forever,
//! reconnecting with backoff. It has no control port: it only dials out (docs/DESIGN.md I9);
//! the only listeners it opens are its apps' `host_port` (`proxy.rs`), for app traffic, and
//! its tunnel (`tunnel.rs`), through which only the controller's proxy reaches its instances
//! (which listen on loopback).
//!
//! The controller's requests (run, stop) arrive in the session and are carried out by
//! `executor.rs` with the host runtime of `baton-runtime`.

mod backoff;
mod connect;
mod executor;
mod handover;
mod identity;
mod join;
mod lb;
mod proxy;
mod session;
mod tunnel;

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;

pub use identity::default_dir;

/// How `baton agent` was started.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The controller's cluster address, `HOST:PORT`.
    pub controller: String,
    /// A join token, needed until the host has joined.
    pub token: Option<String>,
    /// The host's name, as in `[hosts.NAME]`.
    pub name: String,
    /// The host's address, as in `[hosts.NAME] address`; the agent's connections come from it.
    pub address: IpAddr,
    /// The port of the host's tunnel on `address` (0: a free one).
    pub tunnel_port: u16,
    /// Where the host's credentials are kept.
    pub data_dir: PathBuf,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The options cannot work: what to change.
    #[error("{0}")]
    Usage(String),
    /// The controller refused the join.
    #[error("the controller refused the join: {0}")]
    Refused(String),
    /// The controller could not be trusted or the join could not finish.
    #[error("{0}")]
    Join(String),
    /// A file of the data directory could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored credential could not be written.
    #[error(transparent)]
    Store(baton_cluster::CaError),
    /// A restart's hand-over failed.
    #[error(transparent)]
    Handoff(#[from] baton_proxy::handoff::HandoffError),
    /// A stored credential does not parse.
    #[error("{}: {what}: remove the data directory and join again with a new token", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl AgentError {
    /// Whether the error comes from how the agent was started (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, AgentError::Usage(_))
    }
}

/// Runs the agent until `shutdown` resolves: joins first if the data directory holds no
/// credentials, then keeps a session with the controller. SIGUSR2 hands over to the agent
/// binary on disk (`handover.rs`); started for such a hand-over, it takes over.
pub async fn run(opts: AgentOptions, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let mut handover = handover::Handover::from_env().await?;
    let result = start(&opts, shutdown, &mut handover).await;
    if let Err(e) = &result {
        handover.failed(&e.to_string()).await;
    }
    result
}

async fn start(
    opts: &AgentOptions,
    shutdown: impl Future<Output = ()>,
    handover: &mut handover::Handover,
) -> Result<(), AgentError> {
    let opts = opts.clone();
    connect::check_local_address(opts.address)?;
    identity::prepare(&opts.data_dir)?;
    tokio::pin!(shutdown);
    let identity = match identity::load(&opts.data_dir)? {
        Some(id) => {
            if id.name != opts.name {
                return Err(AgentError::Usage(format!(
                    "{} holds the credentials of host {:?}, not {:?}: give each host its own --data-dir",
                    opts.data_dir.display(),
                    id.name,
                    opts.name
                )));
            }
            if opts.token.is_some() {
                tracing::info!(data_dir = %opts.data_dir.display(), "already joined: --token is not needed (remove the data directory to join again)");
            }
            id
        }
        None => {
            let Some(token) = &opts.token else {
                return Err(AgentError::Usage(format!(
                    "host {} has not joined yet ({} holds no certificate): pass --token with a token from `baton host token` on the controller",
                    opts.name,
                    opts.data_dir.display()
                )));
            };
            tokio::select! {
                joined = join::join(&opts, token) => joined?,
                _ = &mut shutdown => return Ok(()),
            }
        }
    };
    handover.take().await?;
    session::run_forever(&opts, identity, shutdown, handover).await
}
