//! Events: the append-only audit log of every transition, with its reason.

use baton_core::model::{Event, EventKind, Millis};
use rusqlite::{Connection, Row, params};

use crate::db::{Store, sql_limit};
use crate::error::{SqlResultExt, StoreError};

fn read_event(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        at: row.get(1)?,
        app: row.get(2)?,
        deployment: row.get(3)?,
        kind: row.get(4)?,
        message: row.get(5)?,
    })
}

/// Appends one event on `conn` (which may be a transaction) and returns it with its id.
pub(crate) fn insert_event(
    conn: &Connection,
    at: Millis,
    app: &str,
    deployment: Option<i64>,
    kind: EventKind,
    message: &str,
) -> Result<Event, StoreError> {
    conn.execute(
        "INSERT INTO events (at, app, deployment, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, app, deployment, kind.as_str(), message],
    )
    .op("append event")?;
    Ok(Event {
        id: conn.last_insert_rowid(),
        at,
        app: app.to_owned(),
        deployment,
        kind: kind.as_str().to_owned(),
        message: message.to_owned(),
    })
}

impl Store {
    /// Appends an event to the audit log. `deployment`, if given, must exist.
    pub fn append_event(
        &self,
        at: Millis,
        app: &str,
        deployment: Option<i64>,
        kind: EventKind,
        message: &str,
    ) -> Result<Event, StoreError> {
        insert_event(&self.conn(), at, app, deployment, kind, message)
    }

    /// Up to `limit` events with id greater than `after_id`, oldest first, optionally only
    /// those of one app and/or one deployment. Pass the last id seen to follow the log.
    pub fn events(
        &self,
        app: Option<&str>,
        deployment: Option<i64>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, at, app, deployment, kind, message FROM events \
                 WHERE id > ?1 AND (?2 IS NULL OR app = ?2) AND (?3 IS NULL OR deployment = ?3) \
                 ORDER BY id LIMIT ?4",
            )
            .op("list events")?;
        let rows = stmt
            .query_map(
                params![after_id, app, deployment, sql_limit(limit)],
                read_event,
            )
            .op("list events")?;
        rows.collect::<Result<_, _>>().op("read events")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewDeployment;
    use baton_core::model::Strategy;

    #[test]
    fn events_are_ordered_and_filtered() {
        let s = Store::open_in_memory().unwrap();
        let d = s
            .create_deployment(&NewDeployment {
                app: "web".into(),
                from: None,
                to: "1.0".into(),
                strategy: Strategy::BlueGreen,
                trigger: "cli".into(),
                now: 1,
                config: None,
            })
            .unwrap();
        let e1 = s
            .append_event(
                10,
                "web",
                Some(d.id),
                EventKind::DeploymentCreated,
                "created",
            )
            .unwrap();
        let e2 = s
            .append_event(11, "api", None, EventKind::InstanceStarted, "api-1 started")
            .unwrap();
        let e3 = s
            .append_event(12, "web", None, EventKind::SplitChanged, "100% 1.0")
            .unwrap();

        let ids = |v: Vec<Event>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.events(None, None, 0, 100).unwrap()),
            [e1.id, e2.id, e3.id]
        );
        assert_eq!(
            ids(s.events(Some("web"), None, 0, 100).unwrap()),
            [e1.id, e3.id]
        );
        assert_eq!(ids(s.events(None, Some(d.id), 0, 100).unwrap()), [e1.id]);
        assert_eq!(
            ids(s.events(None, None, e1.id, 100).unwrap()),
            [e2.id, e3.id]
        );
        assert_eq!(ids(s.events(None, None, 0, 2).unwrap()), [e1.id, e2.id]);
        let stored = s.events(Some("api"), None, 0, 10).unwrap();
        assert_eq!(stored, vec![e2]);
        assert_eq!(stored[0].kind, "instance_started");
    }

    #[test]
    fn an_event_cannot_name_a_missing_deployment() {
        let s = Store::open_in_memory().unwrap();
        assert!(
            s.append_event(1, "web", Some(42), EventKind::DeploymentStep, "x")
                .is_err()
        );
    }
}
