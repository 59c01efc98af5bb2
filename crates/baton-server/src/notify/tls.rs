//! TLS for `https://` webhooks: which CAs are trusted (the system's, or only a `ca_file`), the
//! handshake on a webhook's TCP connection, and handshake failures said with what to do.
//!
//! rustls with the ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`; the certificate must be
//! valid for the URL's host (SNI is sent for a name, not for an IP address, as RFC 6066 says).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, CertificateError, ClientConfig, RootCertStore};

/// Which CAs a webhook's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Trust {
    /// The operating system's store (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    System,
    /// Only the certificates in this PEM file.
    CaFile(PathBuf),
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::System => f.write_str("the system's CAs"),
            Trust::CaFile(path) => write!(f, "ca_file {}", path.display()),
        }
    }
}

/// Why trusted CAs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A `ca_file` that cannot be used.
    #[error("{path}: {reason}", path = path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, and what to give instead.
        reason: String,
    },
    /// The system store holds no certificate Baton can use.
    #[error(
        "no CA certificates found in the system store{detail}: install them (e.g. the ca-certificates package), or set ca_file to the PEM file of the webhook's CA"
    )]
    NoSystemRoots {
        /// What went wrong reading the store, if anything.
        detail: String,
    },
}

/// The client configs of one notifier's webhooks: the system store is read at most once.
#[derive(Default)]
pub(super) struct Trusts {
    system: Option<Arc<ClientConfig>>,
}

impl Trusts {
    /// The client config that trusts `trust`.
    pub fn config(&mut self, trust: &Trust) -> Result<Arc<ClientConfig>, TrustError> {
        match trust {
            Trust::CaFile(path) => Ok(client_config(read_ca_file(path)?)),
            Trust::System => {
                if self.system.is_none() {
                    self.system = Some(client_config(system_roots()?));
                }
                Ok(Arc::clone(self.system.as_ref().expect("set above")))
            }
        }
    }
}

/// Reads a PEM file of CA certificates; refuses one that is missing, not PEM or holds none.
pub(super) fn read_ca_file(path: &Path) -> Result<RootCertStore, TrustError> {
    let fail = |reason: String| TrustError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    const WHAT: &str = "give the PEM file (-----BEGIN CERTIFICATE-----) of the CA that signed the webhook's certificate";
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read it ({e}); {WHAT}")))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("it is not valid PEM ({e}); {WHAT}")))?;
    if certs.is_empty() {
        return Err(fail(format!("it holds no PEM certificate; {WHAT}")));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            fail(format!(
                "its certificate {} is not a usable X.509 certificate ({e}); {WHAT}",
                i + 1
            ))
        })?;
    }
    Ok(roots)
}

/// The operating system's trusted CAs, as `rustls-native-certs` finds them.
fn system_roots() -> Result<RootCertStore, TrustError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let detail = match found.errors.first() {
            Some(e) => format!(" ({e})"),
            None => String::new(),
        };
        return Err(TrustError::NoSystemRoots { detail });
    }
    Ok(roots)
}

fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// How one https webhook's connections are secured.
#[derive(Clone)]
pub(super) struct Tls {
    connector: TlsConnector,
    /// The name (or address) the certificate must be valid for.
    name: ServerName<'static>,
    trust: Trust,
}

impl Tls {
    /// TLS to `host` with `config`; `None` when `host` is neither a DNS name nor an address.
    pub fn new(config: Arc<ClientConfig>, host: &str, trust: Trust) -> Option<Tls> {
        let name = ServerName::try_from(host.to_owned()).ok()?;
        Some(Tls {
            connector: TlsConnector::from(config),
            name,
            trust,
        })
    }

    /// Runs the handshake on `tcp`: the certificate is checked against the trusted CAs and
    /// the host name.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, HandshakeError> {
        self.connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| self.explain(&e))
    }

    fn explain(&self, e: &std::io::Error) -> HandshakeError {
        let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
        let Some(tls) = tls else {
            return HandshakeError {
                reason: e.to_string(),
                hint: "the connection broke during the handshake: check that the webhook serves https on this port".into(),
            };
        };
        let name = self.name.to_str();
        let hint = match tls {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => match &self.trust {
                    Trust::System => "its certificate is not signed by a CA this system trusts: set ca_file in its [[notify]] to the PEM file of the CA that signed it (or add that CA to the system store)".to_string(),
                    Trust::CaFile(path) => format!(
                        "its certificate is not signed by the CA in ca_file {}: point ca_file at the PEM file of the CA that signed it",
                        path.display()
                    ),
                },
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                    "its certificate is not issued for {name:?}: use a host name the certificate names in the webhook URL, or reissue the certificate for {name:?}"
                ),
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => {
                    "its certificate is outside its validity period: renew it (or check this host's clock)".to_string()
                }
                _ => "the webhook's certificate was refused: fix or replace it".to_string(),
            },
            rustls::Error::InvalidMessage(_) => {
                "the webhook did not answer in TLS: check that it serves https on this port, or use http://".to_string()
            }
            _ => "check that the webhook serves https (TLS 1.2 or 1.3) on this port".to_string(),
        };
        HandshakeError {
            reason: tls.to_string(),
            hint,
        }
    }
}

/// A failed handshake: what rustls said, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed: {reason}; {hint}")]
pub(super) struct HandshakeError {
    reason: String,
    hint: String,
}
