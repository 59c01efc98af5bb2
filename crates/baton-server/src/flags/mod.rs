//! The flag book: every app's flags in every environment as one immutable snapshot behind an
//! `ArcSwap` (`baton.toml`'s definitions, overridden by live changes from the store, with the
//! breakers' forced-off marks), and the OFREP tokens' scopes. Rebuilt whole on every change;
//! an evaluation reads it once and never touches the database.

pub mod api;
pub mod ofrep;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use baton_core::config::{StickyConfig, Unit, unit_key};
use baton_core::flags::FlagSpec;
use baton_core::model::Millis;
use baton_store::{FlagChange, FlagToken};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where a flag's definition in force comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    /// `[apps.<app>.flags.<name>]`.
    File,
    /// `baton flag set`.
    Live {
        /// Who set it.
        actor: String,
        /// When.
        at: Millis,
    },
}

/// One flag of one app in one environment.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagEntry {
    /// The definition in force.
    pub spec: FlagSpec,
    /// Where it comes from.
    pub source: Source,
    /// A breaker's reason while it holds the flag off.
    pub forced_off: Option<String>,
}

/// (app, environment).
pub type Scope = (String, String);

/// Everything an evaluation needs.
#[derive(Debug, Default)]
pub struct FlagSnapshot {
    /// Flags by scope, then by name.
    pub units: BTreeMap<Scope, BTreeMap<String, FlagEntry>>,
    /// OFREP token scopes by the sha256 (hex) of the secret.
    pub tokens: HashMap<String, Scope>,
}

#[derive(Default)]
struct Inputs {
    file: BTreeMap<Scope, BTreeMap<String, FlagSpec>>,
    overrides: Vec<FlagChange>,
    tokens: Vec<FlagToken>,
    forced: BTreeMap<(String, String, String), String>,
    /// Each unit's sticky key (`[apps.<app>.canary] sticky`), the proxy header's targeting key.
    sticky: BTreeMap<Scope, Option<StickyConfig>>,
}

/// The flag snapshot and what it is built from.
#[derive(Default)]
pub struct FlagBook {
    snapshot: ArcSwap<FlagSnapshot>,
    inputs: Mutex<Inputs>,
    /// Where the proxy's `X-Baton-Flags` header reads the flags.
    router: Option<Arc<baton_proxy::Router>>,
    /// Held from reading the store to putting what was read in force ([`load_stored`]), so
    /// an older read never lands after a newer one (a revoked token coming back).
    loading: Mutex<()>,
}

impl FlagBook {
    /// A book that also publishes every change to `router` (the proxy header's flags).
    pub fn new(router: Arc<baton_proxy::Router>) -> Self {
        Self {
            router: Some(router),
            ..Self::default()
        }
    }

    /// The snapshot in force: load it once per request.
    pub fn snapshot(&self) -> Arc<FlagSnapshot> {
        self.snapshot.load_full()
    }

    /// Takes the flag definitions of `units` (the config in force).
    pub fn set_config<'a>(&self, units: impl IntoIterator<Item = &'a Unit>) {
        let mut file = BTreeMap::new();
        let mut sticky = BTreeMap::new();
        for u in units {
            let scope = (u.app.clone(), u.env.clone());
            file.insert(scope.clone(), u.config.flags.clone());
            sticky.insert(scope, u.config.canary.sticky.clone());
        }
        self.update(|i| {
            i.file = file;
            i.sticky = sticky;
        });
    }

    /// Takes the store's live changes and tokens.
    pub fn set_stored(&self, overrides: Vec<FlagChange>, tokens: Vec<FlagToken>) {
        self.update(|i| {
            i.overrides = overrides;
            i.tokens = tokens;
        });
    }

    /// Holds flag `flag` of `app` in `env` off with `reason` (a breaker opened), or lets it
    /// go (`None`). OFREP and the proxy header answer `false` with reason `DISABLED` while it
    /// holds, and `baton flags` shows the reason. A flag not (yet) defined is marked too.
    pub fn force_off(&self, app: &str, env: &str, flag: &str, reason: Option<&str>) {
        let key = (app.to_string(), env.to_string(), flag.to_string());
        self.update(|i| match reason {
            Some(r) => {
                i.forced.insert(key, r.to_string());
            }
            None => {
                i.forced.remove(&key);
            }
        });
    }

    fn update(&self, change: impl FnOnce(&mut Inputs)) {
        let mut inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut inputs);
        let snapshot = build(&inputs);
        if let Some(router) = &self.router {
            router.publish_flags(proxy_table(&snapshot, &inputs.sticky));
        }
        self.snapshot.store(Arc::new(snapshot));
    }
}

/// The proxy's view: every unit's flags with its sticky key.
fn proxy_table(
    snapshot: &FlagSnapshot,
    sticky: &BTreeMap<Scope, Option<StickyConfig>>,
) -> baton_proxy::FlagTable {
    let mut table = baton_proxy::FlagTable::new();
    for ((app, env), flags) in &snapshot.units {
        let key = sticky.get(&(app.clone(), env.clone())).cloned().flatten();
        let app_flags = baton_proxy::AppFlags {
            key_header: key
                .as_ref()
                .and_then(|k| k.header.as_deref())
                .and_then(|h| h.parse().ok()),
            key_cookie: key.and_then(|k| k.cookie),
            flags: flags
                .iter()
                .map(|(n, e)| (n.clone(), e.spec.clone(), e.forced_off.clone()))
                .collect(),
        };
        table.insert(unit_key(app, env), Arc::new(app_flags));
    }
    table
}

