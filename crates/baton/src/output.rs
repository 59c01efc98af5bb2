//! Printing state for people: short, aligned lines.

use baton_server::views::{AppStatus, DeploymentView};

/// Formats a unix-ms time as `HH:MM:SS` UTC.
pub fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000);
    let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    format!("{h:02}:{m:02}:{sec:02}")
}

/// Formats a duration in ms as `1.2s` or `3m04s`.
pub fn duration(ms: i64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// One line: the split as `1.0.0 67% · 1.1.0 33%`.
pub fn split(s: &AppStatus) -> String {
    if s.split.is_empty() {
        return "no traffic routed".to_string();
    }
    s.split
        .iter()
        .map(|r| format!("{} {}%", r.release, r.weight))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// An app's status block.
pub fn status(s: &AppStatus) {
    println!(
        "{} ({})  {}  release {}  listen {}",
        s.app,
        s.env,
        s.phase,
        s.release.as_deref().unwrap_or("-"),
        s.listen
    );
    if let Some(d) = &s.deployment {
        let weight = if d.strategy == "canary" {
            format!(" · canary {} %", d.weight)
        } else {
            String::new()
        };
        println!(
            "  deployment #{} {} -> {} ({}) {} step {}{weight}",
            d.id,
            d.from.as_deref().unwrap_or("-"),
            d.to,
            d.strategy,
            d.phase,
            d.step
        );
    }
    if let Some(v) = &s.verdict {
        println!("  verdict step {} {}: {}", v.step, v.outcome, v.summary);
    }
    if let Some(c) = &s.contract {
        let when = match c.state {
            baton_store::ContractState::Pending => format!(" (due {} UTC)", clock(c.due_at)),
            _ => c
                .detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default(),
        };
        println!("  contract {} {}{when}", c.release, c.state.as_str());
    }
    println!("  split  {}", split(s));
    for t in &s.traffic {
        let errors = t.status[4] + t.connect_errors + t.timeouts;
        let p = |v: Option<f64>| v.map(|v| format!("{v:.1}ms")).unwrap_or_else(|| "-".into());
        println!(
            "  traffic {:<10} {:>9} requests  {:>6} errors  p50 {}  p99 {}",
            t.release,
            t.requests,
            errors,
            p(t.p50_ms),
            p(t.p99_ms)
        );
    }
    for i in &s.instances {
        println!(
            "  {:<22} {:<10} {:<22} {:<10} {}{}",
            i.id,
            i.release,
            i.address,
            i.state,
            if i.in_split { "in split" } else { "-" },
            if i.restarts > 0 {
                format!("  restarts {}", i.restarts)
            } else {
                String::new()
            }
        );
    }
}

/// A deployment history line.
pub fn history_line(d: &DeploymentView) {
    println!(
        "#{:<4} {}  {:<8} -> {:<8} {:<10} {:<11} {:>7}  {}{}",
        d.id,
        clock(d.created_at),
        d.from.as_deref().unwrap_or("-"),
        d.to,
        d.strategy,
        d.phase,
        duration(d.duration_ms),
        d.trigger,
        d.reason
            .as_deref()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default()
    );
}
