//! Test-only: real git repositories in temp dirs, built with the `git` command.

use std::path::Path;
use std::process::Command;

/// A throwaway repository; removed on drop.
pub(crate) struct TestRepo {
    dir: tempfile::TempDir,
    clock: std::cell::Cell<i64>,
}

impl TestRepo {
    /// `git init` with a local identity and no signing, so the user's config cannot interfere.
    pub(crate) fn new() -> Self {
        let repo = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            clock: std::cell::Cell::new(1_700_000_000),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Ada Lovelace"]);
        repo.git(&["config", "user.email", "ada@example.com"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run git in the repository; panics with its stderr on failure. Returns trimmed stdout.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_DATE", format!("@{} +0000", self.clock.get()))
            .env("GIT_COMMITTER_DATE", format!("@{} +0000", self.clock.get()))
            .output()
            .expect("run git");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// An (empty) commit with `message`, one minute after the previous one; returns its full id.
    pub(crate) fn commit(&self, message: &str) -> String {
        self.clock.set(self.clock.get() + 60);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// The author time the next commit would get, minus the step: the last commit's time.
    pub(crate) fn last_time(&self) -> i64 {
        self.clock.get()
    }
}
