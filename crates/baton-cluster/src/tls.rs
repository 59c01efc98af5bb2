//! The rustls configs of both ends: TLS 1.3 only, ALPN `baton-cluster/1`, the ring provider.
//!
//! - The controller presents its [`CONTROLLER_NAME`] certificate with the CA in its chain, and
//!   verifies client certificates against the cluster CA. A client without a certificate is
//!   let through the handshake only so that it can send `join`; the controller refuses any
//!   other message from it.
//! - A joining host verifies the controller against the pinned CA ([`PinnedCa`]).
//! - A joined host verifies the controller against its stored CA and presents its own
//!   certificate.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::ca::{CONTROLLER_NAME, CaError, ClusterCa};
use crate::fingerprint::Fingerprint;
use crate::pin::PinnedCa;

/// The ALPN protocol both ends require.
pub const ALPN: &[u8] = b"baton-cluster/1";

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused a certificate, key or setting.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("TLS setup: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    /// The controller certificate could not be issued.
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// The ring crypto provider every config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The name a host verifies the controller's certificate for.
pub fn controller_name() -> ServerName<'static> {
    ServerName::try_from(CONTROLLER_NAME).expect("a valid DNS name")
}

pub(crate) fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    Ok(Arc::new(roots))
}

/// The controller's config, with a fresh server certificate issued by `ca`.
pub fn controller_config(ca: &ClusterCa) -> Result<ServerConfig, TlsError> {
    let issued = ca.controller_cert()?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca.cert_der())?, provider())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(issued.chain, issued.key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A joining host's config: trusts only the CA with fingerprint `pin`; no client certificate.
pub fn join_config(pin: Fingerprint) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa::new(pin, provider())))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A joined host's config: trusts only the cluster CA `ca`, presents `chain` with `key`.
pub fn agent_config(
    ca: &CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A failed handshake or connection, said for a person: rustls shows the verifiers' own
/// errors (like the pin mismatch) by their `Debug`, so those are unwrapped to their message.
pub fn describe_io_error(e: &std::io::Error) -> String {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            other.0.to_string()
        }
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// A real TLS handshake over an in-memory pipe: the client's result and what the
    /// server saw (its peer's certificates).
    async fn handshake(
        server: ServerConfig,
        client: ClientConfig,
    ) -> (Result<(), std::io::Error>, Option<usize>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let server = tokio::spawn(async move {
            let s = acceptor.accept(b).await.ok()?;
            Some(s.get_ref().1.peer_certificates().map_or(0, |c| c.len()))
        });
        let client = TlsConnector::from(Arc::new(client))
            .connect(controller_name(), a)
            .await;
        // Kept open until the server is done: it writes session tickets after the handshake.
        let seen = server.await.unwrap();
        (client.map(drop), seen)
    }

    fn ca() -> (tempfile::TempDir, ClusterCa) {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        (dir, ca)
    }

    #[tokio::test]
    async fn the_pinned_verifier_accepts_its_ca_and_refuses_another() {
        let (_d1, ours) = ca();
        let (_d2, theirs) = ca();
        let server = controller_config(&ours).unwrap();
        let (ok, seen) = handshake(server.clone(), join_config(ours.fingerprint()).unwrap()).await;
        ok.unwrap();
        assert_eq!(seen, Some(0), "a joining host has no client certificate");

        let (refused, _) = handshake(server, join_config(theirs.fingerprint()).unwrap()).await;
        let e = describe_io_error(&refused.unwrap_err());
        assert!(e.contains("does not contain the cluster CA"), "{e}");
    }

    #[tokio::test]
    async fn a_leaf_from_another_ca_is_refused_even_beside_the_pinned_ca() {
        let (_d1, ours) = ca();
        let (_d2, theirs) = ca();
        // An impostor sends the real CA certificate (it is public) with its own leaf.
        let mut issued = theirs.controller_cert().unwrap();
        issued.chain[1] = ours.cert_der().clone();
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(issued.chain, issued.key)
            .unwrap();
        let (refused, _) = handshake(server, join_config(ours.fingerprint()).unwrap()).await;
        assert!(refused.is_err());
    }

    #[tokio::test]
    async fn a_joined_host_presents_its_certificate_and_trusts_only_its_ca() {
        let (_d1, ours) = ca();
        let (_d2, theirs) = ca();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = ours.host_cert("web-1", key.public_key_raw()).unwrap();
        let chain = crate::pem::certs(cert.as_bytes()).unwrap();
        let private = crate::pem::key(key.serialize_pem().as_bytes()).unwrap();
        let client = agent_config(ours.cert_der(), chain.clone(), private.clone_key()).unwrap();
        let (ok, seen) = handshake(controller_config(&ours).unwrap(), client.clone()).await;
        ok.unwrap();
        assert_eq!(seen, Some(1));

        // The same host against a controller of another cluster: refused.
        let (refused, _) = handshake(controller_config(&theirs).unwrap(), client).await;
        assert!(refused.is_err());
        // A certificate of another cluster is not let in as a client either.
        let foreign = theirs.host_cert("web-1", key.public_key_raw()).unwrap();
        let foreign = crate::pem::certs(foreign.as_bytes()).unwrap();
        let client = agent_config(ours.cert_der(), foreign, private).unwrap();
        let (_, seen) = handshake(controller_config(&ours).unwrap(), client).await;
        assert_eq!(seen, None, "the server must refuse the handshake");
    }
}
