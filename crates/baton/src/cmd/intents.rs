//! `baton promote|pause|resume|abort|analysis`: operator intents and the verdicts.

use std::path::Path;

use baton_server::views::DeploymentView;
use baton_server::{AnalysisView, PromoteRequest};

use crate::client::{Client, encode, env_query};
use crate::cmd::deploy::follow;
use crate::exit::Result;
use crate::output::{self, esc};

pub async fn promote(config: &Path, app: &str, env: Option<&str>, full: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let d: DeploymentView = client
        .post_json(
            &format!("/v1/apps/{}/promote{}", encode(app), env_query(env)),
            &PromoteRequest { full },
        )
        .await?;
    let how = if full {
        "to 100 %, skipping the remaining steps and analysis"
    } else {
        "to the next step"
    };
    println!(
        "deployment #{} ({} -> {}): promotion {how} recorded",
        d.id,
        esc(d.from.as_deref().unwrap_or("-")),
        esc(&d.to)
    );
    Ok(())
}

pub async fn simple(config: &Path, app: &str, env: Option<&str>, what: &str) -> Result<()> {
    let client = Client::from_config(config)?;
    let d: DeploymentView = client
        .post_json(
            &format!("/v1/apps/{}/{what}{}", encode(app), env_query(env)),
            &serde_json::json!({}),
        )
        .await?;
    println!(
        "deployment #{} ({} -> {}) at step {}: {what} recorded",
        d.id,
        esc(d.from.as_deref().unwrap_or("-")),
        esc(&d.to),
        d.step
    );
    Ok(())
}

pub async fn abort(config: &Path, app: &str, env: Option<&str>, wait: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let d: DeploymentView = client
        .post_json(
            &format!("/v1/apps/{}/abort{}", encode(app), env_query(env)),
            &serde_json::json!({}),
        )
        .await?;
    println!(
        "deployment #{} ({} -> {}): abort recorded; new requests go to {}",
        d.id,
        esc(d.from.as_deref().unwrap_or("-")),
        esc(&d.to),
        esc(d.from.as_deref().unwrap_or("nothing"))
    );
    if !wait {
        return Ok(());
    }
    // An aborted deployment ends rolled back (or failed): that is what was asked for.
    match follow(&client, d.id, true).await {
        Ok(()) => Ok(()),
        Err(e) if e.message.contains("rolled back") || e.message.contains("failed") => {
            println!("{}", esc(&e.message));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

pub async fn analysis(config: &Path, app: &str, env: Option<&str>, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let a: AnalysisView = client
        .get(&format!(
            "/v1/apps/{}/analysis{}",
            encode(app),
            env_query(env)
        ))
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&a).expect("serializable")
        );
        return Ok(());
    }
    let d = &a.deployment;
    println!(
        "deployment #{} {} -> {} ({}) {} step {}",
        d.id,
        esc(d.from.as_deref().unwrap_or("-")),
        esc(&d.to),
        esc(&d.strategy),
        esc(&d.phase),
        d.step
    );
    if a.verdicts.is_empty() {
        println!("  no verdicts yet");
    }
    // One line per verdict that changed something, and always the last one.
    let mut last = None;
    for (i, v) in a.verdicts.iter().enumerate() {
        let key = (v.step, v.outcome.clone(), v.summary.clone());
        if last.as_ref() == Some(&key) && i + 1 != a.verdicts.len() {
            continue;
        }
        println!(
            "  {}  step {:<2} {:<12} {}",
            output::clock(v.at),
            v.step,
            esc(&v.outcome),
            esc(&v.summary)
        );
        last = Some(key);
    }
    if let Some(v) = a.verdicts.last() {
        println!("  last verdict's checks:");
        if let Some(checks) = v.figures.get("checks").and_then(|c| c.as_array()) {
            for c in checks {
                println!(
                    "    {:<18} {:<12} {}",
                    esc(c["name"].as_str().unwrap_or("?")),
                    esc(c["outcome"].as_str().unwrap_or("?")),
                    esc(c["detail"].as_str().unwrap_or(""))
                );
            }
        }
    }
    Ok(())
}
