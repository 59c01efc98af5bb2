//! `baton status` and `baton history`.

use std::path::Path;

use baton_server::views::{AppStatus, DeploymentView};

use crate::client::{Client, encode, env_query};
use crate::exit::Result;
use crate::output::{self, esc};

pub async fn status(config: &Path, app: Option<&str>, env: Option<&str>, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    match app {
        Some(app) => {
            let s: AppStatus = client
                .get(&format!("/v1/apps/{}{}", encode(app), env_query(env)))
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).expect("serializable")
                );
            } else {
                output::status(&s);
            }
        }
        None => {
            let all: Vec<AppStatus> = client.get("/v1/apps").await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&all).expect("serializable")
                );
            } else {
                for s in &all {
                    output::status(s);
                }
            }
        }
    }
    Ok(())
}

pub async fn history(
    config: &Path,
    app: &str,
    env: Option<&str>,
    json: bool,
    limit: usize,
) -> Result<()> {
    let client = Client::from_config(config)?;
    let env_part = env
        .map(|e| format!("&env={}", encode(e)))
        .unwrap_or_default();
    let list: Vec<DeploymentView> = client
        .get(&format!(
            "/v1/apps/{}/deployments?limit={limit}{env_part}",
            encode(app)
        ))
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("serializable")
        );
        return Ok(());
    }
    if list.is_empty() {
        println!("{app} has no deployments yet");
    }
    for d in &list {
        output::history_line(d);
    }
    Ok(())
}

/// `baton env APP`: one line per environment.
pub async fn environments(config: &Path, app: &str, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let all: Vec<AppStatus> = client.get("/v1/apps").await?;
    let mine: Vec<&AppStatus> = all.iter().filter(|s| s.app == app).collect();
    if mine.is_empty() {
        return Err(crate::exit::Failure::usage(format!("no app named {app:?}")));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&mine).expect("serializable")
        );
        return Ok(());
    }
    println!(
        "{:<12} {:<10} {:<10} {:<8} {:<10} listen",
        "environment", "release", "since", "healthy", "phase"
    );
    for s in mine {
        let healthy = s
            .instances
            .iter()
            .filter(|i| i.state == "healthy" && i.in_split)
            .count();
        let since = s.since.map(output::clock).unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:<10} {:<10} {:<8} {:<10} {}",
            esc(&s.env),
            esc(s.release.as_deref().unwrap_or("-")),
            since,
            format!("{healthy}/{}", s.instances_wanted),
            esc(&s.phase),
            esc(&s.listen)
        );
    }
    Ok(())
}
