//! The store's error type and the mapping from SQLite errors to it.

use baton_core::model::Deployment;

/// Everything that can go wrong reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed an operation.
    #[error("store: could not {op}: {source}")]
    Sqlite {
        /// What the store was doing, e.g. `create release`.
        op: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The app already has this version with a different artifact; releases never change (I5).
    #[error(
        "release {app} {version} already exists with artifact {existing_digest}, not {new_digest}: \
         releases never change, pick a new version"
    )]
    VersionConflict {
        /// The app.
        app: String,
        /// The version that is taken.
        version: String,
        /// The digest stored for it.
        existing_digest: String,
        /// The digest that was offered.
        new_digest: String,
    },
    /// The app already has a deployment in a non-final phase.
    #[error(
        "app {} already has deployment #{} ({} -> {}) in phase {}: wait for it to finish (`baton status` shows its progress)",
        .0.app, .0.id, .0.from.as_deref().unwrap_or("nothing"), .0.to, .0.phase
    )]
    DeploymentActive(Box<Deployment>),
    /// An update named a deployment that does not exist.
    #[error("deployment #{0} does not exist")]
    DeploymentNotFound(i64),
    /// The data directory could not be created.
    #[error("cannot create the data directory {}: {source}: check its permissions", .path.display())]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A contract migration was asked to make a move its states do not allow.
    #[error("contract of deployment #{deployment} may not move from {from} to {to}")]
    ContractTransition {
        /// The deployment whose contract it is.
        deployment: i64,
        /// The state it was asked to leave.
        from: &'static str,
        /// The state it was asked to reach.
        to: &'static str,
    },
    /// A stored value could not be read back (e.g. an unknown phase name).
    #[error("store: corrupt value: {0}")]
    Corrupt(String),
}

/// A stored value that does not parse; carried through rusqlite so row readers stay simple.
#[derive(Debug)]
pub(crate) struct CorruptValue(pub(crate) String);

impl std::fmt::Display for CorruptValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CorruptValue {}

/// Builds the rusqlite error a row reader returns for an unparseable column.
pub(crate) fn corrupt_column(idx: usize, column: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        Box::new(CorruptValue(format!("column {column} holds {value:?}"))),
    )
}

/// Attaches the operation name to a rusqlite result.
pub(crate) trait SqlResultExt<T> {
    /// Maps the error to [`StoreError`], naming the operation.
    fn op(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> SqlResultExt<T> for Result<T, rusqlite::Error> {
    fn op(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| match source {
            // Values that do not convert mean the file holds something this code never writes.
            rusqlite::Error::FromSqlConversionFailure(_, _, ref inner) => {
                StoreError::Corrupt(format!("{op}: {inner}"))
            }
            rusqlite::Error::IntegralValueOutOfRange(idx, value) => {
                StoreError::Corrupt(format!("{op}: column {idx} holds out-of-range {value}"))
            }
            rusqlite::Error::InvalidColumnType(idx, ref name, ty) => {
                StoreError::Corrupt(format!("{op}: column {idx} ({name}) holds a {ty}"))
            }
            source => StoreError::Sqlite { op, source },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_column_maps_to_corrupt() {
        let r: Result<(), _> = Err(corrupt_column(3, "phase", "flying"));
        let e = r.op("read deployment").unwrap_err();
        assert!(
            matches!(e, StoreError::Corrupt(ref m) if m.contains("phase") && m.contains("flying")),
            "{e}"
        );
    }

    #[test]
    fn other_errors_keep_their_operation() {
        let r: Result<(), _> = Err(rusqlite::Error::QueryReturnedNoRows);
        let e = r.op("read release").unwrap_err();
        assert!(matches!(
            e,
            StoreError::Sqlite {
                op: "read release",
                ..
            }
        ));
        assert!(e.to_string().contains("could not read release"));
    }
}
