//! Strings the config hands on to somewhere stricter than TOML: HTTP request lines and
//! headers (`health.path`, `metrics_path`, sticky and match names), command lines and
//! environment variables (`command`, `migrate`, `env`), and file paths (`data_dir`). A string
//! that the destination cannot carry is refused here, with its key, instead of failing later at
//! every health check, spawn or bind.
//!
//! Newlines stay allowed where the destination carries them: in a command word
//! (`["sh", "-c", "a\nb"]`) and in an environment value (a PEM certificate); NUL never is.

use std::collections::BTreeMap;
use std::path::Path;

use super::{AppConfig, CanaryConfig};

/// The dotted key of a problem and what to do about it.
pub(super) type Problem = (Vec<String>, String);

fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// `data_dir` becomes file paths: no NUL (no path can hold one), CR or LF.
pub(super) fn check_data_dir(dir: Option<&Path>) -> Result<(), Problem> {
    let Some(dir) = dir else { return Ok(()) };
    let bytes = dir.as_os_str().as_encoded_bytes();
    if bytes.iter().any(|b| matches!(b, b'\0' | b'\r' | b'\n')) {
        return Err((
            key(&["data_dir"]),
            format!("{dir:?} contains NUL, CR or LF; use a plain directory path"),
        ));
    }
    Ok(())
}

/// An app's strings: command lines, environment, the health-check path.
pub(super) fn check_app(name: &str, app: &AppConfig) -> Result<(), Problem> {
    for word in &app.command {
        if word.contains('\0') {
            return Err((
                key(&["apps", name, "command"]),
                format!("{word:?} contains NUL, which no command line can carry; remove it"),
            ));
        }
    }
    if let Some(m) = &app.migrate {
        for word in m.command.iter().chain(m.after.iter().flatten()) {
            if word.contains('\0') {
                return Err((
                    key(&["apps", name, "migrate"]),
                    format!("{word:?} contains NUL, which no command line can carry; remove it"),
                ));
            }
        }
    }
    check_env(&app.env, &["apps", name, "env"])?;
    for (env, o) in &app.environments {
        check_env(&o.env, &["apps", name, "environments", env, "env"])?;
    }
    if let Err(why) = check_request_path(&app.health.path) {
        return Err((key(&["apps", name, "health", "path"]), why));
    }
    if let Err(why) = check_request_path(&app.analysis.metrics_path) {
        return Err((key(&["apps", name, "analysis", "metrics_path"]), why));
    }
    check_canary_names(name, &app.canary)
}

fn check_env(env: &BTreeMap<String, String>, at: &[&str]) -> Result<(), Problem> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err((
                key(at),
                format!("{k:?} is not a valid environment variable name (no '=', no NUL)"),
            ));
        }
        if v.contains('\0') {
            let mut at = key(at);
            at.push(k.clone());
            return Err((
                at,
                format!("{v:?} contains NUL, which no environment variable can carry; remove it"),
            ));
        }
    }
    Ok(())
}

/// A path Baton sends as the target of a `GET`: parsed the way the request is built.
fn check_request_path(path: &str) -> Result<(), String> {
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "{path:?} contains a space or a control character (CR, LF, NUL, ...), which cannot \
             go into an HTTP request line; percent-encode it (e.g. %20)"
        ));
    }
    match http::Uri::try_from(path) {
        Ok(uri) if uri.authority().is_none() => Ok(()),
        _ => Err(format!(
            "{path:?} is not a valid HTTP request path; use a path like \"/health\" and \
             percent-encode anything else"
        )),
    }
}

/// Sticky and match names become header and cookie names; match values are compared with
/// header values, which can never hold control characters.
fn check_canary_names(app: &str, c: &CanaryConfig) -> Result<(), Problem> {
    let token = |s: &str| !s.is_empty() && http::HeaderName::from_bytes(s.as_bytes()).is_ok();
    let names = c
        .sticky
        .iter()
        .flat_map(|s| [("sticky", &s.header), ("sticky", &s.cookie)])
        .chain(
            c.matches
                .iter()
                .flat_map(|m| [("match", &m.header), ("match", &m.cookie)]),
        );
    for (at, name) in names {
        if let Some(name) = name
            && !token(name)
        {
            return Err((
                key(&["apps", app, "canary", at]),
                format!(
                    "{name:?} is not a valid header or cookie name: use letters, digits and \
                     !#$%&'*+-.^_`|~ (e.g. \"x-user-id\")"
                ),
            ));
        }
    }
    for m in &c.matches {
        for value in [&m.equals, &m.prefix].into_iter().flatten() {
            if http::HeaderValue::from_str(value).is_err() {
                return Err((
                    key(&["apps", app, "canary", "match"]),
                    format!(
                        "{value:?} contains a control character (CR, LF, NUL, ...) that no \
                         header or cookie can hold, so the rule could never match; remove it"
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_are_checked_as_the_probe_builds_them() {
        for ok in ["/health", "/health?deep=1", "/a/b%20c", "/"] {
            assert!(check_request_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/health\r\nX-Injected: 1",
            "/health\n",
            "/he\0alth",
            "/a b",
            "/a<b>",
        ] {
            let e = check_request_path(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
    }
}
