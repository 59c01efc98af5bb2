//! Reading a git repository: the HEAD commit and the commits since a previous release's commit.
//!
//! This is the only module that does I/O. It opens the repository with `gix` (no `git` binary
//! needed) and hands back plain [`Commit`] values for the pure modules to work on.

use std::path::Path;

use gix::revision::walk::Sorting;
use gix::traverse::commit::simple::CommitTimeOrder;

use crate::ChangelogError;

/// One commit as a release needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The full hexadecimal object id.
    pub id: String,
    /// The subject: the message's first paragraph, on one line.
    pub summary: String,
    /// The rest of the message after the blank line (empty when there is none), trailers included.
    pub body: String,
    /// The author's name.
    pub author: String,
    /// When the change was authored, in unix seconds.
    pub time: i64,
}

/// The repository's HEAD commit id (full hex).
///
/// `repo` must be the work tree's top directory (or a `.git` / bare repository directory);
/// it is not searched for upward, so a wrong path is an error rather than a surprise.
pub fn head(repo: &Path) -> Result<String, ChangelogError> {
    let repository = open(repo)?;
    head_id(repo, &repository).map(|id| id.to_string())
}

/// Commits reachable from HEAD but not from `since` (all of HEAD's history when `None`),
/// newest first by commit time, like `git log since..HEAD`.
///
/// `since` is a full commit id, normally the commit recorded by the previous release. It is an
/// error when that commit is not in the repository (history rewritten and pruned, shallow clone,
/// wrong repository), because a changelog silently computed from the wrong base would be a lie.
/// A `since` that is still stored but no longer an ancestor of HEAD (rewritten, not yet pruned)
/// follows git's rule: the commits of HEAD that `since` does not contain.
pub fn commits_since(repo: &Path, since: Option<&str>) -> Result<Vec<Commit>, ChangelogError> {
    let repository = open(repo)?;
    let tip = head_id(repo, &repository)?;
    let hidden = match since {
        Some(id) => vec![since_id(repo, &repository, id)?],
        None => Vec::new(),
    };
    let walk = repository
        .rev_walk([tip])
        .sorting(Sorting::ByCommitTime(CommitTimeOrder::NewestFirst))
        .with_hidden(hidden)
        .all()
        .map_err(|e| git_error(repo, e))?;
    let mut commits = Vec::new();
    for info in walk {
        let info = info.map_err(|e| git_error(repo, e))?;
        let commit = info.object().map_err(|e| git_error(repo, e))?;
        commits.push(to_commit(repo, &commit)?);
    }
    Ok(commits)
}

// === private ===

fn open(repo: &Path) -> Result<gix::Repository, ChangelogError> {
    gix::open(repo).map_err(|e| ChangelogError::NotARepository {
        path: repo.to_path_buf(),
        reason: e.to_string(),
    })
}

fn head_id(repo: &Path, repository: &gix::Repository) -> Result<gix::ObjectId, ChangelogError> {
    let no_head = |reason: String| ChangelogError::NoHead {
        path: repo.to_path_buf(),
        reason,
    };
    let commit = repository
        .head_commit()
        .map_err(|e| no_head(e.to_string()))?;
    Ok(commit.id)
}

fn since_id(
    repo: &Path,
    repository: &gix::Repository,
    id: &str,
) -> Result<gix::ObjectId, ChangelogError> {
    let bad = || ChangelogError::BadCommitId {
        path: repo.to_path_buf(),
        id: id.to_owned(),
    };
    let trimmed = id.trim();
    if trimmed.len() != 40 {
        return Err(bad());
    }
    let oid = gix::ObjectId::from_hex(trimmed.as_bytes()).map_err(|_| bad())?;
    // Anything that is not a commit we can read (absent, or a blob/tree with that id) cannot be
    // the base of a release history.
    if repository.find_commit(oid).is_err() {
        return Err(ChangelogError::SinceNotFound {
            path: repo.to_path_buf(),
            id: trimmed.to_owned(),
        });
    }
    Ok(oid)
}

fn to_commit(repo: &Path, commit: &gix::Commit<'_>) -> Result<Commit, ChangelogError> {
    let message = commit.message().map_err(|e| git_error(repo, e))?;
    let author = commit.author().map_err(|e| git_error(repo, e))?;
    let time = author.time().map_err(|e| git_error(repo, e))?;
    Ok(Commit {
        id: commit.id.to_string(),
        summary: message.summary().to_string().trim().to_owned(),
        body: message
            .body
            .map(|b| b.to_string().trim().to_owned())
            .unwrap_or_default(),
        author: author.name.to_string(),
        time: time.seconds,
    })
}

