//! Releases from git: the commit, a changelog of every change since the previous release, notes
//! with only the user-facing ones, and the next semantic version picked from them.

use std::path::Path;
use std::process::Command;

use crate::harness::{Baton, THREE_WEB, text};

fn git(repo: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn commit(repo: &Path, message: &str) {
    git(repo, &["commit", "--allow-empty", "-q", "-m", message]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_create_with_git_picks_the_version_and_writes_changelog_and_notes() {
    let baton = Baton::start(THREE_WEB);
    let repo = baton.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    commit(&repo, "feat: first page");
    let art = baton.dir.path().join("art");
    assert!(
        baton
            .cli(&["demo", "artifact", art.to_str().unwrap(), "--version", "x"])
            .status
            .success()
    );
    let create = |extra: &str| {
        let o = baton.cli(&[
            "release",
            "create",
            "web",
            "--artifact",
            art.to_str().unwrap(),
            "--git",
            repo.to_str().unwrap(),
            "--version",
            "auto",
            "--notes",
            extra,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let out = create("first");
    assert!(out.contains("created web 0.1.0"), "{out}");

    commit(&repo, "feat(api): add signups endpoint");
    commit(&repo, "fix: count signups once");
    commit(&repo, "docs: explain the signup flow");
    commit(&repo, "chore: bump dependencies");
    commit(&repo, "quick hack without a type");
    // Different content, so it is a new artifact.
    std::fs::write(art.join("EXTRA"), "2").unwrap();
    let out = create("second");
    assert!(
        out.contains("created web 0.2.0") && out.contains("5 changes"),
        "{out}"
    );

    let o = baton.cli(&["release", "show", "web", "0.2.0", "--changelog"]);
    let changelog = String::from_utf8_lossy(&o.stdout).to_string();
    for line in [
        "add signups endpoint",
        "count signups once",
        "explain the signup flow",
        "bump dependencies",
        "quick hack without a type",
    ] {
        assert!(
            changelog.contains(line),
            "the changelog has every change: {line:?} missing in\n{changelog}"
        );
    }
    assert!(
        !changelog.contains("first page"),
        "only changes since the previous release:\n{changelog}"
    );
    let o = baton.cli(&["release", "show", "web", "0.2.0", "--notes"]);
    let notes = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        notes.contains("add signups endpoint") && notes.contains("count signups once"),
        "{notes}"
    );
    for internal in ["explain the signup flow", "bump dependencies", "quick hack"] {
        assert!(
            !notes.contains(internal),
            "notes are user-facing only: {internal:?} in\n{notes}"
        );
    }

    commit(&repo, "refactor!: drop the v1 API");
    std::fs::write(art.join("EXTRA"), "3").unwrap();
    let out = create("third");
    assert!(
        out.contains("created web 0.3.0"),
        "a breaking change on 0.x raises the minor: {out}"
    );
    let o = baton.cli(&["releases", "web", "--json"]);
    let ledger: Vec<baton_server::LedgerEntry> = serde_json::from_slice(&o.stdout).unwrap();
    let versions: Vec<&str> = ledger.iter().map(|e| e.release.version.as_str()).collect();
    assert_eq!(versions, ["0.3.0", "0.2.0", "0.1.0"]);
    assert!(
        ledger
            .iter()
            .all(|e| e.release.commit.as_deref().is_some_and(|c| c.len() == 40))
    );
}
