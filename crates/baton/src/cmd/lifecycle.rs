//! `baton restart` (hand over to the binary on disk with no request lost) and `baton stop`
//! (with or without the instances): asked of the running `baton up` through its API.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_server::handover::Restarted;
use baton_server::{HANDING_OVER, StopRequest, Stopping};

use crate::client::Client;
use crate::exit::{Failure, Result};

/// How long `baton restart` retries while a previous hand-over is finishing.
const BUSY_RETRY: Duration = Duration::from_secs(30);
/// How long `baton stop` waits for the process to exit.
const STOP_WAIT: Duration = Duration::from_secs(120);

pub async fn restart(config: &Path) -> Result<()> {
    let client = Client::from_config(config)?;
    let deadline = Instant::now() + BUSY_RETRY;
    loop {
        let answer = client
            .post_json::<_, Restarted>("/v1/restart", &serde_json::json!({}))
            .await;
        match answer {
            Ok(r) => {
                println!(
                    "restarted: pid {} serves (pid {} finishes its requests and exits); instances re-adopted",
                    r.new_pid, r.old_pid
                );
                return Ok(());
            }
            // The API connection reached the process that has just handed over.
            Err(e) if e.code.as_deref() == Some(HANDING_OVER) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(Failure::failed(e.message)),
        }
    }
}

pub async fn stop(config: &Path, keep_instances: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let s: Stopping = client
        .post_json("/v1/stop", &StopRequest { keep_instances })
        .await?;
    let deadline = Instant::now() + STOP_WAIT;
    while running(s.pid) {
        if Instant::now() >= deadline {
            return Err(Failure::failed(format!(
                "baton (pid {}) is still finishing its requests after {}s",
                s.pid,
                STOP_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if s.keep_instances {
        println!(
            "stopped baton (pid {}); the instances keep running and the next `baton up` re-adopts them",
            s.pid
        );
    } else {
        println!("stopped baton (pid {}) and its instances", s.pid);
    }
    Ok(())
}

/// Whether `pid` runs (a zombie, exited but not yet reaped by its parent, does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
