//! Feature flags' live state: every `baton flag set` as an append-only change with its actor
//! (the newest per flag is in force, over `baton.toml`), recorded with its event in one
//! transaction; and the OFREP listener's read-only tokens, stored as the sha256 of the secret.

use baton_core::model::{Event, EventKind, Millis};
use rusqlite::{OptionalExtension, params};

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

/// An OFREP token as listed: who made it and whether it was revoked, never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagTokenRecord {
    /// Its id.
    pub id: i64,
    /// The app it evaluates flags of.
    pub app: String,
    /// The environment.
    pub env: String,
    /// Who made it.
    pub actor: String,
    /// When (unix ms).
    pub created_at: Millis,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Millis>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
}

/// What a revocation found.
#[derive(Debug, Clone, PartialEq)]
pub enum Revoked {
    /// The token was valid and is revoked now; its event.
    Now(FlagTokenRecord, Event),
    /// It had been revoked before: nothing changed.
    Before(FlagTokenRecord),
    /// The app has no token with this id.
    Unknown,
}

const TOKEN_RECORD_COLUMNS: &str = "id, app, env, actor, created_at, revoked_at, revoked_by";

fn read_token_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlagTokenRecord> {
    Ok(FlagTokenRecord {
        id: r.get(0)?,
        app: r.get(1)?,
        env: r.get(2)?,
        actor: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
        revoked_by: r.get(6)?,
    })
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

    /// Stores a new OFREP token for `app` in `env`, with a `flag_token` event of the unit
    /// that says who made it, in one transaction; returns its id and the event.
    pub fn create_flag_token(
        &self,
        app: &str,
        env: &str,
        secret_sha256: &str,
        actor: &str,
        now: Millis,
    ) -> Result<(i64, Event), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().op("begin flag token")?;
        tx.execute(
            "INSERT INTO flag_tokens (app, env, secret_sha256, actor, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![app, env, secret_sha256, actor, now],
        )
        .op("create flag token")?;
        let id = tx.last_insert_rowid();
        let message = format!("OFREP token {id} created by {actor}");
        let unit = format!("{app}@{env}");
        let event = insert_event(&tx, now, &unit, None, EventKind::FlagToken, &message)?;
        tx.commit().op("commit flag token")?;
        Ok((id, event))
    }

    /// Revokes `app`'s OFREP token `id` (in whichever environment), recorded as a
    /// `flag_token` event with who did it, in one transaction. Revoking twice changes nothing.
    pub fn revoke_flag_token(
        &self,
        app: &str,
        id: i64,
        actor: &str,
        now: Millis,
    ) -> Result<Revoked, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().op("begin token revocation")?;
        let found = tx
            .query_row(
                &format!(
                    "SELECT {TOKEN_RECORD_COLUMNS} FROM flag_tokens WHERE app = ?1 AND id = ?2"
                ),
                params![app, id],
                read_token_record,
            )
            .optional()
            .op("find flag token")?;
        let Some(mut token) = found else {
            return Ok(Revoked::Unknown);
        };
        if token.revoked_at.is_some() {
            return Ok(Revoked::Before(token));
        }
        tx.execute(
            "UPDATE flag_tokens SET revoked_at = ?2, revoked_by = ?3 WHERE id = ?1",
            params![id, now, actor],
        )
        .op("revoke flag token")?;
        let message = format!("OFREP token {id} revoked by {actor}");
        let unit = format!("{app}@{}", token.env);
        let event = insert_event(&tx, now, &unit, None, EventKind::FlagToken, &message)?;
        tx.commit().op("commit token revocation")?;
        (token.revoked_at, token.revoked_by) = (Some(now), Some(actor.to_string()));
        Ok(Revoked::Now(token, event))
    }

    /// Every OFREP token of `app`, revoked or not, oldest first.
    pub fn flag_token_records(&self, app: &str) -> Result<Vec<FlagTokenRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_RECORD_COLUMNS} FROM flag_tokens WHERE app = ?1 ORDER BY id"
            ))
            .op("list flag tokens")?;
        let rows = stmt
            .query_map(params![app], read_token_record)
            .op("list flag tokens")?;
        rows.collect::<Result<_, _>>().op("read flag tokens")
    }

    /// Every OFREP token that is not revoked: those the OFREP listener accepts.
    pub fn flag_tokens(&self) -> Result<Vec<FlagToken>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, app, env, secret_sha256 FROM flag_tokens WHERE revoked_at IS NULL \
                 ORDER BY id",
            )
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
        let (id, _) = store
            .create_flag_token("web", "production", "ab", "alice", 4)
            .unwrap();
        assert_eq!(store.flag_tokens().unwrap()[0].id, id);
        assert!(
            store
                .create_flag_token("api", "test", "ab", "bob", 5)
                .is_err()
        );
    }

    #[test]
    fn a_revoked_token_is_kept_on_record_and_no_longer_accepted() {
        let store = Store::open_in_memory().unwrap();
        let (a, created) = store
            .create_flag_token("web", "production", "aa", "alice", 1)
            .unwrap();
        assert_eq!(created.message, "OFREP token 1 created by alice");
        let (b, _) = store
            .create_flag_token("web", "staging", "bb", "alice", 2)
            .unwrap();
        assert_eq!(store.flag_tokens().unwrap().len(), 2);
        assert_eq!(
            store.revoke_flag_token("api", a, "bob", 3).unwrap(),
            Revoked::Unknown,
            "another app's token"
        );
        let Revoked::Now(record, event) = store.revoke_flag_token("web", a, "bob", 3).unwrap()
        else {
            panic!("revoked now")
        };
        assert_eq!(
            (record.revoked_at, record.revoked_by.as_deref()),
            (Some(3), Some("bob"))
        );
        assert_eq!(
            (
                event.kind.as_str(),
                event.app.as_str(),
                event.message.as_str()
            ),
            (
                "flag_token",
                "web@production",
                "OFREP token 1 revoked by bob"
            )
        );
        assert!(matches!(
            store.revoke_flag_token("web", a, "carol", 4).unwrap(),
            Revoked::Before(r) if r.revoked_by.as_deref() == Some("bob")
        ));
        let valid: Vec<i64> = store.flag_tokens().unwrap().iter().map(|t| t.id).collect();
        assert_eq!(valid, [b]);
        let listed = store.flag_token_records("web").unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].revoked_at, Some(3));
        assert_eq!(listed[1].revoked_at, None);
        assert!(store.flag_token_records("api").unwrap().is_empty());
    }
}
