//! TLS at `baton up`: each unit's certificates (`[apps.<name>.tls]`), read and checked before
//! anything serves, so that a bad one stops the start with its file named; and the plain-HTTP
//! redirect listeners (`redirect_http`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use baton_core::config::{CertConfig, Config, Unit};
use baton_proxy::Tls;
use tokio::net::TcpListener;

/// `unit` with its `[apps.<name>.tls]` paths resolved against the config file's directory:
/// its certificates are read here and, for `host_port`, on every host.
pub(crate) fn resolve(mut unit: Unit, config_path: &Path) -> Unit {
    let base = config_path.parent().unwrap_or(Path::new(""));
    if let Some(tls) = &mut unit.config.tls {
        *tls = tls.resolved(base);
    }
    unit
}

/// A redirect listener to serve: the app, its listener, and the HTTPS port it sends to.
pub(crate) type Redirect = (String, TcpListener, u16);

/// The certificates of every unit with `tls`, by unit key, and the bound redirect listeners
/// (one per app, to its listener in the last environment it runs in).
pub(crate) async fn load(
    config_path: &Path,
    config: &Config,
    units: &BTreeMap<String, Unit>,
    listeners: &[(String, crate::listeners::Bound)],
    sockets: &baton_proxy::handoff::Sockets,
) -> anyhow::Result<(BTreeMap<String, Arc<Tls>>, Vec<Redirect>)> {
    let base = config_path.parent().unwrap_or(Path::new(""));
    let mut certs = BTreeMap::new();
    for unit in units.values() {
        if let Some(tls) = &unit.config.tls {
            let loaded = Tls::load(tls.certificates(base)).with_context(|| {
                format!("app {} in {}: [apps.{}.tls]", unit.app, unit.env, unit.app)
            })?;
            certs.insert(unit.key.clone(), loaded);
        }
    }
    let mut redirects = Vec::new();
    for (name, app) in &config.apps {
        let Some(addr) = app.tls.as_ref().and_then(|t| t.redirect_http) else {
            continue;
        };
        let last = config.environments.iter().rev().find_map(|env| {
            listeners.iter().find(|(key, _)| {
                units
                    .get(key)
                    .is_some_and(|u| &u.app == name && &u.env == env)
            })
        });
        let Some((_, https)) = last else { continue };
        let https_port = https.local_addr()?.port();
        let listener = sockets.listen(&format!("redirect:{name}"), addr).await.with_context(|| {
            format!("cannot listen on {addr} for app {name}'s redirect to HTTPS ([apps.{name}.tls] redirect_http): is another program using it? change the address in the config")
        })?;
        redirects.push((name.clone(), listener, https_port));
    }
    Ok((certs, redirects))
}

/// The certificates a reload puts in force, by unit key, checked before anything changes.
pub(crate) struct Prepared {
    /// Each TLS unit's certificate holder: the one its listener has (the new certificates go
    /// to it in [`Prepared::apply`], so open connections stay), or a new one.
    pub holders: BTreeMap<String, Arc<Tls>>,
    /// The new certificates of the holders that already serve.
    replace: Vec<(String, Arc<Tls>, Vec<CertConfig>)>,
}

/// Reads and checks the certificates of every unit of `units` with `tls` (also those whose
/// config did not change: `baton reload` re-reads the files). Any problem refuses the reload
/// with the file named; nothing is in force until [`Prepared::apply`].
pub(crate) fn prepare(
    units: &BTreeMap<String, Unit>,
    serving: impl Fn(&str) -> Option<Arc<Tls>>,
) -> anyhow::Result<Prepared> {
    let mut prepared = Prepared {
        holders: BTreeMap::new(),
        replace: Vec::new(),
    };
    for unit in units.values() {
        let Some(tls) = &unit.config.tls else {
            continue;
        };
        // Paths are absolute here (`resolve`).
        let certs = tls.certificates(Path::new(""));
        let checked = Tls::load(certs.clone()).with_context(|| {
            format!("app {} in {}: [apps.{}.tls]", unit.app, unit.env, unit.app)
        })?;
        match serving(&unit.key) {
            Some(holder) => {
                prepared.holders.insert(unit.key.clone(), holder.clone());
                prepared.replace.push((unit.key.clone(), holder, certs));
            }
            None => {
                prepared.holders.insert(unit.key.clone(), checked);
            }
        }
    }
    Ok(prepared)
}

impl Prepared {
    /// Gives the listeners that already serve TLS their new certificates (for new handshakes).
    pub(crate) fn apply(&self) {
        for (key, holder, certs) in &self.replace {
            // Checked in `prepare`; only a file changed since then can fail, and then the
            // certificates in force stay.
            if let Err(error) = holder.replace(certs.clone()) {
                tracing::error!(app = %key, %error, "TLS certificates changed during the reload; the previous ones keep serving");
            }
        }
    }
}
