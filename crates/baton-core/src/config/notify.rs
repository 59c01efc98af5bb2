//! `[[notify]]`: the webhooks that receive deployment events, their checks and where an error
//! about one of them points.
//!
//! The CA file itself is read by the daemon (this crate reads no files); [`notify_error`] lets
//! it report a bad one at the key that names it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::span::locate;

/// `[[notify]]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// An `http://` or `https://` URL that receives every deployment event as a JSON POST.
    pub webhook: String,
    /// For an `https://` webhook: a PEM file with the CA (or CAs) to trust instead of the
    /// system's; relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl NotifyConfig {
    /// Whether the webhook is an `https://` URL.
    pub fn is_https(&self) -> bool {
        has_scheme(&self.webhook, "https://")
    }

    /// `ca_file` resolved against the directory holding the config file, like `data_dir`.
    pub fn ca_file_path(&self, config_file: &Path) -> Option<PathBuf> {
        let ca = self.ca_file.as_ref()?;
        if ca.is_absolute() {
            return Some(ca.clone());
        }
        let base = config_file.parent().unwrap_or(Path::new(""));
        Some(base.join(ca))
    }
}

fn has_scheme(url: &str, scheme: &str) -> bool {
    url.get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
}

/// Checks every `[[notify]]` entry; the first problem is returned at its key.
pub(super) fn validate(
    notify: &[NotifyConfig],
    text: &str,
    file: &Path,
) -> Result<(), ConfigError> {
    for (i, n) in notify.iter().enumerate() {
        let spaces = n
            .webhook
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
        let scheme = has_scheme(&n.webhook, "http://") || n.is_https();
        if !scheme || spaces {
            return Err(notify_error(
                text,
                file,
                i,
                "webhook",
                format!(
                    "{:?} must be an http:// or https:// URL without spaces or control characters (percent-encode them)",
                    n.webhook
                ),
            ));
        }
        let Some(ca) = &n.ca_file else { continue };
        let message = if ca.as_os_str().is_empty() {
            "is empty: give the path of a PEM file with the CA that signed the webhook's certificate, or leave ca_file out to trust the system's CAs"
        } else if ca.as_os_str().as_encoded_bytes().contains(&0) {
            "contains a NUL byte: give a path a file can have"
        } else if !n.is_https() {
            "is only used by https:// webhooks: remove it, or make the webhook https://"
        } else {
            continue;
        };
        return Err(notify_error(text, file, i, "ca_file", message.to_string()));
    }
    Ok(())
}

/// An error about `key` of the `index`-th `[[notify]]` entry, pointing at where that key is
/// written (or at the entry's header when the key is not there).
pub fn notify_error(
    text: &str,
    file: &Path,
    index: usize,
    key: &str,
    message: String,
) -> ConfigError {
    let (line, col) =
        locate_entry(text, index, key).unwrap_or_else(|| locate(text, &["notify", key]));
    ConfigError {
        file: file.to_path_buf(),
        line,
        col,
        key: Some(format!("notify[{index}].{key}")),
        message,
    }
}

/// Where `key` of the `index`-th `[[notify]]` table is written; `None` when the entries are
/// not written as `[[notify]]` tables (e.g. `notify = [{ ... }]`).
fn locate_entry(text: &str, index: usize, key: &str) -> Option<(usize, usize)> {
    let mut seen = 0;
    let mut header = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let indent = raw.len() - raw.trim_start().len() + 1;
        if line.starts_with('[') {
            if header.is_some() {
                break;
            }
            let name = line.split('#').next().unwrap_or("").trim();
            let is_notify = name
                .strip_prefix("[[")
                .and_then(|n| n.strip_suffix("]]"))
                .is_some_and(|n| n.trim() == "notify");
            if is_notify {
                if seen == index {
                    header = Some((i + 1, indent));
                }
                seen += 1;
            }
            continue;
        }
        if header.is_some()
            && line
                .split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        {
            return Some((i + 1, indent));
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/baton/baton.toml"))
    }

    const TWO: &str = "[[notify]]\nwebhook = \"http://127.0.0.1:9000/a\"\n\n[[notify]]\nwebhook = \"https://hooks.example/b\"\nca_file = \"hooks-ca.pem\"\n";

    #[test]
    fn https_webhooks_with_a_ca_file_parse_and_resolve_it_next_to_the_config() {
        let c = parse(TWO).unwrap();
        assert!(!c.notify[0].is_https() && c.notify[1].is_https());
        let file = Path::new("/etc/baton/baton.toml");
        assert_eq!(c.notify[0].ca_file_path(file), None);
        assert_eq!(
            c.notify[1].ca_file_path(file),
            Some(PathBuf::from("/etc/baton/hooks-ca.pem"))
        );
        let abs = NotifyConfig {
            ca_file: Some("/srv/ca.pem".into()),
            ..NotifyConfig::default()
        };
        assert_eq!(abs.ca_file_path(file), Some(PathBuf::from("/srv/ca.pem")));
    }

    #[test]
    fn a_ca_file_on_an_http_webhook_or_empty_is_refused_at_its_line() {
        let text = TWO.replace("https://hooks", "http://hooks");
        let e = parse(&text).unwrap_err();
        assert_eq!((e.line, e.col), (6, 1), "{e}");
        assert_eq!(e.key.as_deref(), Some("notify[1].ca_file"));
        assert!(e.message.contains("only used by https://"), "{e}");
        let e = parse(&TWO.replace("hooks-ca.pem", "")).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (6, Some("notify[1].ca_file")));
    }

    #[test]
    fn a_bad_scheme_points_at_the_right_entry() {
        let e = parse(&TWO.replace("https://hooks", "ftp://hooks")).unwrap_err();
        assert_eq!((e.line, e.col), (5, 1), "{e}");
        assert_eq!(e.key.as_deref(), Some("notify[1].webhook"));
    }

    #[test]
    fn errors_found_later_point_at_the_key_or_the_entry() {
        let file = Path::new("baton.toml");
        let e = notify_error(TWO, file, 1, "ca_file", "unreadable".into());
        assert_eq!(
            e.to_string(),
            "baton.toml:6:1: notify[1].ca_file: unreadable"
        );
        let e = notify_error(TWO, file, 0, "ca_file", "x".into());
        assert_eq!((e.line, e.col), (1, 1), "the entry's header: {e}");
        let inline = "notify = [{ webhook = \"https://h/\", ca_file = \"ca.pem\" }]\n";
        let e = notify_error(inline, file, 0, "ca_file", "x".into());
        assert_eq!(e.line, 1, "{e}");
    }
}
