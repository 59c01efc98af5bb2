//! The error type of this crate: bad demo options, unreadable config, failed artifact writes.

use std::path::PathBuf;

/// Everything that can go wrong while writing an artifact or loading the demo config.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// An option is out of range; `field` names it, `reason` says what is allowed.
    #[error("invalid demo option `{field}`: {reason}")]
    InvalidOption {
        /// The option's name as written in `demo.toml`.
        field: &'static str,
        /// What was wrong and what is accepted instead.
        reason: String,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "copy the executable to".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `demo.toml` is not valid TOML or has unknown or mistyped keys.
    #[error("invalid demo config {}: {source}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// The options could not be rendered as TOML (should not happen for valid options).
    #[error("cannot render demo options as TOML: {0}")]
    Render(#[from] toml::ser::Error),
}

impl DemoError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        DemoError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
