//! Conventional commits (`type(scope)!: description`, `BREAKING CHANGE:` footers) parsed into
//! [`Change`]s. Pure: no I/O.
//!
//! Parsing is done by `git-conventional`. A commit that does not follow the convention is kept,
//! as kind `other`, so a changelog never loses a commit.

use crate::Commit;

/// Every kind a [`Change`] can have, in the order changelogs list them.
pub const KINDS: [&str; 12] = [
    "feat", "fix", "perf", "refactor", "docs", "test", "build", "ci", "chore", "style", "revert",
    "other",
];

/// One commit, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// One of [`KINDS`]: the conventional type in lower case, or `other` when the commit does not
    /// follow the convention or uses a type outside the list.
    pub kind: String,
    /// The conventional scope (`api` in `feat(api): ...`), if any.
    pub scope: Option<String>,
    /// Marked breaking by `!` before the colon or by a `BREAKING CHANGE:` / `BREAKING-CHANGE:`
    /// footer.
    pub breaking: bool,
    /// The description after the colon; the whole summary for kind `other`.
    pub description: String,
    /// The commit's short id (its first 7 hex digits).
    pub commit: String,
}

/// Parse every commit, keeping their order. Commits that are not conventional become kind
/// `other` with their summary as description; `Revert "..."` commits made by `git revert`
/// become kind `revert`.
pub fn parse(commits: &[Commit]) -> Vec<Change> {
    commits.iter().map(parse_one).collect()
}

// === private ===

const SHORT_ID: usize = 7;

fn parse_one(commit: &Commit) -> Change {
    let short: String = commit.id.chars().take(SHORT_ID).collect();
    let summary = commit.summary.trim();
    let body = commit.body.trim();
    let message = if body.is_empty() {
        summary.to_owned()
    } else {
        format!("{summary}\n\n{body}")
    };
    // A body the parser does not like (odd footers) must not hide a well-formed subject.
    let parsed = git_conventional::Commit::parse(&message)
        .map(|c| {
            (
                kind_of(c.type_().as_str()),
                c.scope(),
                c.breaking(),
                c.description(),
            )
        })
        .or_else(|_| {
            git_conventional::Commit::parse(summary).map(|c| {
                let breaking = c.breaking() || has_breaking_footer(body);
                (
                    kind_of(c.type_().as_str()),
                    c.scope(),
                    breaking,
                    c.description(),
                )
            })
        });
    match parsed {
        Ok((Some(kind), scope, breaking, description)) => Change {
            kind: kind.to_owned(),
            scope: scope.map(|s| s.as_str().to_owned()),
            breaking,
            description: description.trim().to_owned(),
            commit: short,
        },
        Ok((None, _, breaking, _)) => other("other", summary, breaking, short),
        Err(_) if summary.starts_with("Revert \"") => other("revert", summary, false, short),
        Err(_) => other("other", summary, has_breaking_footer(body), short),
    }
}

fn other(kind: &str, summary: &str, breaking: bool, commit: String) -> Change {
    Change {
        kind: kind.to_owned(),
        scope: None,
        breaking,
        description: summary.to_owned(),
        commit,
    }
}

/// The kind for a conventional type, case-insensitively; `None` for a type outside [`KINDS`].
fn kind_of(type_: &str) -> Option<&'static str> {
    let lower = type_.to_ascii_lowercase();
    KINDS.iter().copied().find(|k| *k != "other" && *k == lower)
}

fn has_breaking_footer(body: &str) -> bool {
    body.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with("BREAKING CHANGE:") || line.starts_with("BREAKING-CHANGE:")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(summary: &str, body: &str) -> Commit {
        Commit {
            id: "abcdef0123456789abcdef0123456789abcdef01".into(),
            summary: summary.into(),
            body: body.into(),
            author: "Ada".into(),
            time: 0,
        }
    }

    fn one(summary: &str, body: &str) -> Change {
        parse(&[commit(summary, body)]).remove(0)
    }

    #[test]
    fn conventional_subjects_are_split_into_kind_scope_and_description() {
        // (summary, body, kind, scope, breaking, description)
        type Row<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, bool, &'a str);
        let table: &[Row] = &[
            ("feat(api): add X", "", "feat", Some("api"), false, "add X"),
            ("fix: Y", "", "fix", None, false, "Y"),
            ("perf: Z", "", "perf", None, false, "Z"),
            ("docs: W", "", "docs", None, false, "W"),
            ("refactor!: drop V", "", "refactor", None, true, "drop V"),
            (
                "feat(cli)!: rename flag",
                "",
                "feat",
                Some("cli"),
                true,
                "rename flag",
            ),
            (
                "Feat: upper-case type",
                "",
                "feat",
                None,
                false,
                "upper-case type",
            ),
            (
                "chore: bump deps",
                "BREAKING CHANGE: needs Rust 1.85",
                "chore",
                None,
                true,
                "bump deps",
            ),
            (
                "fix: y",
                "details\n\nBREAKING-CHANGE: config key renamed",
                "fix",
                None,
                true,
                "y",
            ),
            ("build: z", "just a body", "build", None, false, "z"),
            ("ci: a", "", "ci", None, false, "a"),
            ("test: b", "", "test", None, false, "b"),
            ("style: c", "", "style", None, false, "c"),
            ("revert: feat: d", "", "revert", None, false, "feat: d"),
        ];
        for (summary, body, kind, scope, breaking, description) in table {
            let change = one(summary, body);
            assert_eq!(change.kind, *kind, "{summary}");
            assert_eq!(change.scope.as_deref(), *scope, "{summary}");
            assert_eq!(change.breaking, *breaking, "{summary}");
            assert_eq!(change.description, *description, "{summary}");
            assert_eq!(change.commit, "abcdef0", "{summary}");
        }
    }

    #[test]
    fn non_conventional_commits_are_kept_as_other() {
        let change = one("Update README", "");
        assert_eq!(change.kind, "other");
        assert_eq!(change.description, "Update README");
        assert!(!change.breaking);

        let merge = one("Merge branch 'topic'", "");
        assert_eq!(merge.kind, "other");
        assert_eq!(merge.description, "Merge branch 'topic'");

        let unknown_type = one("wip(api): half done", "");
        assert_eq!(unknown_type.kind, "other");
        assert_eq!(unknown_type.description, "wip(api): half done");
        assert_eq!(unknown_type.scope, None);
    }

    #[test]
    fn a_breaking_footer_counts_even_on_a_non_conventional_commit() {
        let change = one(
            "Rework storage",
            "BREAKING CHANGE: old data dirs are not read",
        );
        assert_eq!(change.kind, "other");
        assert!(change.breaking);
    }

    #[test]
    fn git_revert_commits_are_reverts() {
        let change = one("Revert \"feat: add X\"", "This reverts commit abcdef.");
        assert_eq!(change.kind, "revert");
        assert_eq!(change.description, "Revert \"feat: add X\"");
    }

    #[test]
    fn order_is_kept() {
        let changes = parse(&[commit("fix: 1", ""), commit("feat: 2", ""), commit("x", "")]);
        let kinds: Vec<_> = changes.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["fix", "feat", "other"]);
    }
}
