//! Deployments: one row per attempt to move an app from one release to another.

use baton_core::model::{
    Deployment, Event, EventKind, HostHold, Intents, MigrationState, Millis, Phase, Strategy,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::apps::write_current_release;
use crate::db::{Store, sql_limit};
use crate::error::{SqlResultExt, StoreError, corrupt_column};
use crate::events::insert_event;

/// The intent to deploy, as recorded by [`Store::create_deployment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    /// The app to deploy.
    pub app: String,
    /// The release serving now (none for the app's first deployment).
    pub from: Option<String>,
    /// The release to deploy.
    pub to: String,
    /// How traffic moves.
    pub strategy: Strategy,
    /// Who asked (`cli`, `rollback`, `api`).
    pub trigger: String,
    /// When it was asked.
    pub now: Millis,
    /// The unit's config it runs with to its end (JSON of the resolved app config), whatever
    /// reloads happen meanwhile.
    pub config: Option<String>,
}

/// The phases in which a deployment is over; must agree with [`Phase::is_final`]
/// (checked by a test) and with the partial index in `schema.rs`.
const FINAL_PHASES_SQL: &str = "('succeeded', 'rolled_back', 'failed')";

const COLUMNS: &str = "id, app, from_release, to_release, strategy, phase, step, reason, trigger, \
                       created_at, updated_at, finished_at, exposed, deadline, weight, pause_until, intents, migration, hold";

fn read_deployment(row: &Row<'_>) -> rusqlite::Result<Deployment> {
    let strategy: String = row.get(4)?;
    let phase: String = row.get(5)?;
    Ok(Deployment {
        id: row.get(0)?,
        app: row.get(1)?,
        from: row.get(2)?,
        to: row.get(3)?,
        strategy: strategy
            .parse()
            .map_err(|_| corrupt_column(4, "strategy", &strategy))?,
        phase: Phase::parse(&phase).ok_or_else(|| corrupt_column(5, "phase", &phase))?,
        step: row.get(6)?,
        reason: row.get(7)?,
        trigger: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        finished_at: row.get(11)?,
        exposed: row.get(12)?,
        deadline: row.get(13)?,
        weight: row.get(14)?,
        pause_until: row.get(15)?,
        intents: {
            let text: String = row.get(16)?;
            serde_json::from_str(&text).map_err(|_| corrupt_column(16, "intents", &text))?
        },
        migration: {
            let text: String = row.get(17)?;
            serde_json::from_str(&text).map_err(|_| corrupt_column(17, "migration", &text))?
        },
        hold: {
            let text: String = row.get(18)?;
            serde_json::from_str(&text).map_err(|_| corrupt_column(18, "hold", &text))?
        },
    })
}

fn active_deployment(conn: &Connection, app: &str) -> Result<Option<Deployment>, StoreError> {
    // Cached: the controller asks this of every app on every tick.
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deployments WHERE app = ?1 AND phase NOT IN {FINAL_PHASES_SQL} \
         ORDER BY id DESC LIMIT 1"
    ))
    .and_then(|mut stmt| stmt.query_row([app], read_deployment))
    .optional()
    .op("read active deployment")
}

/// Writes every mutable field of `d` but its intents; the app, releases, strategy and trigger
/// never change. Intents are written only by [`Store::set_intents`] and
/// [`Store::clear_consumed_intents`], so a controller writing a deployment it read a moment ago
/// never loses an intent recorded in between.
fn write_deployment(conn: &Connection, d: &Deployment) -> Result<(), StoreError> {
    let hold = serde_json::to_string(&d.hold).expect("a hold serializes");
    let changed = conn
        .execute(
            "UPDATE deployments SET phase = ?2, step = ?3, reason = ?4, updated_at = ?5, \
             finished_at = ?6, exposed = ?7, deadline = ?8, weight = ?9, pause_until = ?10, \
             hold = ?11 WHERE id = ?1",
            params![
                d.id,
                d.phase.as_str(),
                d.step,
                d.reason,
                d.updated_at,
                d.finished_at,
                d.exposed,
                d.deadline,
                d.weight,
                d.pause_until,
                hold
            ],
        )
        .op("update deployment")?;
    if changed == 0 {
        return Err(StoreError::DeploymentNotFound(d.id));
    }
    Ok(())
}

/// Writes a deployment's intents: the only writer of that column.
fn write_intents(conn: &Connection, id: i64, intents: &Intents) -> Result<(), StoreError> {
    let text = serde_json::to_string(intents).expect("intents serialize");
    conn.execute(
        "UPDATE deployments SET intents = ?2 WHERE id = ?1",
        params![id, text],
    )
    .op("write intents")?;
    Ok(())
}

