//! Choosing the next semantic version from the changes since the previous release. Pure.
//!
//! The rules, in order:
//!
//! 1. No changes at all: [`Bump::None`], and [`next_version`] refuses to invent a version.
//! 2. Any breaking change (`!` or a `BREAKING CHANGE:` footer, of any kind): [`Bump::Major`].
//! 3. Any `feat`: [`Bump::Minor`].
//! 4. Anything else (fixes, performance, refactoring, docs, chores, non-conventional commits):
//!    [`Bump::Patch`]. A new release is a new artifact, so it always gets a new version, even
//!    when no commit is user-facing.
//!
//! While the previous version is `0.x.y`, a major bump raises the minor number instead
//! (`0.3.1` -> `0.4.0`): under semver and Cargo the minor number is the compatibility boundary
//! before 1.0, and leaving 0.x is a human decision, made with an explicit version.

use crate::{Change, ChangelogError};

/// How much of the version to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bump {
    /// Nothing changed.
    None,
    /// `x.y.Z`: fixes and changes that users do not see.
    Patch,
    /// `x.Y.0`: new features.
    Minor,
    /// `X.0.0`: breaking changes (`0.Y.0` while 0.x).
    Major,
}

/// The bump the changes call for; see the module rules.
pub fn bump(changes: &[Change]) -> Bump {
    changes
        .iter()
        .map(|change| match change.kind.as_str() {
            _ if change.breaking => Bump::Major,
            "feat" => Bump::Minor,
            _ => Bump::Patch,
        })
        .max()
        .unwrap_or(Bump::None)
}

/// The version after `previous` for `bump`.
///
/// - No previous release: `0.1.0`, whatever the bump.
/// - `0.x.y`: a major bump raises the minor number (see the module rules).
/// - A pre-release previous version is finished rather than skipped, as `npm version` does:
///   `1.2.0-rc.1` + patch or minor -> `1.2.0`, `2.0.0-rc.1` + major -> `2.0.0`;
///   `1.2.3-rc.1` + minor -> `1.3.0`.
/// - Build metadata is dropped; a leading `v` (`v1.2.3`) is kept.
///
/// Errors when `previous` is not a semantic version, or when `bump` is [`Bump::None`]
/// (nothing to release: the same version twice would be ambiguous).
pub fn next_version(previous: Option<&str>, bump: Bump) -> Result<String, ChangelogError> {
    let Some(previous) = previous else {
        return Ok("0.1.0".to_owned());
    };
    let trimmed = previous.trim();
    let (prefix, number) = match trimmed.strip_prefix('v') {
        Some(rest) => ("v", rest),
        None => ("", trimmed),
    };
    let old = semver::Version::parse(number).map_err(|e| ChangelogError::NotSemver {
        version: previous.to_owned(),
        reason: e.to_string(),
    })?;
    let bump = match bump {
        Bump::None => {
            return Err(ChangelogError::NothingToRelease {
                previous: previous.to_owned(),
            });
        }
        Bump::Major if old.major == 0 => Bump::Minor,
        other => other,
    };
    let pre = !old.pre.is_empty();
    let (major, minor, patch) = (old.major, old.minor, old.patch);
    let next = match bump {
        Bump::Major if pre && minor == 0 && patch == 0 => semver::Version::new(major, 0, 0),
        Bump::Major => semver::Version::new(major + 1, 0, 0),
        Bump::Minor if pre && patch == 0 => semver::Version::new(major, minor, 0),
        Bump::Minor => semver::Version::new(major, minor + 1, 0),
        Bump::Patch if pre => semver::Version::new(major, minor, patch),
        Bump::Patch | Bump::None => semver::Version::new(major, minor, patch + 1),
    };
    Ok(format!("{prefix}{next}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: &str, breaking: bool) -> Change {
        Change {
            kind: kind.into(),
            scope: None,
            breaking,
            description: "d".into(),
            commit: "abcdef0".into(),
        }
    }

    #[test]
    fn bump_follows_the_strongest_change() {
        let table: &[(&[(&str, bool)], Bump)] = &[
            (&[], Bump::None),
            (&[("docs", false)], Bump::Patch),
            (&[("other", false)], Bump::Patch),
            (&[("chore", false), ("refactor", false)], Bump::Patch),
            (&[("fix", false)], Bump::Patch),
            (&[("perf", false), ("docs", false)], Bump::Patch),
            (&[("fix", false), ("feat", false)], Bump::Minor),
            (&[("feat", false), ("refactor", true)], Bump::Major),
            (&[("other", true)], Bump::Major),
            (&[("docs", true), ("feat", false)], Bump::Major),
        ];
        for (kinds, expected) in table {
            let changes: Vec<_> = kinds.iter().map(|(k, b)| change(k, *b)).collect();
            assert_eq!(bump(&changes), *expected, "{kinds:?}");
        }
    }

    #[test]
    fn next_version_table() {
        let table: &[(Option<&str>, Bump, &str)] = &[
            (None, Bump::None, "0.1.0"),
            (None, Bump::Major, "0.1.0"),
            (None, Bump::Patch, "0.1.0"),
            (Some("0.3.1"), Bump::Patch, "0.3.2"),
            (Some("0.3.1"), Bump::Minor, "0.4.0"),
            (Some("0.3.1"), Bump::Major, "0.4.0"),
            (Some("1.4.2"), Bump::Patch, "1.4.3"),
            (Some("1.4.2"), Bump::Minor, "1.5.0"),
            (Some("1.4.2"), Bump::Major, "2.0.0"),
            (Some("v1.4.2"), Bump::Minor, "v1.5.0"),
            (Some("1.4.2+build.7"), Bump::Patch, "1.4.3"),
            (Some("1.2.0-rc.1"), Bump::Patch, "1.2.0"),
            (Some("1.2.0-rc.1"), Bump::Minor, "1.2.0"),
            (Some("1.2.0-rc.1"), Bump::Major, "2.0.0"),
            (Some("2.0.0-rc.1"), Bump::Major, "2.0.0"),
            (Some("1.2.3-rc.1"), Bump::Minor, "1.3.0"),
            (Some("1.2.3-rc.1"), Bump::Patch, "1.2.3"),
            (Some("0.9.0-beta"), Bump::Major, "0.9.0"),
        ];
        for (previous, bump, expected) in table {
            let got = next_version(*previous, *bump).unwrap();
            assert_eq!(got, *expected, "{previous:?} + {bump:?}");
        }
    }

    #[test]
    fn non_semver_previous_is_refused_with_the_version_in_the_message() {
        for bad in ["1.2", "latest", "1.2.3.4", "", "01.2.3"] {
            let err = next_version(Some(bad), Bump::Patch).unwrap_err();
            assert!(
                matches!(err, ChangelogError::NotSemver { .. }),
                "{bad}: {err}"
            );
            let message = err.to_string();
            assert!(message.contains(&format!("\"{bad}\"")), "{message}");
            assert!(message.contains("explicit version"), "{message}");
        }
    }

    #[test]
    fn nothing_to_release_is_refused() {
        let err = next_version(Some("1.0.0"), Bump::None).unwrap_err();
        assert!(
            matches!(err, ChangelogError::NothingToRelease { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("1.0.0"), "{err}");
    }
}
