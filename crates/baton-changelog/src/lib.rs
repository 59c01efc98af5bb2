//! Release metadata from git: the commit a release is built from, the conventional commits since
//! the previous release, the changelog and release notes they make, and the next semantic version.
//!
//! Only [`head`] and [`commits_since`] read a repository (through `gix`); everything else is
//! pure: [`parse`] turns commits into [`Change`]s, [`bump`] and [`next_version`] choose a version,
//! [`changelog`] and [`release_notes`] render markdown.
//!
//! ```
//! use baton_changelog::{Commit, bump, next_version, parse, release_notes};
//!
//! let commits = vec![Commit {
//!     id: "0123456789abcdef0123456789abcdef01234567".into(),
//!     summary: "feat(api): add canary weights".into(),
//!     body: String::new(),
//!     author: "Ada".into(),
//!     time: 1_700_000_000,
//! }];
//! let changes = parse(&commits);
//! let version = next_version(Some("1.2.3"), bump(&changes)).unwrap();
//! assert_eq!(version, "1.3.0");
//! assert!(release_notes(&version, &changes).contains("**api:** add canary weights"));
//! ```

mod conventional;
mod error;
mod git;
mod render;
mod version;

pub use conventional::{Change, KINDS, parse};
pub use error::ChangelogError;
pub use git::{Commit, commits_since, head};
pub use render::{changelog, release_notes};
pub use version::{Bump, bump, next_version};

#[cfg(test)]
mod test_repo;
#[cfg(test)]
mod tests;
