//! The database schema as numbered migrations, applied in order by `PRAGMA user_version`.
//!
//! A migration is never edited once released: a change is a new, higher-numbered migration.

use rusqlite::Connection;

use crate::error::{SqlResultExt, StoreError};

/// Migration `i` takes the schema from `user_version = i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: releases, deployments, app state, instances, events.
    r#"
    CREATE TABLE releases (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        app        TEXT    NOT NULL,
        version    TEXT    NOT NULL,
        digest     TEXT    NOT NULL,
        notes      TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (app, version)
    );

    CREATE TABLE deployments (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        app          TEXT    NOT NULL,
        from_release TEXT,
        to_release   TEXT    NOT NULL,
        strategy     TEXT    NOT NULL,
        phase        TEXT    NOT NULL,
        step         INTEGER NOT NULL,
        reason       TEXT,
        trigger      TEXT    NOT NULL,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        finished_at  INTEGER,
        exposed      INTEGER NOT NULL,
        deadline     INTEGER
    );
    CREATE INDEX deployments_by_app ON deployments (app, id);
    -- Defence in depth behind create_deployment's check: at most one live deployment per app.
    CREATE UNIQUE INDEX deployments_one_active ON deployments (app)
        WHERE phase NOT IN ('succeeded', 'rolled_back', 'failed');

    CREATE TABLE apps (
        app             TEXT PRIMARY KEY,
        current_release TEXT,
        current_since   INTEGER,
        -- The last instance number handed out; never decreases so ids are never reused.
        instance_seq    INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE instances (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT    NOT NULL UNIQUE,
        app         TEXT    NOT NULL,
        release     TEXT    NOT NULL,
        port        INTEGER NOT NULL,
        pid         INTEGER,
        proc_start  INTEGER,
        state       TEXT    NOT NULL,
        in_split    INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        restarts    INTEGER NOT NULL,
        restart_at  INTEGER,
        retire_at   INTEGER
    );
    CREATE INDEX instances_by_app ON instances (app, seq);

    CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        app        TEXT    NOT NULL,
        deployment INTEGER REFERENCES deployments (id),
        kind       TEXT    NOT NULL,
        message    TEXT    NOT NULL
    );
    CREATE INDEX events_by_app ON events (app, id);
    CREATE INDEX events_by_deployment ON events (deployment, id);
    "#,
    // 2: canary weight and pause timer, operator intents, analysis verdicts.
    r#"
    ALTER TABLE deployments ADD COLUMN weight INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deployments ADD COLUMN pause_until INTEGER;
    ALTER TABLE deployments ADD COLUMN intents TEXT NOT NULL DEFAULT '{}';

    CREATE TABLE verdicts (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment INTEGER NOT NULL REFERENCES deployments (id),
        step       INTEGER NOT NULL,
        at         INTEGER NOT NULL,
        outcome    TEXT    NOT NULL,
        summary    TEXT    NOT NULL,
        figures    TEXT    NOT NULL
    );
    CREATE INDEX verdicts_by_deployment ON verdicts (deployment, id);
    "#,
    // 3: what a release was built from and what changed; the contract mark of migrations.
    r#"
    ALTER TABLE releases ADD COLUMN git_commit TEXT;
    ALTER TABLE releases ADD COLUMN changelog TEXT;
    ALTER TABLE releases ADD COLUMN release_notes TEXT;
    ALTER TABLE apps ADD COLUMN contracted_release TEXT;
    "#,
    // 4: a deployment's expand migration.
    r#"
    ALTER TABLE deployments ADD COLUMN migration TEXT NOT NULL DEFAULT '{"state":"pending"}';
    "#,
    // 5: contract migrations as scheduled steps with a due time (restart-safe timers).
    r#"
    CREATE TABLE contracts (
        deployment INTEGER PRIMARY KEY REFERENCES deployments (id),
        app        TEXT    NOT NULL,
        release    TEXT    NOT NULL,
        due_at     INTEGER NOT NULL,
        state      TEXT    NOT NULL,
        detail     TEXT,
        attempts   INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX contracts_by_app ON contracts (app, deployment);
    "#,
    // 6: the host an instance runs on (docs/design-notes.md, "Many hosts and containers").
    r#"
    ALTER TABLE instances ADD COLUMN host TEXT NOT NULL DEFAULT 'local';
    "#,
    // 7: join tokens (only the secret's sha256) and joined hosts (hosts.rs).
    r#"
    CREATE TABLE join_tokens (
        id            TEXT    PRIMARY KEY,
        secret_sha256 TEXT    NOT NULL,
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        used_at       INTEGER,
        used_by       TEXT
    );

    CREATE TABLE hosts (
        name          TEXT    PRIMARY KEY,
        address       TEXT    NOT NULL,
        joined_at     INTEGER NOT NULL,
        -- Incremented at every join and every session: fences a host's older sessions.
        generation    INTEGER NOT NULL,
        -- The sha256 of the certificate issued at the last join: the only one let in.
        cert_sha256   TEXT    NOT NULL UNIQUE,
        agent_version TEXT,
        last_seen     INTEGER
    );
    "#,
    // 8: hosts the operator drained (`baton host drain`), joined or not.
    r#"
    CREATE TABLE host_drains (
        name  TEXT    PRIMARY KEY,
        since INTEGER NOT NULL
    );
    "#,
    // 9: each host's health endpoint for an app's external load balancer (`external_lb`):
    // failing (503) or passing (200), since when. No row: passing.
    r#"
    CREATE TABLE lb_endpoints (
        app     TEXT    NOT NULL,
        host    TEXT    NOT NULL,
        passing INTEGER NOT NULL,
        since   INTEGER NOT NULL,
        PRIMARY KEY (app, host)
    );
    "#,
    // 10: the lost hosts a deployment holds for, and those it goes on without (JSON).
    r#"
    ALTER TABLE deployments ADD COLUMN hold TEXT NOT NULL DEFAULT '{}';
    "#,
    // 11: the unit config a deployment started with (JSON), so a config reload never changes
    // a running rollout's rules. NULL for deployments recorded before: they use the config in
    // force.
    r#"
    ALTER TABLE deployments ADD COLUMN config TEXT;
    "#,
    // 12: feature flags: live changes (append-only; the newest per flag overrides baton.toml,
    // a NULL spec hands the flag back to the file) and the OFREP listener's read-only tokens
    // (sha256 of the secret), each scoped to one app in one environment.
    r#"
    CREATE TABLE flag_changes (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        app    TEXT    NOT NULL,
        env    TEXT    NOT NULL,
        flag   TEXT    NOT NULL,
        spec   TEXT,
        actor  TEXT    NOT NULL,
        at     INTEGER NOT NULL
    );
    CREATE INDEX flag_changes_by_flag ON flag_changes (app, env, flag, id);
    CREATE TABLE flag_tokens (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        app           TEXT    NOT NULL,
        env           TEXT    NOT NULL,
        secret_sha256 TEXT    NOT NULL UNIQUE,
        actor         TEXT    NOT NULL,
        created_at    INTEGER NOT NULL
    );
    "#,
    // 13: where each host's tunnel listens, as its last session's `hello` said, so that a
    // restarted controller reaches the hosts' instances before their agents reconnect.
    // NULL until the host's first session after its join.
    r#"
    ALTER TABLE hosts ADD COLUMN tunnel TEXT;
    "#,
    // 14: revoked OFREP tokens: kept (with who revoked them, and when) for the record, never
    // accepted again.
    r#"
    ALTER TABLE flag_tokens ADD COLUMN revoked_at INTEGER;
    ALTER TABLE flag_tokens ADD COLUMN revoked_by TEXT;
    "#,
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to [`SCHEMA_VERSION`], one transaction per migration.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .op("read schema version")?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current} but this Baton knows only up to \
             {SCHEMA_VERSION}: run a newer Baton or restore a backup"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().op("begin migration")?;
        tx.execute_batch(sql).op("apply migration")?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .op("record schema version")?;
        tx.commit().op("commit migration")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_database_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 999").unwrap();
        let e = migrate(&mut conn).unwrap_err();
        assert!(e.to_string().contains("newer Baton"), "{e}");
    }
}
