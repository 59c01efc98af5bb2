//! Picking the certificate for a handshake by the name the client asked for (SNI), from a
//! table that rotation swaps whole: a handshake reads one table, an open connection keeps
//! the certificate it was served.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::load::Loaded;

/// The certificates of one listener by server name.
#[derive(Debug)]
pub(crate) struct CertTable {
    /// For clients without SNI or with a name no certificate has: the first one configured.
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertTable {
    /// The table of `certs`, the default first (at least one); a name listed twice goes to
    /// the first certificate listing it.
    pub(crate) fn new(certs: Vec<Loaded>) -> CertTable {
        let default = certs.first().expect("at least one certificate").key.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certs {
            for name in cert.names {
                let (map, name) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent.to_string()),
                    None => (&mut exact, name),
                };
                map.entry(name).or_insert_with(|| cert.key.clone());
            }
        }
        CertTable {
            default,
            exact,
            wildcard,
        }
    }

    /// The certificate for `server_name`.
    pub(crate) fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        // rustls hands SNI over lower-cased and without a trailing dot.
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

/// rustls's certificate resolver for one listener: the current table.
#[derive(Debug)]
pub(crate) struct Resolver {
    pub(crate) table: ArcSwap<CertTable>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.table.load().pick(hello.server_name()).clone())
    }
}
