//! `baton release create|list`.

use std::path::Path;

use baton_core::model::Release;
use baton_server::views::ReleaseCreated;

use crate::client::{Client, encode};
use crate::exit::{Failure, Result};
use crate::output;

pub async fn create(config: &Path, app: &str, version: &str, artifact: &Path, notes: Option<&str>) -> Result<()> {
    let path = artifact.to_path_buf();
    let archive = tokio::task::spawn_blocking(move || baton_store::pack(&path))
        .await
        .map_err(|e| Failure::failed(e.to_string()))?
        .map_err(|e| Failure::usage(format!("artifact {}: {e}", artifact.display())))?;
    let size = archive.len();
    let client = Client::from_config(config)?;
    let mut url = format!("/v1/apps/{}/releases?version={}", encode(app), encode(version));
    if let Some(n) = notes {
        url.push_str(&format!("&notes={}", encode(n)));
    }
    let r: ReleaseCreated = client.post_bytes(&url, archive, "application/x-tar").await?;
    let short = short_digest(&r.release.digest);
    if r.created {
        println!("created {} {} {} ({})", app, version, short, human_size(size));
    } else {
        println!("{} {} already exists with the same content {} (nothing changed)", app, version, short);
    }
    Ok(())
}

pub async fn list(config: &Path, app: &str, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let list: Vec<Release> = client.get(&format!("/v1/apps/{}/releases", encode(app))).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list).expect("serializable"));
        return Ok(());
    }
    for r in &list {
        println!("{:<12} {}  {}  {}", r.version, short_digest(&r.digest), output::clock(r.created_at), r.notes.as_deref().unwrap_or(""));
    }
    Ok(())
}

fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

fn short_digest(d: &str) -> &str {
    &d[..d.len().min(19)]
}

/// `baton releases APP`: the ledger.
pub async fn ledger(config: &Path, app: &str, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let entries: Vec<baton_server::LedgerEntry> = client.get(&format!("/v1/apps/{}/ledger", encode(app))).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries).expect("serializable"));
        return Ok(());
    }
    if entries.is_empty() {
        println!("{app} has no releases yet");
    }
    for e in &entries {
        let r = &e.release;
        println!("{:<12} {}  created {}  {}", r.version, short_digest(&r.digest), output::clock(r.created_at), r.notes.as_deref().unwrap_or(""));
        if e.runs.is_empty() {
            println!("    never deployed");
        }
        for run in &e.runs {
            println!("    {:<12} #{:<4} {:<12} {}  {}", run.env, run.deployment, run.phase, output::clock(run.created_at), run.trigger);
        }
    }
    Ok(())
}
