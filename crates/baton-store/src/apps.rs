//! App state: which release serves an app when it is idle, and its instance numbering.

use baton_core::model::Millis;
use rusqlite::{Connection, OptionalExtension, params};

use crate::db::Store;
use crate::error::{SqlResultExt, StoreError};

/// Sets the app's current release on `conn` (which may be a transaction).
pub(crate) fn write_current_release(
    conn: &Connection,
    app: &str,
    version: Option<&str>,
    now: Millis,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO apps (app, current_release, current_since) VALUES (?1, ?2, ?3) \
         ON CONFLICT (app) DO UPDATE SET \
         current_since = CASE WHEN current_release IS ?2 THEN current_since ELSE ?3 END, \
         current_release = ?2",
        params![app, version, now],
    )
    .op("set current release")?;
    Ok(())
}

impl Store {
    /// Records the release serving 100 % of the app when no deployment runs (`None`: nothing).
    pub fn set_current_release(
        &self,
        app: &str,
        version: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        write_current_release(&self.conn(), app, version, now)
    }

    /// The release serving 100 % of the app when idle.
    pub fn current_release(&self, app: &str) -> Result<Option<String>, StoreError> {
        // Cached: the controller asks this on every tick of an app.
        let found: Option<Option<String>> = self
            .conn()
            .prepare_cached("SELECT current_release FROM apps WHERE app = ?1")
            .and_then(|mut stmt| stmt.query_row([app], |r| r.get(0)))
            .optional()
            .op("read current release")?;
        Ok(found.flatten())
    }

    /// The release that last ran the contract migration in this unit.
    pub fn contracted_release(&self, app: &str) -> Result<Option<String>, StoreError> {
        let found: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT contracted_release FROM apps WHERE app = ?1",
                [app],
                |r| r.get(0),
            )
            .optional()
            .op("read contracted release")?;
        Ok(found.flatten())
    }

    /// Since when the current release serves (unchanged when the same release is set again).
    pub fn current_since(&self, app: &str) -> Result<Option<Millis>, StoreError> {
        let found: Option<Option<Millis>> = self
            .conn()
            .query_row(
                "SELECT current_since FROM apps WHERE app = ?1",
                [app],
                |r| r.get(0),
            )
            .optional()
            .op("read current since")?;
        Ok(found.flatten())
    }

    /// The release that served before the current one: the `from` of the newest succeeded
    /// deployment to the current release. This is what `baton rollback` goes back to.
    pub fn previous_release(&self, app: &str) -> Result<Option<String>, StoreError> {
        let found: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT d.from_release FROM deployments d JOIN apps a ON a.app = d.app \
                 WHERE d.app = ?1 AND d.to_release = a.current_release AND d.phase = 'succeeded' \
                 ORDER BY d.id DESC LIMIT 1",
                [app],
                |r| r.get(0),
            )
            .optional()
            .op("read previous release")?;
        Ok(found.flatten())
    }

    /// The next instance number for the app: starts at 1, never reused, survives restarts.
    pub fn next_instance_number(&self, app: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .query_row(
                "INSERT INTO apps (app, instance_seq) VALUES (?1, 1) \
                 ON CONFLICT (app) DO UPDATE SET instance_seq = instance_seq + 1 \
                 RETURNING instance_seq",
                [app],
                |r| r.get(0),
            )
            .op("take instance number")?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("instance number {n} for {app}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewDeployment;
    use baton_core::model::{Phase, Strategy};

    fn deploy(s: &Store, from: Option<&str>, to: &str, end: Phase, now: Millis) {
        let mut d = s
            .create_deployment(&NewDeployment {
                app: "web".into(),
                from: from.map(Into::into),
                to: to.into(),
                strategy: Strategy::Rolling,
                trigger: "cli".into(),
                now,
                config: None,
            })
            .unwrap();
        d.phase = end;
        d.finished_at = Some(now + 1);
        s.update_deployment(&d).unwrap();
        if end == Phase::Succeeded {
            s.set_current_release("web", Some(to), now + 1).unwrap();
        }
    }

    #[test]
    fn current_release_round_trips() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.current_release("web").unwrap(), None);
        s.set_current_release("web", Some("1.0"), 1).unwrap();
        assert_eq!(s.current_release("web").unwrap().as_deref(), Some("1.0"));
        s.set_current_release("web", None, 2).unwrap();
        assert_eq!(s.current_release("web").unwrap(), None);
    }

    #[test]
    fn previous_release_is_the_from_of_the_deployment_that_made_current() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.previous_release("web").unwrap(), None);
        deploy(&s, None, "1.0", Phase::Succeeded, 10);
        assert_eq!(
            s.previous_release("web").unwrap(),
            None,
            "first release has no previous"
        );
        deploy(&s, Some("1.0"), "2.0", Phase::Succeeded, 20);
        assert_eq!(s.previous_release("web").unwrap().as_deref(), Some("1.0"));
        // A failed attempt does not change what serves, nor what came before it.
        deploy(&s, Some("2.0"), "3.0", Phase::RolledBack, 30);
        assert_eq!(s.previous_release("web").unwrap().as_deref(), Some("1.0"));
        deploy(&s, Some("2.0"), "3.0", Phase::Succeeded, 40);
        assert_eq!(s.previous_release("web").unwrap().as_deref(), Some("2.0"));
        // After a rollback to 2.0, the newest deployment to 2.0 came from 3.0.
        deploy(&s, Some("3.0"), "2.0", Phase::Succeeded, 50);
        assert_eq!(s.previous_release("web").unwrap().as_deref(), Some("3.0"));
    }

    #[test]
    fn instance_numbers_are_monotonic_per_app_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton.db");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.next_instance_number("web").unwrap(), 1);
            assert_eq!(s.next_instance_number("web").unwrap(), 2);
            assert_eq!(s.next_instance_number("api").unwrap(), 1);
            // Setting the current release must not reset the counter.
            s.set_current_release("web", Some("1.0"), 5).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.next_instance_number("web").unwrap(), 3);
        assert_eq!(s.current_release("web").unwrap().as_deref(), Some("1.0"));
    }
}
