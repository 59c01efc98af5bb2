//! `baton deploy` and `baton rollback`: record the intent, then optionally follow it.

use std::path::Path;
use std::time::Duration;

use baton_server::views::{AppStatus, DeployRequest, DeploymentDetail, DeploymentView};

use crate::client::{Client, encode};
use crate::exit::{Failure, Result};
use crate::output::{self, esc};

/// Where a deploy goes and how it passes the promotion gate.
pub struct Target {
    pub env: Option<String>,
    pub from_env: Option<String>,
    pub force: bool,
}

pub async fn deploy(
    config: &Path,
    app: &str,
    version: Option<&str>,
    target: Target,
    strategy: Option<&str>,
    wait: bool,
) -> Result<()> {
    if version.is_none() == target.from_env.is_none() {
        return Err(crate::exit::Failure::usage(
            "give a release version, or --from ENV to deploy exactly what serves there (not both)",
        ));
    }
    let client = Client::from_config(config)?;
    let req = DeployRequest {
        release: version.map(String::from),
        strategy: strategy.map(String::from),
        env: target.env,
        from_env: target.from_env,
        force: target.force,
        actor: Some(crate::client::actor()),
    };
    let d: DeploymentView = client
        .post_json(&format!("/v1/apps/{}/deployments", encode(app)), &req)
        .await?;
    announce(&d);
    if wait {
        follow(&client, d.id, true).await
    } else {
        Ok(())
    }
}

pub async fn rollback(
    config: &Path,
    app: &str,
    env: Option<&str>,
    to: Option<&str>,
    force: bool,
    strategy: Option<&str>,
    wait: bool,
) -> Result<()> {
    let client = Client::from_config(config)?;
    let req = DeployRequest {
        release: to.map(String::from),
        strategy: strategy.map(String::from),
        env: env.map(String::from),
        force,
        actor: Some(crate::client::actor()),
        ..Default::default()
    };
    let d: DeploymentView = client
        .post_json(&format!("/v1/apps/{}/rollback", encode(app)), &req)
        .await?;
    announce(&d);
    if wait {
        follow(&client, d.id, true).await
    } else {
        Ok(())
    }
}

fn announce(d: &DeploymentView) {
    println!(
        "deployment #{}: {} in {}: {} -> {} ({}) recorded",
        d.id,
        esc(&d.app),
        esc(&d.env),
        esc(d.from.as_deref().unwrap_or("nothing")),
        esc(&d.to),
        esc(&d.strategy)
    );
}

/// Prints the deployment's events and progress until it ends; Ok only if it succeeded.
pub async fn follow(client: &Client, id: i64, print: bool) -> Result<()> {
    let mut seen = 0i64;
    let mut last_progress = String::new();
    loop {
        let detail: DeploymentDetail = client.get(&format!("/v1/deployments/{id}")).await?;
        let since = seen;
        for e in detail.events.iter().filter(|e| e.id > since) {
            if print {
                println!(
                    "  {}  {:<22} {}",
                    output::clock(e.at),
                    esc(&e.kind.to_string()),
                    esc(&e.message)
                );
            }
            seen = e.id;
        }
        let d = &detail.deployment;
        if let Ok(s) = client
            .get::<AppStatus>(&format!(
                "/v1/apps/{}?env={}",
                encode(&d.app),
                encode(&d.env)
            ))
            .await
        {
            let healthy = s
                .instances
                .iter()
                .filter(|i| i.release == d.to && i.state == "healthy")
                .count();
            let phase = if output::holding(d).is_some() {
                "holding".to_string()
            } else {
                esc(&d.phase).into_owned()
            };
            let progress = format!(
                "{} step {} · {} healthy on {} · split {}",
                phase,
                d.step,
                healthy,
                esc(&d.to),
                output::split(&s)
            );
            if print && progress != last_progress {
                println!("  ..        {progress}");
                last_progress = progress;
            }
        }
        match d.phase.as_str() {
            "succeeded" => {
                if print {
                    println!(
                        "deployment #{} succeeded in {}: {} serves 100 %",
                        d.id,
                        output::duration(d.duration_ms),
                        esc(&d.to)
                    );
                }
                return Ok(());
            }
            "failed" | "rolled_back" => {
                return Err(Failure::failed(format!(
                    "deployment #{} {}: {}",
                    d.id,
                    d.phase.replace('_', " "),
                    esc(d.reason.as_deref().unwrap_or("no reason recorded")),
                )));
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
