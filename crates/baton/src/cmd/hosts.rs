//! `baton host token` and `baton hosts`.

use std::path::Path;

use baton_server::cluster::view::{HostView, TokenCreated, TokenRequest};

use crate::client::Client;
use crate::exit::Result;
use crate::output::{self, esc};

/// Prints a join token on stdout (alone, for scripts) and how to use it on stderr.
pub async fn token(config: &Path, ttl: &str) -> Result<()> {
    let client = Client::from_config(config)?;
    let created: TokenCreated = client
        .post_json(
            "/v1/hosts/tokens",
            &TokenRequest {
                ttl: Some(ttl.to_string()),
            },
        )
        .await?;
    println!("{}", created.token);
    eprintln!(
        "single use, expires {} UTC; on the new host run:\n  baton agent --join CONTROLLER:PORT --token TOKEN --name NAME --address ADDRESS",
        output::clock(created.expires_at)
    );
    Ok(())
}

/// One line per configured host.
pub async fn list(config: &Path, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let hosts: Vec<HostView> = client.get("/v1/hosts").await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&hosts).expect("serializable")
        );
        return Ok(());
    }
    if hosts.is_empty() {
        println!("no hosts: add [hosts.NAME] with its address to baton.toml");
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:<13} {:<9} {:>9}  last seen",
        "host", "address", "state", "agent", "instances"
    );
    for h in &hosts {
        println!(
            "{:<16} {:<16} {:<13} {:<9} {:>9}  {}",
            esc(&h.name),
            esc(&h.address),
            esc(&h.state),
            esc(h.agent_version.as_deref().unwrap_or("-")),
            h.instances,
            h.last_seen
                .map(|t| format!("{} UTC", output::clock(t)))
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}
