//! Markdown for people: the full changelog (every change, for support) and the release notes
//! (only what users notice). Pure.
//!
//! A breaking change is listed once, under "Breaking changes", whatever its kind. Within a
//! group, changes keep the order they were given in (newest first from
//! [`commits_since`](crate::commits_since)).

use std::fmt::Write as _;

use crate::{Change, KINDS};

/// Every change, grouped by kind ("Breaking changes" first, then [`KINDS`] order), each with
/// its scope and short commit id. Empty groups are omitted.
///
/// ```markdown
/// ## 1.3.0
///
/// ### Breaking changes
///
/// - refactor(store)!: drop the v1 schema (`1a2b3c4`)
///
/// ### Features
///
/// - **api:** add canary weights (`5d6e7f8`)
/// ```
pub fn changelog(version: &str, changes: &[Change]) -> String {
    let mut out = format!("## {version}\n");
    if changes.is_empty() {
        out.push_str("\nNo changes.\n");
        return out;
    }
    let breaking: Vec<String> = changes
        .iter()
        .filter(|c| c.breaking)
        .map(|c| {
            format!(
                "{}: {} (`{}`)",
                conventional_prefix(c),
                c.description,
                c.commit
            )
        })
        .collect();
    section(&mut out, "Breaking changes", &breaking);
    for kind in KINDS {
        let entries: Vec<String> = changes
            .iter()
            .filter(|c| !c.breaking && c.kind == kind)
            .map(|c| format!("{} (`{}`)", scoped(c), c.commit))
            .collect();
        section(&mut out, heading(kind), &entries);
    }
    out
}

/// Only what users notice: breaking changes, features, fixes and performance improvements.
/// Empty groups are omitted; "No user-facing changes." when there are none.
pub fn release_notes(version: &str, changes: &[Change]) -> String {
    let mut out = format!("## {version}\n");
    let breaking: Vec<String> = changes.iter().filter(|c| c.breaking).map(scoped).collect();
    let groups = [
        ("Breaking changes", breaking),
        ("Features", of_kind(changes, "feat")),
        ("Fixes", of_kind(changes, "fix")),
        ("Performance", of_kind(changes, "perf")),
    ];
    if groups.iter().all(|(_, entries)| entries.is_empty()) {
        out.push_str("\nNo user-facing changes.\n");
        return out;
    }
    for (title, entries) in &groups {
        section(&mut out, title, entries);
    }
    out
}

// === private ===

fn of_kind(changes: &[Change], kind: &str) -> Vec<String> {
    changes
        .iter()
        .filter(|c| !c.breaking && c.kind == kind)
        .map(scoped)
        .collect()
}

fn section(out: &mut String, title: &str, entries: &[String]) {
    if entries.is_empty() {
        return;
    }
    let _ = write!(out, "\n### {title}\n\n");
    for entry in entries {
        let _ = writeln!(out, "- {entry}");
    }
}

/// `**scope:** description`, or the bare description without a scope.
fn scoped(change: &Change) -> String {
    match &change.scope {
        Some(scope) => format!("**{scope}:** {}", change.description),
        None => change.description.clone(),
    }
}

/// `kind(scope)!` for breaking entries, whose kind is not given by their group; plain `other`
/// for non-conventional commits, whose description is already the whole summary.
fn conventional_prefix(change: &Change) -> String {
    if change.kind == "other" {
        return "other".to_owned();
    }
    match &change.scope {
        Some(scope) => format!("{}({scope})!", change.kind),
        None => format!("{}!", change.kind),
    }
}

fn heading(kind: &str) -> &'static str {
    match kind {
        "feat" => "Features",
        "fix" => "Fixes",
        "perf" => "Performance",
        "refactor" => "Refactoring",
        "docs" => "Documentation",
        "test" => "Tests",
        "build" => "Build",
        "ci" => "Continuous integration",
        "chore" => "Chores",
        "style" => "Style",
        "revert" => "Reverts",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(
        kind: &str,
        scope: Option<&str>,
        breaking: bool,
        description: &str,
        id: &str,
    ) -> Change {
        Change {
            kind: kind.into(),
            scope: scope.map(Into::into),
            breaking,
            description: description.into(),
            commit: id.into(),
        }
    }

    fn sample() -> Vec<Change> {
        vec![
            change("feat", Some("api"), false, "add X", "aaaaaaa"),
            change("fix", None, false, "Y", "bbbbbbb"),
            change("perf", None, false, "Z", "ccccccc"),
            change("docs", None, false, "W", "ddddddd"),
            change("refactor", None, true, "drop V", "eeeeeee"),
            change("other", None, false, "Update README", "fffffff"),
            change("chore", Some("deps"), false, "bump", "1111111"),
        ]
    }

    #[test]
    fn changelog_lists_every_change_once_breaking_first() {
        let text = changelog("2.0.0", &sample());
        assert!(text.starts_with("## 2.0.0\n"), "{text}");
        for c in sample() {
            assert_eq!(
                text.matches(&format!("`{}`", c.commit)).count(),
                1,
                "{}\n{text}",
                c.commit
            );
        }
        let order = [
            "### Breaking changes",
            "### Features",
            "### Fixes",
            "### Performance",
            "### Documentation",
            "### Chores",
            "### Other",
        ];
        let positions: Vec<usize> = order.iter().map(|h| text.find(h).expect(h)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.contains("- refactor!: drop V (`eeeeeee`)"), "{text}");
        assert!(text.contains("- **api:** add X (`aaaaaaa`)"), "{text}");
        assert!(text.contains("- **deps:** bump (`1111111`)"), "{text}");
        assert!(
            !text.contains("### Refactoring"),
            "breaking refactor listed only once:\n{text}"
        );
        assert!(!text.contains("### Tests"), "empty group shown:\n{text}");
    }

    #[test]
    fn release_notes_keep_only_user_facing_changes() {
        let text = release_notes("2.0.0", &sample());
        let expected = "## 2.0.0\n\n### Breaking changes\n\n- drop V\n\n### Features\n\n\
                        - **api:** add X\n\n### Fixes\n\n- Y\n\n### Performance\n\n- Z\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn empty_groups_are_omitted_from_notes() {
        let text = release_notes("1.0.1", &[change("fix", None, false, "Y", "bbbbbbb")]);
        assert_eq!(text, "## 1.0.1\n\n### Fixes\n\n- Y\n");
    }

    #[test]
    fn notes_without_user_facing_changes_say_so() {
        let changes = [
            change("docs", None, false, "W", "ddddddd"),
            change("other", None, false, "x", "1234567"),
        ];
        assert_eq!(
            release_notes("1.0.1", &changes),
            "## 1.0.1\n\nNo user-facing changes.\n"
        );
        assert_eq!(
            release_notes("1.0.1", &[]),
            "## 1.0.1\n\nNo user-facing changes.\n"
        );
        assert_eq!(changelog("1.0.1", &[]), "## 1.0.1\n\nNo changes.\n");
    }

    #[test]
    fn a_breaking_non_conventional_commit_is_labelled_other() {
        let text = changelog(
            "2.0.0",
            &[change("other", None, true, "Rework storage", "abcdef0")],
        );
        assert!(
            text.contains("- other: Rework storage (`abcdef0`)"),
            "{text}"
        );
    }
}
