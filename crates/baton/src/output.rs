//! Printing state for people: short, aligned lines, with every text someone sent escaped.

use std::borrow::Cow;
use std::fmt::Write;

use baton_server::views::{AppStatus, DeploymentView};

/// Text someone sent (an actor, notes, a trigger, an event or error message), safe to print
/// on one line: control characters (newlines, escape codes, C1 codes), bidirectional overrides
/// and backslashes are written as Rust escapes (`\n`, `\u{1b}`, `\\`), so that nothing sent
/// can move the cursor, colour the terminal or forge a line. The stored text is unchanged.
pub fn esc(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Multi-line text someone sent (a changelog, release notes): each line through [`esc`], the
/// line breaks kept.
pub fn esc_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let (text, newline) = match line.strip_suffix('\n') {
            Some(text) => (text, "\n"),
            None => (line, ""),
        };
        out.push_str(&esc(text));
        out.push_str(newline);
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// Formats a unix-ms time as `HH:MM:SS` UTC.
pub fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    format!("{h:02}:{m:02}:{sec:02}")
}

/// Formats unix ms as `2026-12-03 19:20:04` (UTC): for records that outlive a day.
pub fn date_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {}", clock(ms))
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
        .map(|r| format!("{} {}%", esc(&r.release), r.weight))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// An app's status block.
pub fn status(s: &AppStatus) {
    println!(
        "{} ({})  {}  release {}  listen {}",
        esc(&s.app),
        esc(&s.env),
        esc(&s.phase),
        esc(s.release.as_deref().unwrap_or("-")),
        esc(&s.listen)
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
            esc(d.from.as_deref().unwrap_or("-")),
            esc(&d.to),
            esc(&d.strategy),
            esc(&d.phase),
            d.step
        );
        if let Some(line) = holding(d) {
            println!("  {line}");
        }
    }
    if let Some(v) = &s.verdict {
        println!(
            "  verdict step {} {}: {}",
            v.step,
            esc(&v.outcome),
            esc(&v.summary)
        );
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
            esc(&t.release),
            t.requests,
            errors,
            p(t.p50_ms),
            p(t.p99_ms)
        );
    }
    for i in &s.instances {
        println!(
            "  {:<22} {:<10} {:<22} {:<10} {}{}{}",
            esc(&i.id),
            esc(&i.release),
            esc(&i.address),
            esc(&i.state),
            if i.in_split { "in split" } else { "-" },
            if i.restarts > 0 {
                format!("  restarts {}", i.restarts)
            } else {
                String::new()
            },
            // The controller's own host goes unsaid, as on a single machine.
            if i.host.is_empty() || i.host == "local" {
                String::new()
            } else {
                format!("  on {}", esc(&i.host))
            }
        );
    }
}

/// A deployment history line.
/// "holding: host web-2 is lost (...)" while the deployment holds for lost hosts.
pub fn holding(d: &DeploymentView) -> Option<String> {
    if d.hold.lost.is_empty() || d.phase != "progressing" {
        return None;
    }
    let names = esc(&d.hold.lost.join(", ")).into_owned();
    let (noun, verb) = if d.hold.lost.len() == 1 {
        ("host", "is")
    } else {
        ("hosts", "are")
    };
    Some(format!(
        "holding: {noun} {names} {verb} lost; it goes on when back or drained, `baton resume` goes on without, `baton abort` goes back"
    ))
}

pub fn history_line(d: &DeploymentView) {
    println!(
        "#{:<4} {}  {:<8} -> {:<8} {:<10} {:<11} {:>7}  {}{}",
        d.id,
        clock(d.created_at),
        esc(d.from.as_deref().unwrap_or("-")),
        esc(&d.to),
        esc(&d.strategy),
        esc(&d.phase),
        duration(d.duration_ms),
        esc(&d.trigger),
        d.reason
            .as_deref()
            .map(|r| format!("  ({})", esc(r)))
            .unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(date_time(0), "1970-01-01 00:00:00");
        assert_eq!(date_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(date_time(1_796_335_634_580), "2026-12-03 22:07:14");
        assert_eq!(date_time(-1_000), "1969-12-31 23:59:59");
    }

    #[test]
    fn escape_codes_newlines_and_bidi_overrides_are_written_as_escapes() {
        let sent = "mallory\x1b[2K\r\n#999 forged\u{9b}31m \u{202e}txt.exe \\n";
        let shown = esc(sent);
        assert_eq!(
            shown,
            "mallory\\u{1b}[2K\\r\\n#999 forged\\u{9b}31m \\u{202e}txt.exe \\\\n"
        );
        assert!(!shown.chars().any(needs_escape_in_output));
        // Plain text, also beyond ASCII, is printed as it is.
        assert!(matches!(esc("Zoë deployed 1.4.0"), Cow::Borrowed(_)));
    }

    #[test]
    fn multi_line_text_keeps_its_line_breaks_and_nothing_else() {
        assert_eq!(
            esc_lines("# 1.4.0\n- fix \x1b[31mred\r\n- last"),
            "# 1.4.0\n- fix \\u{1b}[31mred\\r\n- last"
        );
    }

    fn needs_escape_in_output(c: char) -> bool {
        c.is_control()
    }
}
