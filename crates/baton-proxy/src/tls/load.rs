//! One certificate read from its files (a PEM chain and a PEM key) and checked before it may
//! serve: the key matches the certificate, and today is within its validity period.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_core::config::CertConfig;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::validity::validity;

/// A certificate that could not be used, naming the file to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing, unreadable or does not hold what it should.
    #[error("{}: {problem}", path.display())]
    File {
        /// The certificate or key file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        problem: String,
    },
    /// rustls refused the settings (a build without TLS 1.2 or 1.3).
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

fn bad(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// A certificate ready to serve, and the server names it is for.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Lower-case server names; `*.example.com` for a wildcard.
    pub names: Vec<String>,
}

/// The bytes of a certificate's two files, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Files {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// Reads `c`'s files.
pub(crate) fn read(c: &CertConfig) -> Result<Files, TlsError> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            bad(
                path,
                format!("cannot read the {what} ({e}); check the path and its permissions"),
            )
        })
    };
    Ok(Files {
        cert: read(&c.cert, "certificate chain")?,
        key: read(&c.key, "private key")?,
    })
}

/// Checks and prepares the certificate in `files` (read from `c`) at `now`.
pub(crate) fn load(
    c: &CertConfig,
    files: &Files,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&files.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&c.cert, format!("not a PEM certificate chain ({e})")))?;
    let Some(leaf) = chain.first() else {
        return Err(bad(
            &c.cert,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----): it must be the chain, leaf first",
        ));
    };
    let period =
        validity(leaf).ok_or_else(|| bad(&c.cert, "its first certificate is not X.509"))?;
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if now_secs > period.not_after {
        return Err(bad(
            &c.cert,
            format!(
                "the certificate expired on {}: renew it",
                date(period.not_after)
            ),
        ));
    }
    if now_secs < period.not_before {
        return Err(bad(
            &c.cert,
            format!(
                "the certificate is not valid before {}: check the clock, or use it from then",
                date(period.not_before)
            ),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|e| {
        bad(
            &c.key,
            format!("holds no PEM private key (PKCS#8, PKCS#1 or SEC1) ({e})"),
        )
    })?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(&c.key, format!("unusable private key ({e})")))?;
    let key = CertifiedKey::new(chain, signer);
    match key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(bad(
                &c.key,
                format!(
                    "is not the key of the certificate in {}: use the key it was issued for",
                    c.cert.display()
                ),
            ));
        }
    }
    let names = if c.names.is_empty() {
        let leaf = key
            .end_entity_cert()
            .map_err(|e| bad(&c.cert, e.to_string()))?;
        let parsed = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| bad(&c.cert, format!("unreadable certificate ({e})")))?;
        parsed
            .valid_dns_names()
            .map(str::to_ascii_lowercase)
            .collect()
    } else {
        c.names.iter().map(|n| n.to_ascii_lowercase()).collect()
    };
    Ok(Loaded {
        key: Arc::new(key),
        names,
    })
}

/// `secs` since the epoch as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn date(secs: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    httpdate::fmt_http_date(at)
}
