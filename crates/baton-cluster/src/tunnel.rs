//! The host tunnel (docs/DESIGN.md I9: nothing crosses hosts in plaintext): how the edge
//! reaches an instance on another host. The agent listens on its host's address (TLS 1.3
//! only, ALPN `baton-tunnel/1`) with a server certificate the cluster CA issued for the
//! host's name, and lets through only a client presenting the controller's certificate
//! ([`CONTROLLER_NAME`]): not another host's. After the handshake the edge sends one
//! [`preamble`] line naming the local port of the instance it wants; the agent connects to it
//! if (and only if) one of its instances has that port, answers [`ACK`], and then splices
//! bytes both ways. Anything else closes the connection.

use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::ca::{CONTROLLER_NAME, ClusterCa};
use crate::tls::{TlsError, provider, roots};

/// The ALPN protocol of the tunnel, apart from the cluster channel's.
pub const TUNNEL_ALPN: &[u8] = b"baton-tunnel/1";
/// What the agent answers once it is connected to the instance.
pub const ACK: &[u8; 3] = b"ok\n";
/// The preamble's first word.
const MAGIC: &str = "baton-tunnel";
/// Longest preamble read: anything longer is not one.
pub const MAX_PREAMBLE: usize = 32;

/// Why a preamble was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreambleError {
    /// The connection ended before the line did.
    #[error("the connection ended before the tunnel preamble was complete")]
    Ended,
    /// No newline within [`MAX_PREAMBLE`] bytes.
    #[error("the tunnel preamble is longer than {MAX_PREAMBLE} bytes")]
    TooLong,
    /// The line is not `baton-tunnel PORT`.
    #[error("not a tunnel preamble: {0:?} (expected `baton-tunnel PORT`)")]
    Malformed(String),
    /// Reading failed.
    #[error("reading the tunnel preamble: {0}")]
    Io(String),
}

/// The line the edge sends to reach the instance on local `port`.
pub fn preamble(port: u16) -> Vec<u8> {
    format!("{MAGIC} {port}\n").into_bytes()
}

/// Parses one preamble line (without its newline): `baton-tunnel PORT`, PORT in 1..=65535
/// written in plain decimal.
pub fn parse_preamble(line: &[u8]) -> Result<u16, PreambleError> {
    let malformed = || PreambleError::Malformed(String::from_utf8_lossy(line).into_owned());
    let text = std::str::from_utf8(line).map_err(|_| malformed())?;
    let port = text
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(malformed)?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(malformed()),
    }
}

/// Reads the preamble from `r`, at most [`MAX_PREAMBLE`] bytes, one at a time so that nothing
/// past its newline is taken (the bytes after it belong to the instance).
pub async fn read_preamble<R: AsyncRead + Unpin>(r: &mut R) -> Result<u16, PreambleError> {
    let mut line = Vec::with_capacity(MAX_PREAMBLE);
    loop {
        let byte = match r.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(PreambleError::Ended);
            }
            Err(e) => return Err(PreambleError::Io(e.to_string())),
        };
        if byte == b'\n' {
            return parse_preamble(&line);
        }
        if line.len() >= MAX_PREAMBLE {
            return Err(PreambleError::TooLong);
        }
        line.push(byte);
    }
}

/// The edge's config: verifies a host's tunnel against the cluster CA (for the host's name)
/// and presents the controller's certificate.
pub fn tunnel_client_config(ca: &ClusterCa) -> Result<ClientConfig, TlsError> {
    let issued = ca.controller_cert()?;
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca.cert_der())?, provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(issued.chain, issued.key)?;
    config.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
    Ok(config)
}

/// The name the edge verifies host `name`'s tunnel certificate for.
pub fn tunnel_server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_string()).map_err(|e| {
        TlsError::Rustls(rustls::Error::General(format!(
            "host name {name:?} is not a valid certificate name: {e}"
        )))
    })
}

/// TCP keepalive on a tunnel connection (both ends): a peer gone without a word (a host cut
/// off, powered down) is noticed in about 90 s and the connection's task ends, instead of
/// waiting for its bytes for ever.
pub fn keepalive(tcp: &tokio::net::TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(10))
        .with_retries(3);
    // Best effort: without it the connection still works, only a silent peer is noticed later.
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka);
}

/// The agent's tunnel certificate, set once the controller has issued it (`welcome`); until
/// then every handshake fails.
#[derive(Debug, Default)]
pub struct TunnelCert(RwLock<Option<Arc<CertifiedKey>>>);

impl TunnelCert {
    /// Serves `chain` with `key` from now on.
    pub fn set(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'static>,
    ) -> Result<(), TlsError> {
        let signing = provider().key_provider.load_private_key(key.clone_key())?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(CertifiedKey::new(chain, signing)));
        Ok(())
    }

    /// Whether a certificate is set.
    pub fn is_set(&self) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

impl ResolvesServerCert for TunnelCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The agent's config: TLS 1.3, a client certificate of the cluster CA required, `cert` as
/// its own. The client's name is checked after the handshake ([`is_controller`]).
pub fn tunnel_server_config(
    ca: &CertificateDer<'static>,
    cert: Arc<TunnelCert>,
) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider()).build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
    Ok(config)
}

/// Whether `leaf` (already verified against the cluster CA) names the controller: hosts'
/// certificates chain to the same CA and must not open another host's tunnel.
pub fn is_controller(leaf: &CertificateDer<'_>) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let name = ServerName::try_from(CONTROLLER_NAME).expect("a valid DNS name");
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

#[cfg(test)]
mod tests;
