//! The `contracts` table: each contract migration as a scheduled step with a due time, so the
//! timer survives a crash and the user can see it (pending, running, done, failed, cancelled).

use baton_core::model::Millis;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::db::Store;
use crate::error::{SqlResultExt, StoreError};

/// Where a contract migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractState {
    /// Waiting for its due time.
    Pending,
    /// Started (again after a crash if Baton died while it ran).
    Running,
    /// Ran and succeeded: the unit's schema is contracted.
    Done,
    /// Ran and failed; held until someone deploys the release again.
    Failed,
    /// Another release started serving before it was due; it never ran.
    Cancelled,
}

impl ContractState {
    /// Whether a contract may move from `self` to `to`: pending -> running or cancelled,
    /// running -> running (started again after a crash), done or failed. A running contract is
    /// never cancelled, and a final state never changes.
    pub fn may_move_to(self, to: ContractState) -> bool {
        use ContractState::*;
        matches!(
            (self, to),
            (Pending, Running | Cancelled) | (Running, Running | Done | Failed)
        )
    }
}

impl ContractState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractState::Pending => "pending",
            ContractState::Running => "running",
            ContractState::Done => "done",
            ContractState::Failed => "failed",
            ContractState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ContractState::Pending,
            "running" => ContractState::Running,
            "done" => ContractState::Done,
            "failed" => ContractState::Failed,
            "cancelled" => ContractState::Cancelled,
            _ => return None,
        })
    }

    /// Still to run (pending, or running when Baton died).
    pub fn is_open(self) -> bool {
        matches!(self, ContractState::Pending | ContractState::Running)
    }
}

/// One scheduled contract migration of a unit: the one the deployment's success asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    /// The deployment whose success scheduled it (one contract per deployment).
    pub deployment: i64,
    /// The unit (`app@env`).
    pub app: String,
    /// The release whose `migrate.after` runs.
    pub release: String,
    /// When it may run (unix ms): the deployment's success plus `migrate.contract_delay`.
    pub due_at: Millis,
    /// Where it is.
    pub state: ContractState,
    /// Why it failed or was cancelled.
    pub detail: Option<String>,
    /// How many times it started.
    pub attempts: u32,
    /// Last change (unix ms).
    pub updated_at: Millis,
}

const COLUMNS: &str = "deployment, app, release, due_at, state, detail, attempts, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Contract> {
    let state: String = r.get(4)?;
    Ok(Contract {
        deployment: r.get(0)?,
        app: r.get(1)?,
        release: r.get(2)?,
        due_at: r.get(3)?,
        state: ContractState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown contract state {state:?}").into(),
            )
        })?,
        detail: r.get(5)?,
        attempts: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

fn read(conn: &Connection, sql: &str, app: &str) -> Result<Vec<Contract>, StoreError> {
    // Cached: the controller reads a unit's open contracts on every tick of it.
    let mut stmt = conn.prepare_cached(sql).op("prepare contracts")?;
    let rows = stmt.query_map([app], from_row).op("read contracts")?;
    rows.collect::<Result<Vec<_>, _>>().op("read contracts")
}

