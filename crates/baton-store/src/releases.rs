//! Releases: append-only rows of app + version + artifact digest (docs/DESIGN.md I5).

use baton_core::model::Release;
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use crate::db::Store;
use crate::error::{SqlResultExt, StoreError};

/// What [`Store::create_release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The release was recorded.
    Created,
    /// The same app, version and digest were already recorded; nothing changed.
    AlreadyExists,
}

const COLUMNS: &str =
    "app, version, digest, notes, created_at, git_commit, changelog, release_notes";

fn read_release(row: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        app: row.get(0)?,
        version: row.get(1)?,
        digest: row.get(2)?,
        notes: row.get(3)?,
        created_at: row.get(4)?,
        commit: row.get(5)?,
        changelog: row.get(6)?,
        release_notes: row.get(7)?,
    })
}

impl Store {
    /// Records a release. Re-creating the same version with the same digest is a no-op;
    /// with another digest it is [`StoreError::VersionConflict`], since releases never change.
    pub fn create_release(&self, r: &Release) -> Result<ReleaseOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op("begin create release")?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT digest FROM releases WHERE app = ?1 AND version = ?2",
                params![r.app, r.version],
                |row| row.get(0),
            )
            .optional()
            .op("read release")?;
        match existing {
            Some(d) if d == r.digest => return Ok(ReleaseOutcome::AlreadyExists),
            Some(d) => {
                return Err(StoreError::VersionConflict {
                    app: r.app.clone(),
                    version: r.version.clone(),
                    existing_digest: d,
                    new_digest: r.digest.clone(),
                });
            }
            None => {}
        }
        tx.execute(
            &format!("INSERT INTO releases ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                r.app,
                r.version,
                r.digest,
                r.notes,
                r.created_at,
                r.commit,
                r.changelog,
                r.release_notes
            ],
        )
        .op("create release")?;
        tx.commit().op("commit release")?;
        Ok(ReleaseOutcome::Created)
    }

    /// Whether any release, of any app, names this artifact digest.
    pub fn digest_in_use(&self, digest: &str) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT 1 FROM releases WHERE digest = ?1 LIMIT 1",
                params![digest],
                |_| Ok(()),
            )
            .optional()
            .op("read releases")
            .map(|found| found.is_some())
    }

    /// One release of an app, if it exists.
    pub fn release(&self, app: &str, version: &str) -> Result<Option<Release>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM releases WHERE app = ?1 AND version = ?2"),
                params![app, version],
                read_release,
            )
            .optional()
            .op("read release")
    }

    /// All releases of an app, newest first.
    pub fn releases(&self, app: &str) -> Result<Vec<Release>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM releases WHERE app = ?1 ORDER BY created_at DESC, seq DESC"
            ))
            .op("list releases")?;
        let rows = stmt.query_map([app], read_release).op("list releases")?;
        rows.collect::<Result<_, _>>().op("read releases")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(version: &str, digest: &str, at: i64) -> Release {
        Release {
            app: "web".into(),
            version: version.into(),
            digest: digest.into(),
            notes: Some("n".into()),
            created_at: at,
            commit: None,
            changelog: None,
            release_notes: None,
        }
    }

    #[test]
    fn create_same_digest_is_a_noop_other_digest_conflicts() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(
            s.create_release(&rel("1.0", "sha256:aa", 1)).unwrap(),
            ReleaseOutcome::Created
        );
        assert_eq!(
            s.create_release(&rel("1.0", "sha256:aa", 2)).unwrap(),
            ReleaseOutcome::AlreadyExists
        );
        let e = s.create_release(&rel("1.0", "sha256:bb", 3)).unwrap_err();
        match &e {
            StoreError::VersionConflict {
                existing_digest,
                new_digest,
                ..
            } => {
                assert_eq!(
                    (existing_digest.as_str(), new_digest.as_str()),
                    ("sha256:aa", "sha256:bb")
                );
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(e.to_string().contains("pick a new version"), "{e}");
        assert!(s.digest_in_use("sha256:aa").unwrap());
        assert!(
            !s.digest_in_use("sha256:bb").unwrap(),
            "a refused release names nothing"
        );
        // The no-op and the conflict changed nothing.
        assert_eq!(
            s.release("web", "1.0").unwrap(),
            Some(rel("1.0", "sha256:aa", 1))
        );
    }

    #[test]
    fn lists_newest_first_and_per_app() {
        let s = Store::open_in_memory().unwrap();
        s.create_release(&rel("1.0", "sha256:aa", 10)).unwrap();
        s.create_release(&rel("2.0", "sha256:bb", 20)).unwrap();
        s.create_release(&Release {
            app: "api".into(),
            ..rel("9.0", "sha256:cc", 30)
        })
        .unwrap();
        let versions: Vec<_> = s
            .releases("web")
            .unwrap()
            .into_iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, ["2.0", "1.0"]);
        assert_eq!(s.release("web", "3.0").unwrap(), None);
    }
}
