//! `baton status` and `baton history`.

use std::path::Path;

use baton_server::views::{AppStatus, DeploymentView};

use crate::client::{Client, encode};
use crate::exit::Result;
use crate::output;

pub async fn status(config: &Path, app: Option<&str>, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    match app {
        Some(app) => {
            let s: AppStatus = client.get(&format!("/v1/apps/{}", encode(app))).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).expect("serializable"));
            } else {
                output::status(&s);
            }
        }
        None => {
            let all: Vec<AppStatus> = client.get("/v1/apps").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all).expect("serializable"));
            } else {
                for s in &all {
                    output::status(s);
                }
            }
        }
    }
    Ok(())
}

pub async fn history(config: &Path, app: &str, json: bool, limit: usize) -> Result<()> {
    let client = Client::from_config(config)?;
    let list: Vec<DeploymentView> = client.get(&format!("/v1/apps/{}/deployments?limit={limit}", encode(app))).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list).expect("serializable"));
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