impl Store {
    /// The unit config deployment `id` started with (JSON), when it recorded one.
    pub fn deployment_config(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row("SELECT config FROM deployments WHERE id = ?1", [id], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()
            .op("read deployment config")
            .map(Option::flatten)
    }

    /// Records a deployment in phase `pending`, unless the app already has one that is not
    /// final ([`StoreError::DeploymentActive`]). Check and insert are one transaction.
    pub fn create_deployment(&self, new: &NewDeployment) -> Result<Deployment, StoreError> {
        self.create_deployment_with_event(new, None).map(|(d, _)| d)
    }

    /// [`Store::create_deployment`] and, in the same transaction, its first event (the
    /// deployment's id is in `message` where it says `{id}`), so no other event of the
    /// deployment can come before it.
    pub fn create_deployment_with_event(
        &self,
        new: &NewDeployment,
        event: Option<(EventKind, &str)>,
    ) -> Result<(Deployment, Option<Event>), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op("begin create deployment")?;
        if let Some(active) = active_deployment(&tx, &new.app)? {
            return Err(StoreError::DeploymentActive(Box::new(active)));
        }
        tx.execute(
            "INSERT INTO deployments (app, from_release, to_release, strategy, phase, step, \
             reason, trigger, created_at, updated_at, finished_at, exposed, deadline, config) \
             VALUES (?1, ?2, ?3, ?4, ?5, 0, NULL, ?6, ?7, ?7, NULL, 0, NULL, ?8)",
            params![
                new.app,
                new.from,
                new.to,
                new.strategy.as_str(),
                Phase::Pending.as_str(),
                new.trigger,
                new.now,
                new.config
            ],
        )
        .op("create deployment")?;
        let id = tx.last_insert_rowid();
        let event = match event {
            Some((kind, message)) => Some(insert_event(
                &tx,
                new.now,
                &new.app,
                Some(id),
                kind,
                &message.replace("{id}", &id.to_string()),
            )?),
            None => None,
        };
        tx.commit().op("commit deployment")?;
        Ok((
            Deployment {
                id,
                app: new.app.clone(),
                from: new.from.clone(),
                to: new.to.clone(),
                strategy: new.strategy,
                phase: Phase::Pending,
                step: 0,
                reason: None,
                trigger: new.trigger.clone(),
                created_at: new.now,
                updated_at: new.now,
                finished_at: None,
                exposed: false,
                deadline: None,
                weight: 0,
                pause_until: None,
                intents: Intents::default(),
                migration: MigrationState::Pending,
                hold: HostHold::default(),
            },
            event,
        ))
    }

    /// Records the outcome of a deployment's expand migration (written apart from the rest of
    /// the deployment, like intents, so the controller's copy never overwrites it) and moves
    /// its progress deadline: the time spent migrating does not count against health.
    pub fn set_migration(
        &self,
        id: i64,
        state: &MigrationState,
        deadline: Option<Millis>,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(state).expect("migration state serializes");
        let changed = self
            .conn()
            .execute("UPDATE deployments SET migration = ?2, deadline = COALESCE(?3, deadline) WHERE id = ?1", params![id, text, deadline])
            .op("set migration")?;
        if changed == 0 {
            return Err(StoreError::DeploymentNotFound(id));
        }
        Ok(())
    }

