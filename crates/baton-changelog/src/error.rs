//! The one error type of this crate: what went wrong, where, and what to do about it.

use std::path::PathBuf;

/// Why reading a repository or choosing a version failed.
///
/// Each message names the repository path or the version at fault and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    /// `--git PATH` does not name a git repository.
    #[error(
        "{}: not a git work tree ({reason}); pass --git the directory that holds `.git`",
        path.display()
    )]
    NotARepository {
        /// The path that was given.
        path: PathBuf,
        /// What git reported.
        reason: String,
    },
    /// The repository has no commit yet (HEAD is unborn) or HEAD cannot be resolved.
    #[error(
        "{}: HEAD does not point to a commit ({reason}); commit something before creating a release from it",
        path.display()
    )]
    NoHead {
        /// The repository.
        path: PathBuf,
        /// What git reported.
        reason: String,
    },
    /// The `since` commit id is not a full hexadecimal object id.
    #[error(
        "{}: \"{id}\" is not a full commit id (40 hexadecimal characters)",
        path.display()
    )]
    BadCommitId {
        /// The repository.
        path: PathBuf,
        /// The id that was given.
        id: String,
    },
    /// The `since` commit (the previous release's commit) is not in the repository.
    #[error(
        "{}: commit {id} of the previous release is not in this repository: its history was \
         rewritten (rebase, amend, force-push), the clone is shallow, or --git names another \
         repository; fetch the full history (`git fetch --unshallow`) or check the path",
        path.display()
    )]
    SinceNotFound {
        /// The repository.
        path: PathBuf,
        /// The missing commit id.
        id: String,
    },
    /// Reading objects from the repository failed.
    #[error("{}: cannot read the git history: {reason}", path.display())]
    Git {
        /// The repository.
        path: PathBuf,
        /// What git reported.
        reason: String,
    },
    /// The previous release's version is not a semantic version, so no next one can be derived.
    #[error(
        "previous version \"{version}\" is not a semantic version MAJOR.MINOR.PATCH such as 1.4.0 \
         ({reason}); give this release an explicit version instead of `auto`"
    )]
    NotSemver {
        /// The previous version as recorded.
        version: String,
        /// What the semver parser reported.
        reason: String,
    },
    /// There is nothing new since the previous release, so `auto` has nothing to bump.
    #[error(
        "no commits since release {previous}: `--version auto` has nothing to bump; \
         give an explicit version to release the same commit again"
    )]
    NothingToRelease {
        /// The previous release's version.
        previous: String,
    },
}
