//! The demo service's options: what `demo.toml` holds, its validation and loading.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DemoError;

/// How a demo release behaves; stored as `demo.toml` next to the `baton-demo` executable.
///
/// Different releases of the demo differ only in these values, which is what lets tests
/// deploy a "bad" release (errors, latency, failing health) on purpose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoOptions {
    /// The version reported by every response, e.g. `1.2.0`. Must not be empty.
    pub version: String,
    /// Fraction of `GET /` answered with 500, in `[0, 1]`.
    #[serde(default)]
    pub error_rate: f64,
    /// Delay added to every `GET /`, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// When true, `GET /health` answers 503.
    #[serde(default)]
    pub unhealthy: bool,
    /// Delay before the listener is bound, in milliseconds.
    #[serde(default)]
    pub startup_ms: u64,
    /// The price `GET /item/{id}` answers (a release may answer differently there).
    #[serde(default = "default_item_price")]
    pub item_price: u64,
    /// When true, every request but `/health` and `/metrics` hangs (up to 10 minutes).
    #[serde(default)]
    pub hang: bool,
}

fn default_item_price() -> u64 {
    10
}

impl DemoOptions {
    /// A well-behaved release of `version`: no errors, no added latency, healthy, instant start.
    pub fn new(version: impl Into<String>) -> Self {
        DemoOptions {
            version: version.into(),
            error_rate: 0.0,
            latency_ms: 0,
            unhealthy: false,
            startup_ms: 0,
            item_price: default_item_price(),
            hang: false,
        }
    }

    /// Checks that `version` is non-empty and `error_rate` lies in `[0, 1]`.
    pub fn validate(&self) -> Result<(), DemoError> {
        if self.version.trim().is_empty() {
            return Err(DemoError::InvalidOption {
                field: "version",
                reason: "must not be empty; give the release's version, e.g. \"1.0.0\"".into(),
            });
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(DemoError::InvalidOption {
                field: "error_rate",
                reason: format!(
                    "{} is outside [0, 1]; use a fraction, e.g. 0.05 for 5 % errors",
                    self.error_rate
                ),
            });
        }
        Ok(())
    }

    /// Parses and validates TOML text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, DemoError> {
        let opts: DemoOptions = toml::from_str(text).map_err(|source| DemoError::Config {
            path: path.to_path_buf(),
            source,
        })?;
        opts.validate()?;
        Ok(opts)
    }

    /// Reads, parses and validates a `demo.toml` file.
    pub fn load(path: &Path) -> Result<Self, DemoError> {
        let text = std::fs::read_to_string(path).map_err(|e| DemoError::io("read", path, e))?;
        Self::from_toml(&text, path)
    }

    /// Renders the options as the text of a `demo.toml`.
    pub fn to_toml(&self) -> Result<String, DemoError> {
        Ok(toml::to_string(self)?)
    }
}

/// What a running service needs: the release's options and the instance's name.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceOptions {
    /// The release's behaviour.
    pub demo: DemoOptions,
    /// The instance name reported in responses (env `BATON_INSTANCE`, default `local`).
    pub instance: String,
}

impl ServiceOptions {
    /// Options for an instance called `local` running `demo`.
    pub fn new(demo: DemoOptions) -> Self {
        ServiceOptions {
            demo,
            instance: "local".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_keeps_every_field() {
        let opts = DemoOptions {
            version: "2.0.1".into(),
            error_rate: 0.25,
            latency_ms: 40,
            unhealthy: true,
            startup_ms: 300,
            item_price: 12,
            hang: true,
        };
        let text = opts.to_toml().unwrap();
        assert_eq!(
            DemoOptions::from_toml(&text, Path::new("demo.toml")).unwrap(),
            opts
        );
    }

    #[test]
    fn only_version_is_required() {
        let opts = DemoOptions::from_toml("version = \"1\"\n", Path::new("demo.toml")).unwrap();
        assert_eq!(opts, DemoOptions::new("1"));
    }

    #[test]
    fn rejects_bad_values_with_the_field_name() {
        let mut opts = DemoOptions::new("1");
        opts.error_rate = 1.5;
        assert!(
            opts.validate()
                .unwrap_err()
                .to_string()
                .contains("error_rate")
        );
        opts.error_rate = f64::NAN;
        assert!(opts.validate().is_err());
        let empty = DemoOptions::new(" ");
        assert!(
            empty
                .validate()
                .unwrap_err()
                .to_string()
                .contains("version")
        );
    }

    #[test]
    fn unknown_keys_are_errors_with_the_file_name() {
        let err = DemoOptions::from_toml(
            "version = \"1\"\nerror_rat = 0.1\n",
            Path::new("x/demo.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("x/demo.toml"), "{err}");
        assert!(err.contains("error_rat"), "{err}");
    }
}
