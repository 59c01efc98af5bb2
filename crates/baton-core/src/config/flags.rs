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
