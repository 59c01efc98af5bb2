//! [`Store`]: the SQLite connection, how it is opened, and how callers get at it.
//!
//! The table groups live in their own files (`releases.rs`, `deployments.rs`, `apps.rs`,
//! `instances.rs`, `events.rs`), each adding methods to [`Store`].

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{SqlResultExt, StoreError};
use crate::schema;

/// Baton's durable state in one SQLite file (WAL mode, `synchronous = FULL`).
///
/// One connection behind a mutex: every call is short, and a single writer means SQLite never
/// answers `SQLITE_BUSY` to ourselves. `Store` is `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).op("open the database")?;
        Self::setup(conn)
    }

    /// Opens a private in-memory database (tests and dry runs); WAL does not apply.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::setup(Connection::open_in_memory().op("open an in-memory database")?)
    }

    fn setup(mut conn: Connection) -> Result<Store, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))
            .op("set busy timeout")?;
        // journal_mode answers with the mode it got; an in-memory database stays "memory".
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .op("enable WAL")?;
        // FULL: a commit is on disk before the action that depends on it (docs/DESIGN.md Persistence).
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .op("set pragmas")?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// The connection, for one short operation.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock left no half-done transaction: rusqlite rolls back
        // on drop, so the connection is still consistent and safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The journal mode in effect (`wal` for a file database).
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        self.conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .op("read journal mode")
    }
}

/// Converts a `LIMIT` argument; `usize::MAX` means "no limit".
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_is_send_and_sync() {
        assert_send_sync::<Store>();
    }

    #[test]
    fn open_creates_parent_dirs_and_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/baton.db");
        let store = Store::open(&path).unwrap();
        assert!(path.exists());
        assert_eq!(store.journal_mode().unwrap(), "wal");
        let (sync, fk): (i64, i64) = store
            .conn()
            .query_row(
                "SELECT * FROM pragma_synchronous, pragma_foreign_keys",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((sync, fk), (2, 1), "synchronous=FULL and foreign_keys=ON");
    }

    #[test]
    fn reopen_keeps_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton.db");
        drop(Store::open(&path).unwrap());
        let store = Store::open(&path).unwrap();
        let v: u32 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema::SCHEMA_VERSION);
    }
}
