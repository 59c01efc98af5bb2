//! The `verdicts` table: every analysis verdict with the figures that justified it.

use baton_core::model::Millis;
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::db::{Store, sql_limit};
use crate::error::{SqlResultExt, StoreError};

/// One stored verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVerdict {
    /// Unique, increasing.
    pub id: i64,
    /// The deployment judged.
    pub deployment: i64,
    /// Its step when judged.
    pub step: u32,
    /// When.
    pub at: Millis,
    /// `pass`, `fail` or `inconclusive`.
    pub outcome: String,
    /// One line with the deciding numbers.
    pub summary: String,
    /// Every check with its figures, as JSON.
    pub figures: serde_json::Value,
}

impl Store {
    /// Appends a verdict.
    pub fn append_verdict(
        &self,
        deployment: i64,
        step: u32,
        at: Millis,
        outcome: &str,
        summary: &str,
        figures: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO verdicts (deployment, step, at, outcome, summary, figures) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![deployment, step, at, outcome, summary, figures.to_string()],
        )
        .op("append verdict")?;
        Ok(conn.last_insert_rowid())
    }

    /// A deployment's verdicts, oldest first (the last `limit`).
    pub fn verdicts(
        &self,
        deployment: i64,
        limit: usize,
    ) -> Result<Vec<StoredVerdict>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, deployment, step, at, outcome, summary, figures FROM \
                 (SELECT * FROM verdicts WHERE deployment = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
            )
            .op("prepare verdicts")?;
        let rows = stmt
            .query_map(params![deployment, sql_limit(limit)], |r| {
                let figures: String = r.get(6)?;
                Ok(StoredVerdict {
                    id: r.get(0)?,
                    deployment: r.get(1)?,
                    step: r.get(2)?,
                    at: r.get(3)?,
                    outcome: r.get(4)?,
                    summary: r.get(5)?,
                    figures: serde_json::from_str(&figures).unwrap_or(serde_json::Value::Null),
                })
            })
            .op("read verdicts")?;
        rows.collect::<Result<Vec<_>, _>>().op("read verdicts")
    }
}

#[cfg(test)]
mod tests {
    use baton_core::model::Strategy;

    use crate::{NewDeployment, Store};

    fn new_deployment(app: &str, from: Option<&str>, to: &str) -> NewDeployment {
        NewDeployment {
            app: app.into(),
            from: from.map(String::from),
            to: to.into(),
            strategy: Strategy::Canary,
            trigger: "test".into(),
            now: 0,
            config: None,
        }
    }

    #[test]
    fn verdicts_round_trip_oldest_first() {
        let store = Store::open_in_memory().unwrap();
        let d = store
            .create_deployment(&new_deployment("web", None, "1.0.0"))
            .unwrap();
        for (i, outcome) in ["inconclusive", "pass", "fail"].iter().enumerate() {
            store
                .append_verdict(
                    d.id,
                    1,
                    i as i64,
                    outcome,
                    &format!("v{i}"),
                    &serde_json::json!({"n": i}),
                )
                .unwrap();
        }
        let all = store.verdicts(d.id, 10).unwrap();
        assert_eq!(
            all.iter().map(|v| v.outcome.as_str()).collect::<Vec<_>>(),
            ["inconclusive", "pass", "fail"]
        );
        assert_eq!(all[2].figures["n"], 2);
        let last = store.verdicts(d.id, 1).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].summary, "v2");
    }
}
