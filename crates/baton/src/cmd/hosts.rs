//! `baton host token`, `baton host drain|undrain` and `baton hosts`.

use std::path::Path;

use baton_server::cluster::view::{DrainView, HostView, TokenCreated, TokenRequest};

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

/// Drains a host (its instances move to the app's other hosts) or lifts the drain.
pub async fn drain(config: &Path, host: &str, drained: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let verb = if drained { "drain" } else { "undrain" };
    let path = format!("/v1/hosts/{}/{verb}", crate::client::encode(host));
    let view: DrainView = client.post_json(&path, &serde_json::json!({})).await?;
    let what = match (view.drained, view.changed) {
        (true, true) => {
            "drained: its instances move to the other hosts (`baton status` shows them)"
        }
        (true, false) => "was already drained",
        (false, true) => "undrained: it takes instances again, the spread evens out one at a time",
        (false, false) => "was not drained",
    };
    println!("host {} {what}", esc(&view.host));
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
        "{:<16} {:<16} {:<20} {:<9} {:>9}  last seen",
        "host", "address", "state", "agent", "instances"
    );
    for h in &hosts {
        println!(
            "{:<16} {:<16} {:<20} {:<9} {:>9}  {}",
            esc(&h.name),
            esc(&h.address),
            esc(&if h.drained {
                format!("{}, drained", h.state)
            } else {
                h.state.clone()
            }),
            esc(h.agent_version.as_deref().unwrap_or("-")),
            h.instances,
            h.last_seen
                .map(|t| format!("{} UTC", output::clock(t)))
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}
