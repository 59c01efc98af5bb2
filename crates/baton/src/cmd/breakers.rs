//! `baton breakers APP`: an app's circuit breakers, their state, since when and their figures.

use std::path::Path;

use baton_server::breakers::BreakersView;

use crate::client::{Client, encode, env_query};
use crate::exit::Result;
use crate::output::{self, esc};

pub async fn breakers(config: &Path, app: &str, env: Option<&str>, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let view: BreakersView = client
        .get(&format!(
            "/v1/apps/{}/breakers{}",
            encode(app),
            env_query(env)
        ))
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).expect("serializable")
        );
        return Ok(());
    }
    print(&view, app);
    Ok(())
}

/// The table as `baton breakers` prints it (also the demo's breaker act).
pub fn print(view: &BreakersView, app: &str) {
    for e in &view.ejected {
        println!(
            "ejected {} ({}) until {} (ejection {})",
            esc(&e.instance),
            esc(&e.release),
            output::clock(e.until),
            e.ejections
        );
    }
    if view.breakers.is_empty() {
        println!(
            "{} has no breakers: add [[apps.{}.breakers]] to the config",
            esc(&view.app),
            esc(app)
        );
        return;
    }
    println!(
        "{:<16} {:<20} {:<10} {:<8} {:>8} {:>7} {:>8}  flag",
        "BREAKER", "PATH", "STATE", "SINCE", "REQUESTS", "ERRORS", "P99"
    );
    for b in &view.breakers {
        // Closed: the window now; otherwise the figures that moved it.
        let f = if b.state == baton_core::breaker::State::Closed {
            &b.window
        } else {
            &b.last
        };
        // A metric breaker: what it watches; its route (if any) is where it answers.
        let watches = match (&b.metric, b.path.is_empty()) {
            (Some(m), true) => format!("metric {}", esc(m)),
            (Some(m), false) => format!("{} metric {}", esc(&b.path), esc(m)),
            (None, _) => esc(&b.path).into_owned(),
        };
        println!(
            "{:<16} {:<20} {:<10} {:<8} {:>8} {:>6.1}% {:>8}  {}",
            esc(&b.name),
            watches,
            b.state.as_str(),
            output::clock(b.since),
            f.requests,
            f.error_rate * 100.0,
            f.p99_ms.map_or("-".into(), |ms| format!("{ms}ms")),
            esc(b.flag.as_deref().unwrap_or("-")),
        );
    }
}