fn git_error(repo: &Path, error: impl std::fmt::Display) -> ChangelogError {
    ChangelogError::Git {
        path: repo.to_path_buf(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_repo::TestRepo;

    fn summaries(commits: &[Commit]) -> Vec<&str> {
        commits.iter().map(|c| c.summary.as_str()).collect()
    }

    #[test]
    fn head_is_the_last_commit() {
        let repo = TestRepo::new();
        repo.commit("first");
        let second = repo.commit("second");
        assert_eq!(head(repo.path()).unwrap(), second);
        assert_eq!(second.len(), 40);
    }

    #[test]
    fn commits_since_none_is_the_whole_history_newest_first_with_every_field() {
        let repo = TestRepo::new();
        repo.commit("feat(api): add X");
        repo.commit("fix: Y\n\nThe long story.\n\nBREAKING CHANGE: gone");
        let commits = commits_since(repo.path(), None).unwrap();
        assert_eq!(summaries(&commits), ["fix: Y", "feat(api): add X"]);
        let newest = &commits[0];
        assert_eq!(newest.id, repo.git(&["rev-parse", "HEAD"]));
        assert_eq!(newest.body, "The long story.\n\nBREAKING CHANGE: gone");
        assert_eq!(newest.author, "Ada Lovelace");
        assert_eq!(newest.time, repo.last_time());
        assert_eq!(commits[1].body, "");
    }

    #[test]
    fn commits_since_stops_at_the_previous_release_commit() {
        let repo = TestRepo::new();
        repo.commit("feat: one");
        let release = repo.commit("fix: two");
        repo.commit("perf: three");
        repo.commit("docs: four");
        let commits = commits_since(repo.path(), Some(&release)).unwrap();
        assert_eq!(summaries(&commits), ["docs: four", "perf: three"]);
        let head_id = repo.git(&["rev-parse", "HEAD"]);
        assert!(
            commits_since(repo.path(), Some(&head_id))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn commits_since_includes_merged_branches_but_not_what_the_release_had() {
        let repo = TestRepo::new();
        repo.commit("feat: base");
        repo.git(&["checkout", "-q", "-b", "topic"]);
        repo.commit("feat(topic): on a branch");
        repo.git(&["checkout", "-q", "main"]);
        let release = repo.commit("fix: on main");
        repo.commit("docs: after the release");
        repo.git(&[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge branch 'topic'",
            "topic",
        ]);
        let commits = commits_since(repo.path(), Some(&release)).unwrap();
        let mut got = summaries(&commits);
        got.sort_unstable();
        assert_eq!(
            got,
            [
                "Merge branch 'topic'",
                "docs: after the release",
                "feat(topic): on a branch"
            ]
        );
        assert_eq!(commits[0].summary, "Merge branch 'topic'");
    }

    #[test]
    fn a_since_commit_that_is_not_in_the_repository_is_an_error_that_says_so() {
        let repo = TestRepo::new();
        repo.commit("feat: one");
        let other = TestRepo::new();
        let foreign = other.commit("feat: elsewhere");
        let err = commits_since(repo.path(), Some(&foreign)).unwrap_err();
        assert!(matches!(err, ChangelogError::SinceNotFound { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&foreign), "{message}");
        assert!(message.contains("not in this repository"), "{message}");
        assert!(message.contains("rewritten"), "{message}");
    }

    #[test]
    fn a_release_commit_lost_to_a_history_rewrite_is_an_error() {
        let repo = TestRepo::new();
        let base = repo.commit("feat: one");
        let release = repo.commit("fix: two");
        repo.git(&["reset", "-q", "--hard", &base]);
        repo.commit("fix: two, reworded");
        // While the old commit is still in the object store, git's `release..HEAD` rule applies.
        let commits = commits_since(repo.path(), Some(&release)).unwrap();
        assert_eq!(summaries(&commits), ["fix: two, reworded"]);
        repo.git(&["reflog", "expire", "--expire=now", "--all"]);
        repo.git(&["gc", "-q", "--prune=now"]);
        let err = commits_since(repo.path(), Some(&release)).unwrap_err();
        assert!(matches!(err, ChangelogError::SinceNotFound { .. }), "{err}");
    }

    #[test]
    fn a_since_that_is_not_a_commit_id_is_an_error() {
        let repo = TestRepo::new();
        repo.commit("feat: one");
        for bad in ["main", "abc123", "zz3456789abcdef0123456789abcdef012345678"] {
            let err = commits_since(repo.path(), Some(bad)).unwrap_err();
            assert!(
                matches!(err, ChangelogError::BadCommitId { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn a_path_that_is_not_a_repository_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        for path in [dir.path(), missing.as_path()] {
            for err in [
                head(path).unwrap_err(),
                commits_since(path, None).unwrap_err(),
            ] {
                assert!(
                    matches!(err, ChangelogError::NotARepository { .. }),
                    "{err}"
                );
                let message = err.to_string();
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert!(message.contains("not a git work tree"), "{message}");
            }
        }
    }

    #[test]
    fn a_repository_without_commits_has_no_head() {
        let repo = TestRepo::new();
        let err = head(repo.path()).unwrap_err();
        assert!(matches!(err, ChangelogError::NoHead { .. }), "{err}");
        assert!(err.to_string().contains("commit something"), "{err}");
    }
}
