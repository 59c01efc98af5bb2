//! `baton reload`: asks the running `baton up` to read its config file again, and prints what
//! changed, or why nothing did.

use std::path::Path;

use baton_server::views::ReloadView;

use crate::client::Client;
use crate::exit::{Failure, Result};
use crate::output::esc;

/// Reloads the config of the `baton up` that `config` names.
pub async fn reload(config: &Path, json: bool) -> Result<()> {
    const UNCHANGED: &str = "nothing was changed: Baton keeps running with the config in force";
    // An invalid file is refused here with the same file:line:col the daemon would give.
    let client = Client::from_config(config).map_err(|e| match e.code {
        2 => Failure::usage(format!("{}\n{UNCHANGED}", e.message)),
        _ => e,
    })?;
    let view: ReloadView = client
        .post_json("/v1/reload", &serde_json::json!({}))
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).expect("serializable")
        );
        return Ok(());
    }
    println!("reloaded {}: {}", config.display(), esc(&view.summary));
    for key in &view.added {
        println!("  added    {}", esc(key));
    }
    for key in &view.removed {
        println!(
            "  removed  {} (listener closed; its instances drain and stop)",
            esc(key)
        );
    }
    for (key, keys) in &view.changed {
        println!("  changed  {}: {}", esc(key), esc(&keys.join(", ")));
    }
    for host in &view.hosts {
        println!("  host     {}", esc(host));
    }
    for key in &view.other {
        println!("  changed  {}", esc(key));
    }
    Ok(())
}
