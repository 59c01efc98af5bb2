//! TLS termination on an app's listener (docs/design-notes.md, "TLS termination"): the
//! certificates from their PEM files, picked by SNI, TLS 1.2 and 1.3 only, ALPN `h2` and
//! `http/1.1`; and their rotation: a changed file (polled) or [`Tls::reload`] swaps the
//! certificate table for new handshakes, leaving open connections alone. A certificate that
//! fails its checks never replaces a good one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use baton_core::config::CertConfig;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

mod load;
mod resolve;
mod validity;

pub use load::TlsError;
use load::{Files, Loaded};
use resolve::{CertTable, Resolver};

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are read for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// TLS sessions remembered for resumption (as nginx's `ssl_session_cache shared:SSL:1m`
/// holds about 4000).
const SESSION_CACHE: usize = 4096;

/// The protocols offered by ALPN, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// One listener's TLS: its settings for rustls and its certificates.
pub struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    provider: Arc<CryptoProvider>,
    /// The configured certificates and the bytes they were last loaded from.
    files: Mutex<(Vec<CertConfig>, Vec<Files>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("certs", &self.lock().0)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads and checks every certificate of `certs` (the default first): any problem is an
    /// error naming its file.
    pub fn load(certs: Vec<CertConfig>) -> Result<Arc<Tls>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (table, files) = read_all(&certs, &provider)?;
        let resolver = Arc::new(Resolver {
            table: ArcSwap::from_pointee(table),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Arc::new(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            provider,
            files: Mutex::new((certs, files)),
        }))
    }

    /// The acceptor for new connections.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the certificate files again and serves them to new handshakes; on any problem
    /// the current certificates stay and the error names the file.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certs = self.lock().0.clone();
        self.replace(certs)
    }

    /// Serves `certs` (a reloaded config's) to new handshakes; on any problem the current
    /// certificates stay and the error names the file.
    pub fn replace(&self, certs: Vec<CertConfig>) -> Result<(), TlsError> {
        let (table, files) = read_all(&certs, &self.provider)?;
        self.resolver.table.store(Arc::new(table));
        *self.lock() = (certs, files);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<CertConfig>, Vec<Files>)> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reloads whenever the files change, until `stop`: a change is taken once the files
    /// read the same twice in a row (a cert and its key are rarely replaced at one instant),
    /// and a bad one is logged once, naming the file.
    pub async fn watch(self: Arc<Self>, app: String, stop: CancellationToken) {
        let mut pending: Option<Vec<Files>> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(WATCH_INTERVAL) => {}
                () = stop.cancelled() => return,
            }
            let this = self.clone();
            let looked = tokio::task::spawn_blocking(move || {
                let tried = this.poll(&mut pending);
                (tried, pending)
            });
            let Ok((tried, still_pending)) = looked.await else {
                return;
            };
            pending = still_pending;
            match tried {
                Some(Ok(())) => {
                    tracing::info!(%app, "TLS certificates reloaded: new connections get them");
                }
                Some(Err(error)) => tracing::error!(
                    %app,
                    %error,
                    "TLS certificate change refused; the previous certificates keep serving"
                ),
                None => {}
            }
        }
    }

    /// One look at the files: `Some` when a settled change was tried.
    fn poll(&self, pending: &mut Option<Vec<Files>>) -> Option<Result<(), TlsError>> {
        let certs = self.lock().0.clone();
        // A file being replaced may be missing for an instant: try again next time.
        let now: Vec<Files> = certs
            .iter()
            .map(load::read)
            .collect::<Result<_, _>>()
            .ok()?;
        if now == self.lock().1 {
            *pending = None;
            return None;
        }
        if pending.as_ref() != Some(&now) {
            *pending = Some(now);
            return None;
        }
        *pending = None;
        let result = load_files(&certs, &now, &self.provider).map(|table| {
            self.resolver.table.store(Arc::new(table));
        });
        // Tried once: a bad change is not retried (nor logged) until the files change again.
        self.lock().1 = now;
        Some(result)
    }
}

fn read_all(
    certs: &[CertConfig],
    provider: &CryptoProvider,
) -> Result<(CertTable, Vec<Files>), TlsError> {
    let files = certs
        .iter()
        .map(load::read)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((load_files(certs, &files, provider)?, files))
}

fn load_files(
    certs: &[CertConfig],
    files: &[Files],
    provider: &CryptoProvider,
) -> Result<CertTable, TlsError> {
    let now = SystemTime::now();
    let loaded = certs
        .iter()
        .zip(files)
        .map(|(c, f)| load::load(c, f, provider, now))
        .collect::<Result<Vec<Loaded>, _>>()?;
    if loaded.is_empty() {
        return Err(TlsError::Setup("no certificate configured".into()));
    }
    // The first one serves every name the others do not; the others only their names.
    if let Some((c, _)) = certs
        .iter()
        .zip(&loaded)
        .skip(1)
        .find(|(_, l)| l.names.is_empty())
    {
        return Err(TlsError::File {
            path: c.cert.clone(),
            problem: "has no DNS names in its subject alternative names: list the names it serves in `names`".into(),
        });
    }
    Ok(CertTable::new(loaded))
}

#[cfg(test)]
mod tests;
