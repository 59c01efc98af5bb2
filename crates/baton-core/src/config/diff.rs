//! What a config reload changes: units (one app in one environment) added, removed or changed
//! (which keys), hosts added, removed or changed, and the keys that only a restart can apply.
//!
//! Pure: `baton-server`'s reload applies the difference and records it as one event.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::{Config, Unit, units};

/// The top-level keys bound or opened once at start: a reload that changes one is refused,
/// with the key named, and the running daemon keeps its config.
pub const RESTART_ONLY: [&str; 5] = ["data_dir", "api", "cluster", "notify", "flags"];

/// The difference between the config in force and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    /// Units that appear, by key (`app@env`).
    pub added: Vec<String>,
    /// Units that go away, by key.
    pub removed: Vec<String>,
    /// Units whose settings change, with the dotted keys that change (`instances`,
    /// `canary.steps`).
    pub changed: BTreeMap<String, Vec<String>>,
    /// Units whose listen address changes (also in `changed`).
    pub moved: Vec<String>,
    /// Hosts that appear, go away or change (`+name`, `-name`, `~name`).
    pub hosts: Vec<String>,
    /// Other top-level keys that change (`environments`, `promotion`, `artifacts`).
    pub other: Vec<String>,
}

impl ConfigDiff {
    /// Nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.hosts.is_empty()
            && self.other.is_empty()
    }
}

impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing changed");
        }
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added {}", self.added.join(", ")));
        }
        if !self.removed.is_empty() {
            parts.push(format!("removed {}", self.removed.join(", ")));
        }
        for (unit, keys) in &self.changed {
            parts.push(format!("changed {unit} ({})", keys.join(", ")));
        }
        if !self.hosts.is_empty() {
            parts.push(format!("hosts {}", self.hosts.join(", ")));
        }
        if !self.other.is_empty() {
            parts.push(format!("changed {}", self.other.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// The first restart-only key that differs between `old` and `new`, if any.
pub fn restart_only_change(old: &Config, new: &Config) -> Option<&'static str> {
    let (old, new) = (to_value(old), to_value(new));
    RESTART_ONLY
        .into_iter()
        .find(|key| old.get(*key) != new.get(*key))
}

/// What changes from `old` to `new`.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let before: BTreeMap<String, Unit> = units(&old.environments, &old.apps)
        .into_iter()
        .map(|u| (u.key.clone(), u))
        .collect();
    let after: BTreeMap<String, Unit> = units(&new.environments, &new.apps)
        .into_iter()
        .map(|u| (u.key.clone(), u))
        .collect();
    let mut out = ConfigDiff {
        added: after
            .keys()
            .filter(|k| !before.contains_key(*k))
            .cloned()
            .collect(),
        removed: before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .cloned()
            .collect(),
        ..ConfigDiff::default()
    };
    for (key, a) in &after {
        let Some(b) = before.get(key) else { continue };
        let keys = changed_keys(&unit_value(b), &unit_value(a));
        if !keys.is_empty() {
            out.changed.insert(key.clone(), keys);
        }
        if a.config.listen != b.config.listen {
            out.moved.push(key.clone());
        }
    }
    for (name, h) in &new.hosts {
        match old.hosts.get(name) {
            None => out.hosts.push(format!("+{name}")),
            Some(o) if to_value(o) != to_value(h) => out.hosts.push(format!("~{name}")),
            Some(_) => {}
        }
    }
    for name in old.hosts.keys().filter(|n| !new.hosts.contains_key(*n)) {
        out.hosts.push(format!("-{name}"));
    }
    let (o, n) = (to_value(old), to_value(new));
    for key in ["environments", "promotion", "artifacts"] {
        if o.get(key) != n.get(key) {
            out.other.push(key.to_string());
        }
    }
    out
}

fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("the config serializes")
}

/// A unit's resolved settings without the per-environment overrides (already applied).
fn unit_value(u: &Unit) -> Value {
    let mut v = to_value(&u.config);
    if let Value::Object(map) = &mut v {
        map.remove("environments");
    }
    v
}

