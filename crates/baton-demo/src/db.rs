//! The demo's tiny database: signups in SQLite at `DATABASE_URL` (`sqlite:///abs/path.db`), and
//! its migrations (`baton-demo migrate`, `baton-demo migrate --contract`) so the quickstart can
//! show migrations travelling with a release.
//!
//! Expand adds the `signups` table (old releases keep counting in memory only, so they still
//! work); contract drops `signups_legacy`, which only releases before the expand would read.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::Connection;

/// The database named by `DATABASE_URL`, if it is a SQLite URL.
pub fn path_from_env() -> Option<PathBuf> {
    let url = std::env::var("DATABASE_URL").ok()?;
    url.strip_prefix("sqlite://")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// `baton-demo migrate [--contract]`: returns the exit code.
pub fn migrate(contract: bool) -> i32 {
    let Some(path) = path_from_env() else {
        eprintln!("baton-demo migrate: set DATABASE_URL=sqlite:///path/to/file.db");
        return 2;
    };
    let result = Connection::open(&path).and_then(|c| {
        if contract {
            c.execute_batch("DROP TABLE IF EXISTS signups_legacy;")
        } else {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS signups_legacy (n INTEGER);
                 CREATE TABLE IF NOT EXISTS signups (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL);",
            )
        }
    });
    match result {
        Ok(()) => {
            println!(
                "baton-demo migrate: {} step applied to {}",
                if contract { "contract" } else { "expand" },
                path.display()
            );
            0
        }
        Err(e) => {
            eprintln!("baton-demo migrate: {}: {e}", path.display());
            1
        }
    }
}

/// Where signups are stored, when the database has the `signups` table.
pub struct Signups(Mutex<Connection>);

impl Signups {
    /// Opens the database of `DATABASE_URL` if its schema has `signups` (after the expand).
    pub fn open() -> Option<Signups> {
        let c = Connection::open(path_from_env()?).ok()?;
        let has: bool = c
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'signups'",
                [],
                |r| r.get(0),
            )
            .ok()?;
        has.then(|| Signups(Mutex::new(c)))
    }

    /// Records one signup.
    pub fn record(&self) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = c.execute("INSERT INTO signups (at) VALUES (?1)", [at]);
    }
}
