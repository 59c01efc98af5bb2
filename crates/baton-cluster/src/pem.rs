//! Reading certificates and keys from PEM text, with errors that say what was found.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The first certificate in `pem`.
pub fn cert(pem: &[u8]) -> Result<CertificateDer<'static>, String> {
    CertificateDer::from_pem_slice(pem).map_err(|e| format!("no PEM certificate ({e})"))
}

/// Every certificate in `pem`, in order (a chain: leaf first).
pub fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain ({e})"))?;
    if chain.is_empty() {
        return Err("no PEM certificate".into());
    }
    Ok(chain)
}

/// The private key in `pem`.
pub fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no PEM private key ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_reads_back_in_order_and_garbage_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let a = rcgen::CertificateParams::new(vec!["a".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let chain = certs(format!("{}{}", a.pem(), a.pem()).as_bytes()).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(&chain[0], a.der());
        assert_eq!(&cert(a.pem().as_bytes()).unwrap(), a.der());
        key_ok(&key);
        assert!(cert(b"nothing").is_err());
        assert!(certs(b"").is_err());
    }

    fn key_ok(k: &rcgen::KeyPair) {
        assert!(key(k.serialize_pem().as_bytes()).is_ok());
    }
}