/// The dotted keys whose values differ; a table that appears or goes is one key.
fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => walk(&path, x, y, out),
                    _ => out.push(path),
                }
            }
        }
        _ if old != new => out.push(prefix.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
[apps.web]
listen = "127.0.0.1:8080"
instances = 2
command = ["./web"]

[apps.api]
listen = "127.0.0.1:8081"
command = ["./api"]

[apps.old]
listen = "127.0.0.1:8082"
command = ["./old"]
"#;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("baton.toml")).unwrap()
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let d = diff(&parse(BASE), &parse(BASE));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.to_string(), "nothing changed");
    }

    #[test]
    fn units_added_removed_and_changed_are_named_with_their_keys() {
        let new = BASE
            .replace(
                "[apps.old]\nlisten = \"127.0.0.1:8082\"\ncommand = [\"./old\"]\n",
                "[apps.new]\nlisten = \"127.0.0.1:8083\"\ncommand = [\"./new\"]\n",
            )
            .replace(
                "command = [\"./api\"]",
                "command = [\"./api\"]\ninstances = 3\n[apps.api.canary]\nsteps = [{ weight = 50 }, { weight = 100 }]",
            );
        let d = diff(&parse(BASE), &parse(&new));
        assert_eq!(d.added, ["new@production"]);
        assert_eq!(d.removed, ["old@production"]);
        assert_eq!(
            d.changed.get("api@production").unwrap(),
            &["canary.steps", "instances"]
        );
        assert!(!d.changed.contains_key("web@production"), "{d:?}");
        assert!(d.moved.is_empty());
        assert_eq!(
            d.to_string(),
            "added new@production; removed old@production; changed api@production (canary.steps, instances)"
        );
    }

    #[test]
    fn a_new_listen_address_is_a_move() {
        let new = BASE.replace("127.0.0.1:8080", "127.0.0.1:9090");
        let d = diff(&parse(BASE), &parse(&new));
        assert_eq!(d.moved, ["web@production"]);
        assert_eq!(d.changed.get("web@production").unwrap(), &["listen"]);
    }

    #[test]
    fn an_environment_override_changes_only_its_unit() {
        let envs = format!(
            "environments = [\"staging\", \"production\"]\n{BASE}\n[apps.web.environments.staging]\nlisten = \"127.0.0.1:9080\"\n"
        );
        let changed = envs.replace(
            "listen = \"127.0.0.1:9080\"\n",
            "listen = \"127.0.0.1:9080\"\ninstances = 4\n",
        );
        let d = diff(&parse(&envs), &parse(&changed));
        assert_eq!(d.changed.len(), 1, "{d:?}");
        assert_eq!(d.changed.get("web@staging").unwrap(), &["instances"]);
    }

    #[test]
    fn hosts_and_restart_only_keys_are_told_apart() {
        let old = parse(BASE);
        let api = parse(&format!("[api]\nlisten = \"127.0.0.1:7071\"\n{BASE}"));
        assert_eq!(restart_only_change(&old, &api), Some("api"));
        assert_eq!(restart_only_change(&old, &parse(BASE)), None);
        let data = parse(&format!("data_dir = \"elsewhere\"\n{BASE}"));
        assert_eq!(restart_only_change(&old, &data), Some("data_dir"));
        let soak = parse(&format!("[promotion]\nsoak = \"1m\"\n{BASE}"));
        assert_eq!(restart_only_change(&old, &soak), None);
        assert_eq!(diff(&old, &soak).other, ["promotion"]);
    }

    #[test]
    fn a_units_config_round_trips_through_json_as_deployments_record_it() {
        let text = format!(
            "{BASE}\n[apps.web.canary]\nsteps = [{{ weight = 5, pause = \"30s\" }}, {{ weight = 100 }}]\n[apps.web.health]\ndeadline = \"90s\"\n"
        );
        for u in parse(&text).units() {
            let json = serde_json::to_string(&u.config).unwrap();
            let back: super::super::AppConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(to_value(&back), to_value(&u.config), "{json}");
        }
    }
}
