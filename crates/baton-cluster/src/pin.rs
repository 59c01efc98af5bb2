//! The verifier a host uses to join: the controller's chain must contain the CA certificate
//! whose sha256 the join token pins, and the leaf must verify against that CA, and only that
//! CA, for [`CONTROLLER_NAME`](crate::CONTROLLER_NAME). Nothing else is trusted: not the
//! system's roots, not another CA the server sends.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::fingerprint::Fingerprint;

/// Verifies a server against the CA certificate pinned by its fingerprint.
#[derive(Debug)]
pub struct PinnedCa {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

/// The controller did not present the pinned CA.
#[derive(Debug, thiserror::Error)]
#[error(
    "the controller's certificate chain does not contain the cluster CA {0} that the join token pins: this is not the controller the token was made for (check the address, or get a new token with `baton host token` from the right controller)"
)]
struct PinMismatch(Fingerprint);

impl PinnedCa {
    /// A verifier trusting only the CA certificate whose sha256 is `pin`.
    pub fn new(pin: Fingerprint, provider: Arc<CryptoProvider>) -> Self {
        Self { pin, provider }
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| Fingerprint::of(c) == self.pin)
        else {
            return Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch(self.pin))),
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| Error::General(format!("cannot build the pinned verifier: {e}")))?;
        let others: Vec<CertificateDer<'_>> =
            intermediates.iter().filter(|c| *c != ca).cloned().collect();
        inner.verify_server_cert(end_entity, &others, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
