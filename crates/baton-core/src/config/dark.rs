//! `[apps.<name>.dark]`: how a dark launch (`--strategy dark`) copies requests to the new
//! release, compares its answers with production's, and judges the differences.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// The header every copy carries unless configured otherwise.
pub const DEFAULT_SHADOW_HEADER: &str = "X-Baton-Shadow";

/// `[apps.<name>.dark]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DarkConfig {
    /// Fraction of eligible requests copied to the dark release, in `[0, 1]`.
    pub fraction: f64,
    /// The header (value `1`) every copy carries, so the app can keep copies out of
    /// analytics, billing and emails.
    pub header: String,
    /// Copy every method (dark write), not only GET, HEAD and OPTIONS. Needs `env` to give
    /// the dark release its own datastore.
    pub write: bool,
    /// Environment added to (and overriding) the app's `env` for the dark release's instances
    /// while they take copies: its own datastore.
    pub env: BTreeMap<String, String>,
    /// Response headers compared besides status and body (lower case).
    pub compare_headers: Vec<String>,
    /// Longest wait for a copy's answer; a later one is dropped and counted.
    pub timeout: Duration,
    /// Fraction of copies also sent to a second stable instance to learn which fields differ
    /// between two stable answers (noise); the first 20 of each route always are.
    pub noise_sample: f64,
    /// Fail the deployment when more than this fraction of compared copies differ; none: the
    /// differences are reported, never judged.
    pub max_diff_rate: Option<f64>,
    /// Compared copies needed before `max_diff_rate` judges.
    pub min_requests: u64,
    /// How long the dark step holds before the deployment continues as a canary (with a
    /// passing verdict); none: until `baton promote`.
    pub duration: Option<Duration>,
}

impl Default for DarkConfig {
    fn default() -> Self {
        DarkConfig {
            fraction: 1.0,
            header: DEFAULT_SHADOW_HEADER.to_string(),
            write: false,
            env: BTreeMap::new(),
            compare_headers: vec!["content-type".to_string()],
            timeout: Duration::from_secs(5),
            noise_sample: 0.1,
            max_diff_rate: None,
            min_requests: 50,
            duration: None,
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks `[apps.<name>.dark]` against the app's own `env`: the key at fault and why.
pub fn validate_dark(
    d: &DarkConfig,
    app_env: &BTreeMap<String, String>,
) -> Result<(), (&'static str, String)> {
    let fraction = |key, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err((key, format!("{v} is not a fraction between 0 and 1")))
        }
    };
    fraction("fraction", d.fraction)?;
    fraction("noise_sample", d.noise_sample)?;
    if let Some(r) = d.max_diff_rate {
        fraction("max_diff_rate", r)?;
    }
    if !is_token(&d.header) {
        return Err((
            "header",
            format!(
                "{:?} is not a header name: use letters, digits and '-', e.g. \"{DEFAULT_SHADOW_HEADER}\"",
                d.header
            ),
        ));
    }
    if let Some(h) = d.compare_headers.iter().find(|h| !is_token(h)) {
        return Err((
            "compare_headers",
            format!("{h:?} is not a header name: use letters, digits and '-'"),
        ));
    }
    if d.timeout.as_millis() < 10 {
        return Err(("timeout", "must be at least 10ms".into()));
    }
    if d.write && !own_datastore(d, app_env) {
        return Err((
            "write",
            "dark write copies POST, PUT, PATCH and DELETE to the dark release; against production's datastore each would run twice (double charges, duplicate rows, two emails). Give the dark release its own datastore in [apps.<name>.dark] env (e.g. DATABASE_URL), different from the app's env, or leave write = false (dark read: GET, HEAD, OPTIONS only)".into(),
        ));
    }
    Ok(())
}

/// Whether the dark release runs with its own config: an `env` entry that differs from the
/// app's.
pub fn own_datastore(d: &DarkConfig, app_env: &BTreeMap<String, String>) -> bool {
    d.env.iter().any(|(k, v)| app_env.get(k) != Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn write_needs_a_datastore_of_its_own() {
        let app = env(&[("DATABASE_URL", "postgres://prod")]);
        let mut d = DarkConfig {
            write: true,
            ..DarkConfig::default()
        };
        let (key, why) = validate_dark(&d, &app).unwrap_err();
        assert_eq!(key, "write");
        assert!(why.contains("double charges"), "{why}");
        // The same value as production's is not a datastore of its own.
        d.env = env(&[("DATABASE_URL", "postgres://prod")]);
        assert_eq!(validate_dark(&d, &app).unwrap_err().0, "write");
        d.env = env(&[("DATABASE_URL", "postgres://dark")]);
        assert!(validate_dark(&d, &app).is_ok());
    }

    #[test]
    fn ranges_and_names() {
        let ok = DarkConfig::default();
        assert!(validate_dark(&ok, &BTreeMap::new()).is_ok());
        for (d, key) in [
            (
                DarkConfig {
                    fraction: 1.5,
                    ..ok.clone()
                },
                "fraction",
            ),
            (
                DarkConfig {
                    max_diff_rate: Some(f64::NAN),
                    ..ok.clone()
                },
                "max_diff_rate",
            ),
            (
                DarkConfig {
                    header: "X Shadow".into(),
                    ..ok.clone()
                },
                "header",
            ),
            (
                DarkConfig {
                    compare_headers: vec!["".into()],
                    ..ok.clone()
                },
                "compare_headers",
            ),
        ] {
            assert_eq!(validate_dark(&d, &BTreeMap::new()).unwrap_err().0, key);
        }
    }
}
