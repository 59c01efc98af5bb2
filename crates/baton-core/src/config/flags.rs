//! `[flags]` (the OFREP listener) and `[apps.<name>.flags.<flag>]` (flag definitions, the
//! same in every environment of the app; `baton flag set` overrides one environment live).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::flags::{FlagSpec, valid_flag_name};

/// Most flags one app may define.
pub const MAX_FLAGS: usize = 1024;

/// `[flags]`: where OpenFeature clients evaluate flags (OFREP), apart from the API and the
/// apps' listeners. Absent, Baton serves no OFREP listener. Restart-only.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FlagsConfig {
    /// Listen address of the OFREP listener, e.g. `"127.0.0.1:7071"`.
    pub listen: SocketAddr,
}

/// Checks an app's `[apps.<name>.flags.*]`: `(key path under the app, message)`.
pub(super) fn validate(flags: &BTreeMap<String, FlagSpec>) -> Result<(), (Vec<String>, String)> {
    if flags.len() > MAX_FLAGS {
        return Err((
            vec!["flags".into()],
            format!("{} flags; at most {MAX_FLAGS} per app", flags.len()),
        ));
    }
    for (name, spec) in flags {
        if !valid_flag_name(name) {
            return Err((
                vec!["flags".into(), name.clone()],
                "flag names are 1 to 64 of a-z, A-Z, 0-9, '-', '_' and '.'".into(),
            ));
        }
        if let Err((key, message)) = spec.check() {
            return Err((vec!["flags".into(), name.clone(), key.into()], message));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const APP: &str = "[apps.web]\nlisten = \"127.0.0.1:8080\"\ncommand = [\"x\"]\n";

    #[test]
    fn flags_parse_and_bad_ones_name_file_line_col() {
        let ok = format!(
            "[flags]\nlisten = \"127.0.0.1:7071\"\n{APP}[apps.web.flags.new-checkout]\npercent = 10\nmatch = [{{ attribute = \"plan\", in = [\"pro\"] }}]\n"
        );
        let c = Config::parse(&ok, Path::new("baton.toml")).unwrap();
        assert_eq!(c.apps["web"].flags["new-checkout"].percent, 10.0);
        assert!(c.apps["web"].flags["new-checkout"].enabled);
        let bad = format!("{APP}[apps.web.flags.x]\npercent = 150\n");
        let e = Config::parse(&bad, Path::new("baton.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("baton.toml:5:") && e.contains("0 to 100"),
            "{e}"
        );
        let bad = format!("{APP}[apps.web.flags.x]\nmatch = [{{ attribute = \"a\" }}]\n");
        let e = Config::parse(&bad, Path::new("baton.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one of"), "{e}");
        let bad = format!("{APP}[apps.web.flags.x]\nprecent = 5\n");
        let e = Config::parse(&bad, Path::new("baton.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("precent"), "{e}");
        let clash = format!(
            "[api]\nlisten = \"127.0.0.1:7071\"\n[flags]\nlisten = \"127.0.0.1:7071\"\n{APP}"
        );
        let e = Config::parse(&clash, Path::new("baton.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("already used by api"), "{e}");
    }
}
