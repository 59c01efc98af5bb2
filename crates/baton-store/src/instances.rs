//! Instances: the running copies of releases, with pid and process start time for re-adoption.

use baton_core::model::{Instance, InstanceState};
use rusqlite::{Row, params};

use crate::db::Store;
use crate::error::{SqlResultExt, StoreError, corrupt_column};

fn read_instance(row: &Row<'_>) -> rusqlite::Result<Instance> {
    let state: String = row.get(6)?;
    // SQLite integers are i64; proc_start (clock ticks since boot) fits comfortably.
    let proc_start: Option<i64> = row.get(5)?;
    Ok(Instance {
        id: row.get(0)?,
        app: row.get(1)?,
        release: row.get(2)?,
        port: row.get(3)?,
        pid: row.get(4)?,
        proc_start: proc_start
            .map(|v| u64::try_from(v).map_err(|_| corrupt_column(5, "proc_start", &v.to_string())))
            .transpose()?,
        state: InstanceState::parse(&state).ok_or_else(|| corrupt_column(6, "state", &state))?,
        in_split: row.get(7)?,
        started_at: row.get(8)?,
        restarts: row.get(9)?,
        restart_at: row.get(10)?,
        retire_at: row.get(11)?,
        host: row.get(12)?,
    })
}

impl Store {
    /// Inserts the instance or replaces every field of the one with the same id
    /// (its creation order is kept).
    pub fn upsert_instance(&self, i: &Instance) -> Result<(), StoreError> {
        let proc_start = i
            .proc_start
            .map(|v| {
                i64::try_from(v)
                    .map_err(|_| StoreError::Corrupt(format!("proc_start {v} of {}", i.id)))
            })
            .transpose()?;
        self.conn()
            .execute(
                "INSERT INTO instances (id, app, release, port, pid, proc_start, state, in_split, \
                 started_at, restarts, restart_at, retire_at, host) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (id) DO UPDATE SET app = ?2, release = ?3, port = ?4, pid = ?5, \
                 proc_start = ?6, state = ?7, in_split = ?8, started_at = ?9, restarts = ?10, \
                 restart_at = ?11, retire_at = ?12, host = ?13",
                params![
                    i.id,
                    i.app,
                    i.release,
                    i.port,
                    i.pid,
                    proc_start,
                    i.state.as_str(),
                    i.in_split,
                    i.started_at,
                    i.restarts,
                    i.restart_at,
                    i.retire_at,
                    i.host
                ],
            )
            .op("save instance")?;
        Ok(())
    }

    /// The instances of one app or of all, ordered by app then creation order; stopped ones
    /// only if `include_stopped`.
    pub fn instances(
        &self,
        app: Option<&str>,
        include_stopped: bool,
    ) -> Result<Vec<Instance>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, app, release, port, pid, proc_start, state, in_split, started_at, \
                 restarts, restart_at, retire_at, host FROM instances \
                 WHERE (?1 IS NULL OR app = ?1) AND (?2 OR state <> 'stopped') \
                 ORDER BY app, seq",
            )
            .op("list instances")?;
        let rows = stmt
            .query_map(params![app, include_stopped], read_instance)
            .op("list instances")?;
        rows.collect::<Result<_, _>>().op("read instances")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(app: &str, n: u32) -> Instance {
        Instance {
            id: format!("{app}-{n}"),
            app: app.into(),
            release: "1.0".into(),
            host: if n.is_multiple_of(2) {
                "web-2"
            } else {
                "local"
            }
            .into(),
            port: 9000 + n as u16,
            pid: Some(100 + n),
            proc_start: Some(123_456_789),
            state: InstanceState::Starting,
            in_split: false,
            started_at: 5,
            restarts: 0,
            restart_at: None,
            retire_at: Some(77),
        }
    }

    #[test]
    fn upsert_inserts_then_updates_in_place() {
        let s = Store::open_in_memory().unwrap();
        s.upsert_instance(&inst("web", 1)).unwrap();
        s.upsert_instance(&inst("web", 2)).unwrap();
        let mut first = inst("web", 1);
        first.state = InstanceState::Healthy;
        first.in_split = true;
        first.pid = None;
        first.proc_start = None;
        s.upsert_instance(&first).unwrap();
        assert_eq!(
            s.instances(Some("web"), false).unwrap(),
            vec![first, inst("web", 2)]
        );
    }

    #[test]
    fn lists_by_app_then_creation_and_hides_stopped() {
        let s = Store::open_in_memory().unwrap();
        s.upsert_instance(&inst("web", 2)).unwrap();
        s.upsert_instance(&inst("api", 1)).unwrap();
        s.upsert_instance(&inst("web", 10)).unwrap();
        let mut stopped = inst("web", 3);
        stopped.state = InstanceState::Stopped;
        s.upsert_instance(&stopped).unwrap();
        let ids = |v: Vec<Instance>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.instances(None, false).unwrap()),
            ["api-1", "web-2", "web-10"]
        );
        assert_eq!(
            ids(s.instances(Some("web"), true).unwrap()),
            ["web-2", "web-10", "web-3"]
        );
    }
}