impl Store {
    /// Schedules the contract migration of `release` for `deployment` of unit `app`, due at
    /// `due_at`, and cancels the unit's older pending contracts (superseded: the newer release's
    /// contract runs instead). A running one is never cancelled: it keeps running and the new
    /// one waits for it (the controller starts one contract per unit at a time). Returns the new contract and the ones it cancelled, or `None`
    /// when this deployment's contract was already scheduled (a repeat changes nothing).
    pub fn schedule_contract(
        &self,
        app: &str,
        deployment: i64,
        release: &str,
        due_at: Millis,
        now: Millis,
    ) -> Result<Option<(Contract, Vec<Contract>)>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .op("begin schedule contract")?;
        let inserted = tx
            .execute(
                "INSERT INTO contracts (deployment, app, release, due_at, state, attempts, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5) ON CONFLICT (deployment) DO NOTHING",
                params![deployment, app, release, due_at, now],
            )
            .op("schedule contract")?;
        if inserted == 0 {
            return Ok(None);
        }
        let superseded = read(
            &tx,
            &format!(
                "SELECT {COLUMNS} FROM contracts WHERE app = ?1 AND state = 'pending' ORDER BY deployment"
            ),
            app,
        )?
        .into_iter()
        .filter(|c| c.deployment != deployment)
        .collect::<Vec<_>>();
        let why = format!("{release} succeeded before it was due; its own contract runs instead");
        for c in &superseded {
            tx.execute(
                "UPDATE contracts SET state = 'cancelled', detail = ?2, updated_at = ?3 \
                 WHERE deployment = ?1 AND state = 'pending'",
                params![c.deployment, why, now],
            )
            .op("cancel contract")?;
        }
        let new = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM contracts WHERE deployment = ?1"),
                [deployment],
                from_row,
            )
            .op("read contract")?;
        tx.commit().op("commit schedule contract")?;
        Ok(Some((new, superseded)))
    }

    /// The unit's contracts still to run (pending, or running when Baton died), oldest first.
    pub fn open_contracts(&self, app: &str) -> Result<Vec<Contract>, StoreError> {
        read(
            &self.conn(),
            &format!(
                "SELECT {COLUMNS} FROM contracts WHERE app = ?1 AND state IN ('pending', 'running') ORDER BY deployment"
            ),
            app,
        )
    }

    /// The unit's newest contract, whatever its state.
    pub fn latest_contract(&self, app: &str) -> Result<Option<Contract>, StoreError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM contracts WHERE app = ?1 ORDER BY deployment DESC LIMIT 1"
                ),
                [app],
                from_row,
            )
            .optional()
            .op("read latest contract")
    }

    /// Moves the contract of `deployment` from `from` to `to` (counting an attempt when it
    /// starts), only if it is still in `from` (compare-and-set): returns whether it moved. A
    /// contract that reaches `done` records its release as the unit's contracted release in the
    /// same transaction. A move [`ContractState::may_move_to`] forbids is an error.
    pub fn set_contract_state(
        &self,
        deployment: i64,
        from: ContractState,
        to: ContractState,
        detail: Option<&str>,
        now: Millis,
    ) -> Result<bool, StoreError> {
        if !from.may_move_to(to) {
            return Err(StoreError::ContractTransition {
                deployment,
                from: from.as_str(),
                to: to.as_str(),
            });
        }
        let started = i64::from(to == ContractState::Running);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .op("begin set contract state")?;
        let moved = tx
            .execute(
                "UPDATE contracts SET state = ?3, detail = ?4, attempts = attempts + ?5, updated_at = ?6 \
                 WHERE deployment = ?1 AND state = ?2",
                params![deployment, from.as_str(), to.as_str(), detail, started, now],
            )
            .op("set contract state")?
            == 1;
        if moved && to == ContractState::Done {
            tx.execute(
                "INSERT INTO apps (app, contracted_release) \
                 SELECT app, release FROM contracts WHERE deployment = ?1 \
                 ON CONFLICT (app) DO UPDATE SET contracted_release = excluded.contracted_release",
                [deployment],
            )
            .op("set contracted release")?;
        }
        tx.commit().op("commit set contract state")?;
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewDeployment;
    use baton_core::model::Strategy;

    fn deployment(s: &Store, to: &str, now: Millis) -> i64 {
        let d = s
            .create_deployment(&NewDeployment {
                app: "web@production".into(),
                from: None,
                to: to.into(),
                strategy: Strategy::Rolling,
                trigger: "deploy".into(),
                now,
                config: None,
            })
            .unwrap();
        let mut done = d.clone();
        done.phase = baton_core::model::Phase::Succeeded;
        done.finished_at = Some(now + 1);
        s.update_deployment(&done).unwrap();
        d.id
    }

    #[test]
    fn a_scheduled_contract_survives_a_restart_and_scheduling_again_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton.db");
        let id = {
            let s = Store::open(&path).unwrap();
            let id = deployment(&s, "1.1.0", 10);
            let (c, cancelled) = s
                .schedule_contract("web@production", id, "1.1.0", 3_600_010, 10)
                .unwrap()
                .unwrap();
            assert_eq!(
                (c.state, c.due_at, c.attempts),
                (ContractState::Pending, 3_600_010, 0)
            );
            assert!(cancelled.is_empty());
            assert!(
                s.set_contract_state(id, ContractState::Pending, ContractState::Running, None, 20)
                    .unwrap()
            );
            id
        };
        let s = Store::open(&path).unwrap();
        let open = s.open_contracts("web@production").unwrap();
        assert_eq!(
            open.len(),
            1,
            "a contract running when Baton died is still open"
        );
        assert_eq!(
            (open[0].deployment, open[0].state, open[0].attempts),
            (id, ContractState::Running, 1)
        );
        assert!(
            s.schedule_contract("web@production", id, "1.1.0", 99, 30)
                .unwrap()
                .is_none(),
            "the planner repeating its Contract after a crash schedules nothing new"
        );
        assert_eq!(
            s.open_contracts("web@production").unwrap()[0].due_at,
            3_600_010
        );
    }

    #[test]
    fn a_newer_contract_cancels_the_open_older_one_and_final_states_are_closed() {
        let s = Store::open_in_memory().unwrap();
        let a = deployment(&s, "1.1.0", 10);
        s.schedule_contract("web@production", a, "1.1.0", 100, 10)
            .unwrap();
        let b = deployment(&s, "1.2.0", 20);
        let (_, cancelled) = s
            .schedule_contract("web@production", b, "1.2.0", 200, 20)
            .unwrap()
            .unwrap();
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].release, "1.1.0");
        let latest = s.latest_contract("web@production").unwrap().unwrap();
        assert_eq!(
            (latest.release.as_str(), latest.state),
            ("1.2.0", ContractState::Pending)
        );
        s.set_contract_state(b, ContractState::Pending, ContractState::Running, None, 250)
            .unwrap();
        s.set_contract_state(
            b,
            ContractState::Running,
            ContractState::Failed,
            Some("exit code 3"),
            300,
        )
        .unwrap();
        assert!(s.open_contracts("web@production").unwrap().is_empty());
        let latest = s.latest_contract("web@production").unwrap().unwrap();
        assert_eq!(latest.detail.as_deref(), Some("exit code 3"));
        assert_eq!(
            s.latest_contract("web@staging").unwrap(),
            None,
            "contracts are per unit"
        );
    }

    #[test]
    fn a_newer_contract_scheduled_while_one_runs_leaves_it_running_and_waits_pending() {
        let s = Store::open_in_memory().unwrap();
        let a = deployment(&s, "1.1.0", 10);
        s.schedule_contract("web@production", a, "1.1.0", 10, 10)
            .unwrap();
        s.set_contract_state(a, ContractState::Pending, ContractState::Running, None, 11)
            .unwrap();
        let b = deployment(&s, "1.2.0", 20);
        let (new, cancelled) = s
            .schedule_contract("web@production", b, "1.2.0", 20, 20)
            .unwrap()
            .unwrap();
        assert!(
            cancelled.is_empty(),
            "a running contract is never cancelled"
        );
        assert_eq!(new.state, ContractState::Pending);
        let open = s.open_contracts("web@production").unwrap();
        assert_eq!(
            open.iter()
                .map(|c| (c.release.as_str(), c.state))
                .collect::<Vec<_>>(),
            [
                ("1.1.0", ContractState::Running),
                ("1.2.0", ContractState::Pending)
            ]
        );
        // The running one ends as done and marks the unit contracted; the newer one still waits.
        assert!(
            s.set_contract_state(a, ContractState::Running, ContractState::Done, None, 30)
                .unwrap()
        );
        assert_eq!(
            s.contracted_release("web@production").unwrap().as_deref(),
            Some("1.1.0")
        );
        let open = s.open_contracts("web@production").unwrap();
        assert_eq!(
            (open.len(), open[0].release.as_str(), open[0].state),
            (1, "1.2.0", ContractState::Pending)
        );
    }

    #[test]
    fn contract_states_move_only_from_the_state_the_caller_saw() {
        let s = Store::open_in_memory().unwrap();
        let a = deployment(&s, "1.1.0", 10);
        s.schedule_contract("web@production", a, "1.1.0", 10, 10)
            .unwrap();
        use ContractState::*;
        // Not running yet: it cannot be done or failed, and cancelling a running one is refused.
        assert!(!s.set_contract_state(a, Running, Done, None, 11).unwrap());
        assert!(
            s.set_contract_state(a, Running, Cancelled, None, 11)
                .is_err()
        );
        assert!(s.set_contract_state(a, Pending, Running, None, 12).unwrap());
        assert!(
            !s.set_contract_state(a, Pending, Cancelled, Some("late"), 13)
                .unwrap(),
            "a running contract is never cancelled"
        );
        assert!(
            s.set_contract_state(a, Running, Running, None, 14).unwrap(),
            "started again after a crash"
        );
        assert!(s.set_contract_state(a, Running, Done, None, 15).unwrap());
        assert!(
            !s.set_contract_state(a, Running, Failed, Some("x"), 16)
                .unwrap(),
            "a final state never changes"
        );
        assert!(s.set_contract_state(a, Done, Running, None, 17).is_err());
        let c = s.latest_contract("web@production").unwrap().unwrap();
        assert_eq!((c.state, c.attempts, c.detail), (Done, 2, None));
    }
}