    /// Changes the intents of the app's active deployment in one transaction; returns it.
    /// None when the app has no active deployment.
    pub fn set_intents(
        &self,
        app: &str,
        change: impl FnOnce(&mut Intents),
    ) -> Result<Option<Deployment>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op("begin set intents")?;
        let Some(mut d) = active_deployment(&tx, app)? else {
            return Ok(None);
        };
        change(&mut d.intents);
        write_intents(&tx, d.id, &d.intents)?;
        tx.commit().op("commit intents")?;
        Ok(Some(d))
    }

    /// Clears the one-shot intents the planner acted on (`promote`, `abort`, `resume`), keeping
    /// any that were recorded since it read them.
    pub fn clear_consumed_intents(
        &self,
        id: i64,
        promote: bool,
        abort: bool,
        resume: bool,
    ) -> Result<(), StoreError> {
        if !promote && !abort && !resume {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op("begin clear intents")?;
        let text: String = tx
            .query_row("SELECT intents FROM deployments WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .op("read intents")?;
        let mut intents: Intents = serde_json::from_str(&text).map_err(|_| {
            StoreError::Corrupt(format!("deployment {id} has unreadable intents {text:?}"))
        })?;
        if promote {
            intents.promote = None;
        }
        if abort {
            intents.abort = false;
        }
        if resume {
            intents.resume = false;
        }
        write_intents(&tx, id, &intents)?;
        tx.commit().op("commit intents")?;
        Ok(())
    }

    /// Saves a deployment's phase, step, reason, times, exposure and deadline.
    pub fn update_deployment(&self, d: &Deployment) -> Result<(), StoreError> {
        write_deployment(&self.conn(), d)
    }

    /// Saves a deployment and appends an event about it (at `d.updated_at`) in one
    /// transaction, so the audit log never misses or invents a transition.
    pub fn update_deployment_with_event(
        &self,
        d: &Deployment,
        kind: EventKind,
        message: &str,
    ) -> Result<Event, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op("begin update deployment")?;
        write_deployment(&tx, d)?;
        let event = insert_event(&tx, d.updated_at, &d.app, Some(d.id), kind, message)?;
        tx.commit().op("commit deployment update")?;
        Ok(event)
    }

    /// Ends a deployment in one transaction: saves it, sets the app's current release to
    /// `current` (at `d.updated_at`) and appends the event. A crash can then never leave a
    /// succeeded deployment with the old release still recorded as current (docs/DESIGN.md I4).
    pub fn finish_deployment(
        &self,
        d: &Deployment,
        current: Option<&str>,
        kind: EventKind,
        message: &str,
    ) -> Result<Event, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op("begin finish deployment")?;
        write_deployment(&tx, d)?;
        write_current_release(&tx, &d.app, current, d.updated_at)?;
        let event = insert_event(&tx, d.updated_at, &d.app, Some(d.id), kind, message)?;
        tx.commit().op("commit finished deployment")?;
        Ok(event)
    }

    /// One deployment by id.
    pub fn deployment(&self, id: i64) -> Result<Option<Deployment>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM deployments WHERE id = ?1"),
                [id],
                read_deployment,
            )
            .optional()
            .op("read deployment")
    }

    /// The app's deployment that is not in a final phase, if any.
    pub fn active_deployment(&self, app: &str) -> Result<Option<Deployment>, StoreError> {
        active_deployment(&self.conn(), app)
    }

    /// The newest `limit` deployments, of one app or of all, newest first.
    pub fn deployments(
        &self,
        app: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Deployment>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deployments WHERE (?1 IS NULL OR app = ?1) \
                 ORDER BY id DESC LIMIT ?2"
            ))
            .op("list deployments")?;
        let rows = stmt
            .query_map(params![app, sql_limit(limit)], read_deployment)
            .op("list deployments")?;
        rows.collect::<Result<_, _>>().op("read deployments")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_deployment(app: &str, from: Option<&str>, to: &str, now: Millis) -> NewDeployment {
        NewDeployment {
            app: app.into(),
            from: from.map(Into::into),
            to: to.into(),
            strategy: Strategy::Rolling,
            trigger: "cli".into(),
            now,
            config: None,
        }
    }

    #[test]
    fn a_deployment_keeps_the_config_it_was_created_with() {
        let s = Store::open_in_memory().unwrap();
        let mut new = new_deployment("web", None, "1.0", 100);
        new.config = Some(r#"{"instances":3}"#.into());
        let d = s.create_deployment(&new).unwrap();
        assert_eq!(
            s.deployment_config(d.id).unwrap().as_deref(),
            Some(r#"{"instances":3}"#)
        );
        let mut old = new_deployment("api", None, "1.0", 100);
        old.config = None;
        let d = s.create_deployment(&old).unwrap();
        assert_eq!(s.deployment_config(d.id).unwrap(), None);
        assert_eq!(s.deployment_config(999).unwrap(), None);
    }

    #[test]
    fn final_phases_sql_agrees_with_the_model() {
        for p in [
            Phase::Pending,
            Phase::Progressing,
            Phase::Paused,
            Phase::Succeeded,
            Phase::Aborting,
            Phase::RolledBack,
            Phase::Failed,
        ] {
            let quoted = format!("'{}'", p.as_str());
            assert_eq!(FINAL_PHASES_SQL.contains(&quoted), p.is_final(), "{p}");
        }
    }

    #[test]
    fn create_refuses_a_second_active_deployment_until_the_first_is_final() {
        let s = Store::open_in_memory().unwrap();
        let d = s
            .create_deployment(&new_deployment("web", None, "1.0", 100))
            .unwrap();
        assert_eq!((d.phase, d.step, d.exposed), (Phase::Pending, 0, false));
        assert_eq!(s.deployment(d.id).unwrap().as_ref(), Some(&d));

        let e = s
            .create_deployment(&new_deployment("web", None, "2.0", 101))
            .unwrap_err();
        match &e {
            StoreError::DeploymentActive(active) => assert_eq!(active.id, d.id),
            other => panic!("expected DeploymentActive, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("#{}", d.id))
                && msg.contains("nothing -> 1.0")
                && msg.contains("pending"),
            "{msg}"
        );

        // Another app is independent.
        s.create_deployment(&new_deployment("api", None, "1.0", 102))
            .unwrap();

        let done = Deployment {
            phase: Phase::Succeeded,
            finished_at: Some(200),
            updated_at: 200,
            ..d.clone()
        };
        s.update_deployment(&done).unwrap();
        assert_eq!(s.active_deployment("web").unwrap(), None);
        let second = s
            .create_deployment(&new_deployment("web", Some("1.0"), "2.0", 300))
            .unwrap();
        assert!(second.id > d.id);
        assert_eq!(s.active_deployment("web").unwrap(), Some(second.clone()));

        let all: Vec<_> = s
            .deployments(None, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(all.len(), 3);
        assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");
        let web: Vec<_> = s
            .deployments(Some("web"), 1)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(web, [second.id]);
    }

    #[test]
    fn update_round_trips_every_mutable_field() {
        let s = Store::open_in_memory().unwrap();
        let mut d = s
            .create_deployment(&new_deployment("web", Some("1.0"), "2.0", 1))
            .unwrap();
        d.phase = Phase::Paused;
        d.step = 3;
        d.reason = Some("operator".into());
        d.updated_at = 7;
        d.exposed = true;
        d.deadline = Some(99);
        d.hold.lost = vec!["web-2".into()];
        d.hold.without = vec!["web-3".into()];
        let ev = s
            .update_deployment_with_event(&d, EventKind::DeploymentStep, "step 3")
            .unwrap();
        assert_eq!(s.deployment(d.id).unwrap(), Some(d.clone()));
        assert_eq!(
            (ev.at, ev.deployment, ev.kind.as_str()),
            (7, Some(d.id), "deployment_step")
        );
    }

    #[test]
    fn update_of_a_missing_deployment_fails_and_appends_no_event() {
        let s = Store::open_in_memory().unwrap();
        let d = s
            .create_deployment(&new_deployment("web", None, "1.0", 1))
            .unwrap();
        let ghost = Deployment {
            id: d.id + 100,
            ..d
        };
        let e = s
            .update_deployment_with_event(&ghost, EventKind::DeploymentStep, "x")
            .unwrap_err();
        assert!(matches!(e, StoreError::DeploymentNotFound(_)), "{e:?}");
        assert!(s.events(None, None, 0, 100).unwrap().is_empty());
    }

    #[test]
    fn finish_sets_current_release_and_logs_atomically() {
        let s = Store::open_in_memory().unwrap();
        let mut d = s
            .create_deployment(&new_deployment("web", Some("1.0"), "2.0", 1))
            .unwrap();
        d.phase = Phase::Succeeded;
        d.updated_at = 9;
        d.finished_at = Some(9);
        let ev = s
            .finish_deployment(&d, Some("2.0"), EventKind::DeploymentSucceeded, "done")
            .unwrap();
        assert_eq!(s.current_release("web").unwrap().as_deref(), Some("2.0"));
        assert_eq!(s.previous_release("web").unwrap().as_deref(), Some("1.0"));
        assert_eq!(s.events(Some("web"), Some(d.id), 0, 10).unwrap(), vec![ev]);

        // A failing write leaves the current release untouched.
        let ghost = Deployment { id: 999, ..d };
        assert!(
            s.finish_deployment(&ghost, Some("3.0"), EventKind::DeploymentSucceeded, "x")
                .is_err()
        );
        assert_eq!(s.current_release("web").unwrap().as_deref(), Some("2.0"));
    }

    #[test]
    fn unknown_phase_reads_as_corrupt() {
        let s = Store::open_in_memory().unwrap();
        let d = s
            .create_deployment(&new_deployment("web", None, "1.0", 1))
            .unwrap();
        s.conn()
            .execute(
                "UPDATE deployments SET phase = 'flying' WHERE id = ?1",
                [d.id],
            )
            .unwrap();
        let e = s.deployment(d.id).unwrap_err();
        assert!(
            matches!(e, StoreError::Corrupt(ref m) if m.contains("flying")),
            "{e:?}"
        );
    }
}
