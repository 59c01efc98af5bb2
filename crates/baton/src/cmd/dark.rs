//! `baton dark APP`: the app's latest dark launch: copies, drops, the differences per route
//! with samples, and the dark step's verdict.

use std::path::Path;

use baton_server::DarkView;

use crate::client::{Client, encode, env_query};
use crate::exit::Result;
use crate::output::esc;

pub async fn dark(config: &Path, app: &str, env: Option<&str>, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let v: DarkView = client
        .get(&format!("/v1/apps/{}/dark{}", encode(app), env_query(env)))
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serializable")
        );
        return Ok(());
    }
    print(&v);
    Ok(())
}

/// The report as `baton dark` prints it (also the demo's dark act).
pub fn print(v: &DarkView) {
    let r = &v.report;
    println!(
        "{} dark {} beside {} (deployment #{}, {})",
        esc(&v.app),
        esc(&v.release),
        esc(v.stable.as_deref().unwrap_or("-")),
        v.deployment,
        if v.copying { "copying" } else { "over" }
    );
    println!(
        "  copied {}  answered {}  dropped {} (queue full {}, failed or late {})  not copied: method {}, streamed body {}, dark not ready {}",
        r.copied,
        r.answered,
        r.dropped_queue_full + r.dropped_failed,
        r.dropped_queue_full,
        r.dropped_failed,
        r.skipped_method,
        r.skipped_body,
        r.skipped_unready
    );
    println!(
        "  compared {}  differing {} ({:.1} %)",
        r.compared,
        r.differing,
        r.diff_rate() * 100.0
    );
    if let Some(verdict) = &v.verdict {
        println!("  verdict: {}", esc(&verdict.summary));
    }
    for (route, rec) in &r.routes {
        let rate = if rec.compared == 0 {
            0.0
        } else {
            rec.differing as f64 * 100.0 / rec.compared as f64
        };
        println!(
            "  {:<32} compared {:<6} differing {:<6} ({rate:.1} %)",
            esc(route),
            rec.compared,
            rec.differing
        );
        if !rec.fields.is_empty() {
            let fields: Vec<String> = rec
                .fields
                .iter()
                .map(|(f, n)| format!("{} ({n})", esc(f)))
                .collect();
            println!("    differs in: {}", fields.join(", "));
        }
        if !rec.noise.is_empty() {
            let noise: Vec<String> = rec.noise.iter().map(|f| esc(f).into_owned()).collect();
            println!(
                "    noise (differs between stable answers): {}",
                noise.join(", ")
            );
        }
        if let Some(s) = rec.samples.first() {
            println!("    e.g. {}", esc(&s.request));
            let body = |b: &Option<String>| {
                b.as_deref()
                    .map(|b| esc(&b.chars().take(200).collect::<String>()).into_owned())
                    .unwrap_or_else(|| "(too large to compare)".into())
            };
            println!(
                "      production {} {}",
                s.production.status,
                body(&s.production.body)
            );
            println!("      dark       {} {}", s.dark.status, body(&s.dark.body));
        }
    }
}