fn build(i: &Inputs) -> FlagSnapshot {
    let mut units: BTreeMap<Scope, BTreeMap<String, FlagEntry>> = BTreeMap::new();
    for (scope, flags) in &i.file {
        let entries = flags.iter().map(|(name, spec)| {
            let entry = FlagEntry {
                spec: spec.clone(),
                source: Source::File,
                forced_off: None,
            };
            (name.clone(), entry)
        });
        units.insert(scope.clone(), entries.collect());
    }
    for c in &i.overrides {
        // A change for an app or environment the config no longer has waits in the store.
        let Some(flags) = units.get_mut(&(c.app.clone(), c.env.clone())) else {
            continue;
        };
        let spec = c.spec.as_deref().and_then(|s| serde_json::from_str(s).ok());
        match spec {
            Some(spec) => {
                let source = Source::Live {
                    actor: c.actor.clone(),
                    at: c.at,
                };
                flags.insert(
                    c.flag.clone(),
                    FlagEntry {
                        spec,
                        source,
                        forced_off: None,
                    },
                );
            }
            None if c.spec.is_none() => {
                let file = i.file.get(&(c.app.clone(), c.env.clone()));
                if file.and_then(|f| f.get(&c.flag)).is_none() {
                    flags.remove(&c.flag);
                }
            }
            None => {
                tracing::error!(app = %c.app, env = %c.env, flag = %c.flag, "a stored flag change does not parse; the file's definition stays in force")
            }
        }
    }
    for ((app, env, flag), why) in &i.forced {
        if let Some(e) = units
            .get_mut(&(app.clone(), env.clone()))
            .and_then(|f| f.get_mut(flag))
        {
            e.forced_off = Some(why.clone());
        }
    }
    let tokens = i
        .tokens
        .iter()
        .map(|t| (t.secret_sha256.clone(), (t.app.clone(), t.env.clone())))
        .collect();
    FlagSnapshot { units, tokens }
}

/// The hex sha256 of a token's secret, as stored.
pub fn secret_sha256(secret: &[u8]) -> String {
    Sha256::digest(secret)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the store's flag changes and tokens into the book (at start and after a change).
pub fn load_stored(
    book: &FlagBook,
    store: &baton_store::Store,
) -> Result<(), baton_store::StoreError> {
    let _one_at_a_time = book.loading.lock().unwrap_or_else(|e| e.into_inner());
    book.set_stored(store.flag_overrides()?, store.flag_tokens()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::flags::{JsonContext, Reason, evaluate};

    fn book() -> FlagBook {
        let b = FlagBook::default();
        let spec = FlagSpec {
            enabled: true,
            percent: 100.0,
            rules: vec![],
        };
        b.update(|i| {
            i.file.insert(
                ("web".into(), "production".into()),
                [("checkout".to_string(), spec)].into(),
            );
        });
        b
    }

    fn eval(b: &FlagBook) -> (bool, Reason, Option<String>) {
        let snap = b.snapshot();
        let e = &snap.units[&("web".to_string(), "production".to_string())]["checkout"];
        let ctx = JsonContext::new(None).unwrap();
        let r = evaluate("checkout", &e.spec, e.forced_off.as_deref(), &ctx).unwrap();
        (r.value, r.reason, r.forced_off)
    }

    #[test]
    fn a_breaker_forces_a_flag_off_until_cleared() {
        let b = book();
        assert_eq!(eval(&b), (true, Reason::Static, None));
        b.force_off("web", "production", "checkout", Some("breaker checkout"));
        assert_eq!(
            eval(&b),
            (false, Reason::Disabled, Some("breaker checkout".into()))
        );
        // Survives a rebuild from new stored state.
        b.set_stored(vec![], vec![]);
        assert!(!eval(&b).0);
        b.force_off("web", "production", "checkout", None);
        assert_eq!(eval(&b), (true, Reason::Static, None));
    }

    #[test]
    fn the_newest_live_change_overrides_the_file_and_a_reset_restores_it() {
        let b = book();
        let change = |spec: Option<&str>| FlagChange {
            app: "web".into(),
            env: "production".into(),
            flag: "checkout".into(),
            spec: spec.map(String::from),
            actor: "alice".into(),
            at: 5,
        };
        b.set_stored(vec![change(Some(r#"{"enabled": false}"#))], vec![]);
        assert_eq!(eval(&b).1, Reason::Disabled);
        let snap = b.snapshot();
        let e = &snap.units[&("web".to_string(), "production".to_string())]["checkout"];
        assert_eq!(
            e.source,
            Source::Live {
                actor: "alice".into(),
                at: 5
            }
        );
        b.set_stored(vec![change(None)], vec![]);
        assert_eq!(eval(&b).1, Reason::Static);
    }
}
