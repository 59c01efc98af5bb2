//! Feature flags' live state: every `baton flag set` as an append-only change with its actor
//! (the newest per flag is in force, over `baton.toml`), recorded with its event in one
//! transaction; and the OFREP listener's read-only tokens, stored as the sha256 of the secret.

use baton_core::model::{Event, EventKind, Millis};
use rusqlite::params;

use crate::db::Store;
use crate::error::{SqlResultExt, StoreError};
use crate::events::insert_event;

/// One live change of a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    /// The app.
    pub app: String,
    /// The environment.
    pub env: String,
    /// The flag.
    pub flag: String,
    /// The definition in force from then on (JSON), or `None`: back to `baton.toml`.
    pub spec: Option<String>,
    /// Who changed it.
    pub actor: String,
    /// When.
    pub at: Millis,
}

/// A read-only OFREP token's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagToken {
    /// Its id (shown, never secret).
    pub id: i64,
    /// The app it evaluates flags of.
    pub app: String,
    /// The environment.
    pub env: String,
    /// sha256 of the secret, hex.
    pub secret_sha256: String,
}

/// A `flag_changes` row selected as `app, env, flag, spec, actor, at`.
fn read_change(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlagChange> {
    Ok(FlagChange {
        app: r.get(0)?,
        env: r.get(1)?,
        flag: r.get(2)?,
        spec: r.get(3)?,
        actor: r.get(4)?,
        at: r.get(5)?,
    })
}

impl Store {
    /// Records `change` and its event (on the unit `app@env`, with `message`) in one
    /// transaction.
    pub fn record_flag_change(
        &self,
        change: &FlagChange,
        message: &str,
    ) -> Result<Event, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().op("begin flag change")?;
        tx.execute(
            "INSERT INTO flag_changes (app, env, flag, spec, actor, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![change.app, change.env, change.flag, change.spec, change.actor, change.at],
        )
        .op("record flag change")?;
        let unit = format!("{}@{}", change.app, change.env);
        let event = insert_event(&tx, change.at, &unit, None, EventKind::FlagChanged, message)?;
        tx.commit().op("commit flag change")?;
        Ok(event)
    }

    /// The newest change of every flag that has one.
    pub fn flag_overrides(&self) -> Result<Vec<FlagChange>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT app, env, flag, spec, actor, at FROM flag_changes \
                 WHERE id IN (SELECT MAX(id) FROM flag_changes GROUP BY app, env, flag) \
                 ORDER BY app, env, flag",
            )
            .op("list flag changes")?;
        let rows = stmt.query_map([], read_change).op("list flag changes")?;
        rows.collect::<Result<_, _>>().op("read flag changes")
    }

    /// The newest `limit` live changes of `app`'s flags in every environment, newest first:
    /// the flags' part of the ledger.
    pub fn flag_history(&self, app: &str, limit: usize) -> Result<Vec<FlagChange>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT app, env, flag, spec, actor, at FROM flag_changes WHERE app = ?1 \
                 ORDER BY id DESC LIMIT ?2",
            )
            .op("list flag history")?;
        let rows = stmt
            .query_map(params![app, crate::db::sql_limit(limit)], read_change)
            .op("list flag history")?;
        rows.collect::<Result<_, _>>().op("read flag history")
    }

    /// Stores a new OFREP token for `app` in `env`; returns its id.
    pub fn create_flag_token(
        &self,
        app: &str,
        env: &str,
        secret_sha256: &str,
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO flag_tokens (app, env, secret_sha256, actor, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![app, env, secret_sha256, actor, now],
        )
        .op("create flag token")?;
        Ok(conn.last_insert_rowid())
    }

    /// Every OFREP token.
    pub fn flag_tokens(&self) -> Result<Vec<FlagToken>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, app, env, secret_sha256 FROM flag_tokens ORDER BY id")
            .op("list flag tokens")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(FlagToken {
                    id: r.get(0)?,
                    app: r.get(1)?,
                    env: r.get(2)?,
                    secret_sha256: r.get(3)?,
                })
            })
            .op("list flag tokens")?;
        rows.collect::<Result<_, _>>().op("read flag tokens")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_change_per_flag_is_in_force_and_each_is_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db")).unwrap();
        let change = |flag: &str, spec: Option<&str>, at| FlagChange {
            app: "web".into(),
            env: "production".into(),
            flag: flag.into(),
            spec: spec.map(String::from),
            actor: "alice".into(),
            at,
        };
        store
            .record_flag_change(&change("a", Some("{\"percent\":10.0}"), 1), "set a")
            .unwrap();
        store
            .record_flag_change(&change("a", Some("{\"percent\":20.0}"), 2), "set a")
            .unwrap();
        let e = store
            .record_flag_change(&change("b", None, 3), "reset b")
            .unwrap();
        assert_eq!(
            (e.kind.as_str(), e.app.as_str()),
            ("flag_changed", "web@production")
        );
        let now = store.flag_overrides().unwrap();
        assert_eq!(
            now,
            vec![
                change("a", Some("{\"percent\":20.0}"), 2),
                change("b", None, 3)
            ]
        );
        // The history: every change, newest first, of that app only.
        let history = store.flag_history("web", 10).unwrap();
        let ats: Vec<_> = history.iter().map(|c| (c.flag.as_str(), c.at)).collect();
        assert_eq!(ats, vec![("b", 3), ("a", 2), ("a", 1)]);
        assert_eq!(store.flag_history("web", 1).unwrap().len(), 1);
        assert!(store.flag_history("api", 10).unwrap().is_empty());
        let id = store
            .create_flag_token("web", "production", "ab", "alice", 4)
            .unwrap();
        assert_eq!(store.flag_tokens().unwrap()[0].id, id);
        assert!(
            store
                .create_flag_token("api", "test", "ab", "bob", 5)
                .is_err()
        );
    }
}
