//! End to end over a real repository: commits -> changes -> version, changelog and notes, as
//! `baton release create --git PATH --version auto` uses them.

use crate::test_repo::TestRepo;
use crate::{Bump, bump, changelog, commits_since, head, next_version, parse, release_notes};

/// The flow of two releases: the first takes the whole history, the second only what came after
/// the first's recorded commit.
#[test]
fn two_releases_from_a_repository_with_conventional_commits() {
    let repo = TestRepo::new();
    repo.commit("feat(api): add X");
    repo.commit("fix: Y");

    let first = commits_since(repo.path(), None).unwrap();
    let first_version = next_version(None, bump(&parse(&first))).unwrap();
    assert_eq!(first_version, "0.1.0");
    let first_commit = head(repo.path()).unwrap();

    let ids = [
        repo.commit("perf: Z"),
        repo.commit("docs: W"),
        repo.commit("refactor!: drop V"),
        repo.commit("chore(deps): bump\n\nBREAKING CHANGE: needs a newer runtime"),
        repo.commit("Update the README"),
        repo.commit("fix(proxy): keep sticky sessions"),
    ];
    let commits = commits_since(repo.path(), Some(&first_commit)).unwrap();
    assert_eq!(commits.len(), ids.len());
    let changes = parse(&commits);
    assert_eq!(bump(&changes), Bump::Major);
    // 0.x: breaking raises the minor number; from 1.x it raises the major.
    assert_eq!(
        next_version(Some(&first_version), bump(&changes)).unwrap(),
        "0.2.0"
    );
    assert_eq!(
        next_version(Some("1.4.2"), bump(&changes)).unwrap(),
        "2.0.0"
    );

    let log = changelog("0.2.0", &changes);
    for id in &ids {
        assert!(
            log.contains(&format!("`{}`", &id[..7])),
            "{id} missing:\n{log}"
        );
    }
    assert!(log.contains("Update the README"), "{log}");
    assert!(log.contains("- refactor!: drop V"), "{log}");
    assert!(log.contains("- chore(deps)!: bump"), "{log}");
    assert!(
        !log.contains("add X"),
        "the previous release's commits leaked in:\n{log}"
    );

    let notes = release_notes("0.2.0", &changes);
    assert_eq!(
        notes,
        "## 0.2.0\n\n### Breaking changes\n\n- **deps:** bump\n- drop V\n\n\
         ### Fixes\n\n- **proxy:** keep sticky sessions\n\n### Performance\n\n- Z\n"
    );
}

#[test]
fn features_make_a_minor_release_and_housekeeping_a_patch() {
    let repo = TestRepo::new();
    let base = repo.commit("feat: base");
    repo.commit("feat(cli): add --json");
    repo.commit("docs: explain --json");
    let changes = parse(&commits_since(repo.path(), Some(&base)).unwrap());
    assert_eq!(
        next_version(Some("1.4.2"), bump(&changes)).unwrap(),
        "1.5.0"
    );
    assert_eq!(
        release_notes("1.5.0", &changes),
        "## 1.5.0\n\n### Features\n\n- **cli:** add --json\n"
    );

    let release = head(repo.path()).unwrap();
    repo.commit("docs: typo");
    repo.commit("ci: cache");
    let changes = parse(&commits_since(repo.path(), Some(&release)).unwrap());
    assert_eq!(
        next_version(Some("1.5.0"), bump(&changes)).unwrap(),
        "1.5.1"
    );
    assert_eq!(
        release_notes("1.5.1", &changes),
        "## 1.5.1\n\nNo user-facing changes.\n"
    );
    let log = changelog("1.5.1", &changes);
    assert!(log.contains("typo") && log.contains("cache"), "{log}");
}
