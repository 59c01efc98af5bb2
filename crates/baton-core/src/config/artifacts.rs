//! `[artifacts]`: how large a release artifact may be, with its named defaults.

use serde::{Deserialize, Serialize};

/// Largest release upload (the HTTP body: metadata line plus archive), in bytes: 2 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 2 << 30;
/// Largest uncompressed archive, in bytes: 250 MiB (AWS Lambda's bound on an unzipped
/// deployment package is of the same order); raise it for larger artifacts.
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 250 << 20;
/// Most entries (files, directories, links) in one artifact.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// `[artifacts]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactsConfig {
    /// Largest release upload in bytes (413 beyond it).
    pub max_upload_bytes: u64,
    /// Largest uncompressed archive in bytes (hard links count as copies; 413 beyond it).
    pub max_unpacked_bytes: u64,
    /// Most entries in one artifact (413 beyond it).
    pub max_entries: u64,
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_unpacked_bytes: DEFAULT_MAX_UNPACKED_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl ArtifactsConfig {
    /// The first key with an impossible value, and why.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("max_upload_bytes", self.max_upload_bytes),
            ("max_unpacked_bytes", self.max_unpacked_bytes),
            ("max_entries", self.max_entries),
        ] {
            if value == 0 {
                return Err((
                    key,
                    "must be at least 1: 0 would refuse every release".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(text, Path::new("baton.toml"))
    }

    #[test]
    fn limits_default_and_can_be_raised() {
        assert_eq!(parse("").unwrap().artifacts, ArtifactsConfig::default());
        let c = parse("[artifacts]\nmax_unpacked_bytes = 4294967296\nmax_entries = 7\n").unwrap();
        assert_eq!(c.artifacts.max_unpacked_bytes, 4 << 30);
        assert_eq!(c.artifacts.max_entries, 7);
        assert_eq!(c.artifacts.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
    }

    #[test]
    fn a_bad_limit_names_file_line_col_and_key() {
        let e = parse("[artifacts]\nmax_upload_bytes = 1\nmax_entries = 0\n").unwrap_err();
        assert_eq!(
            (e.line, e.col, e.key.as_deref()),
            (3, 1, Some("artifacts.max_entries")),
            "{e}"
        );
        assert!(e.to_string().starts_with("baton.toml:3:1"), "{e}");
        assert!(e.message.contains("at least 1"), "{e}");

        let e = parse("[artifacts]\nmax_unpacked_bytes = \"2GiB\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("[artifacts]\nmax_size = 1\n").unwrap_err();
        assert!(e.to_string().contains("max_size"), "{e}");
    }
}
