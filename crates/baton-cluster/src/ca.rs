//! The cluster CA: an ECDSA P-256 key and self-signed certificate kept in the controller's data
//! directory (`cluster/ca.pem`, `cluster/ca.key`), and the certificates it issues: the
//! controller's certificate (DNS name [`CONTROLLER_NAME`]; server auth for the cluster
//! listener, client auth for the hosts' tunnels), one client certificate per joined host (its
//! name as CN and DNS name), and each host's tunnel server certificate (the same name, server
//! auth only, over a key the agent makes at each start).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData,
    SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::fingerprint::{Fingerprint, random_bytes};

/// The name every agent verifies the controller's certificate for, whatever address it
/// dials: only the pinned cluster CA can have signed a certificate for it.
pub const CONTROLLER_NAME: &str = baton_core::config::CONTROLLER_CERT_NAME;
/// The cluster CA's subject. Issued certificates name it as their issuer, and the issuer is
/// rebuilt from it at each start: never change it, or certificates already issued stop
/// chaining to the stored CA.
const CA_COMMON_NAME: &str = "Baton cluster CA";
/// How long the CA and the certificates it issues are valid, in years. Rotation is not
/// built yet: see docs/design-notes.md.
const VALIDITY_YEARS: i32 = 10;
/// The file names under the CA directory.
const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";

/// Why the CA could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}: check the permissions of the data directory", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored file does not hold what it should.
    #[error("{}: {what}: restore it from a backup, or remove the `cluster` directory to start a new cluster (every host must then join again)", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Generating a key or signing a certificate failed.
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// A host's public key is not an uncompressed P-256 point.
    #[error(
        "the public key is not an uncompressed P-256 point (65 bytes starting with 0x04), got {0} bytes"
    )]
    BadPublicKey(usize),
}

/// The cluster CA, loaded with its key: it signs the controller's and the hosts' certificates.
pub struct ClusterCa {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
    /// The CA as an issuer: the same subject and key as the stored certificate.
    issuer: Certificate,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint().to_string())
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key, ready for a rustls config.
#[derive(Debug)]
pub struct Issued {
    /// The certificate chain: the leaf, then the CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl ClusterCa {
    /// Loads the CA from `dir`, or creates it there (the directory with mode 0700, the key
    /// with mode 0600) when `dir` holds none.
    pub fn load_or_create(dir: &Path) -> Result<ClusterCa, CaError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        if !key_path.exists() {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let cert = ca_params().self_signed(&key)?;
            // The key first: a crash between the two leaves no certificate without its key.
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            write_private(&cert_path, cert.pem().as_bytes())?;
        }
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Corrupt {
            path: key_path.clone(),
            what: format!("not a PEM private key ({e})"),
        })?;
        if !cert_path.exists() {
            // A crash between the two writes: no token can pin a certificate never stored.
            write_private(&cert_path, ca_params().self_signed(&key)?.pem().as_bytes())?;
        }
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let cert_der = crate::pem::cert(cert_pem.as_bytes()).map_err(|what| CaError::Corrupt {
            path: cert_path.clone(),
            what,
        })?;
        let issuer = ca_params().self_signed(&key)?;
        Ok(ClusterCa {
            cert_der,
            cert_pem,
            key,
            issuer,
        })
    }

    /// The sha256 of the CA certificate's DER: what join tokens pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert_der)
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate (PEM), as handed to joining hosts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A fresh certificate for [`CONTROLLER_NAME`] with a fresh key; the controller makes one
    /// at each start and keeps it in memory only. Server auth for its cluster listener, client
    /// auth for the hosts' tunnels (which let only this name through).
    pub fn controller_cert(&self) -> Result<Issued, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = leaf_params(CONTROLLER_NAME)?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok(Issued {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// A client certificate for host `name` over `public_key` (an uncompressed P-256 point,
    /// as [`KeyPair::public_key_raw`] gives): CN and DNS name `name`, client auth only.
    /// Returns the certificate as PEM.
    pub fn host_cert(&self, name: &str, public_key: &[u8]) -> Result<String, CaError> {
        self.sign_host(name, public_key, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// The server certificate of host `name`'s tunnel listener over `public_key` (a key the
    /// agent makes at each start and sends in `hello`): DNS name `name`, server auth only.
    /// Returns the certificate as PEM.
    pub fn tunnel_cert(&self, name: &str, public_key: &[u8]) -> Result<String, CaError> {
        self.sign_host(name, public_key, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn sign_host(
        &self,
        name: &str,
        public_key: &[u8],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<String, CaError> {
        if public_key.len() != 65 || public_key[0] != 0x04 {
            return Err(CaError::BadPublicKey(public_key.len()));
        }
        let mut params = leaf_params(name)?;
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&P256Key(public_key), &self.issuer, &self.key)?;
        Ok(cert.pem())
    }
}

/// A host's raw P-256 public key, as rcgen signs over it.
struct P256Key<'a>(&'a [u8]);

impl PublicKeyData for P256Key<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    params
}

fn leaf_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()));
    set_validity(&mut params);
    Ok(params)
}

/// From the start of this year (so a clock a little behind still accepts it) for
/// [`VALIDITY_YEARS`].
fn set_validity(params: &mut CertificateParams) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Mean Gregorian year: off by at most a day around New Year, which the margin absorbs.
    let year = 1970 + (secs / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 12, 1);
    params.not_after = rcgen::date_time_ymd(year + VALIDITY_YEARS, 1, 1);
}

/// Writes a file only its owner may read (mode 0600), replacing any previous one.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    let err = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_created_private_and_loaded_again_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("cluster");
        let ca = ClusterCa::load_or_create(&ca_dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
        let again = ClusterCa::load_or_create(&ca_dir).unwrap();
        assert_eq!(ca.fingerprint(), again.fingerprint());
        assert_eq!(again.controller_cert().unwrap().chain.len(), 2);
    }

    #[test]
    fn a_host_key_must_be_an_uncompressed_p256_point() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        assert!(matches!(
            ca.host_cert("web-1", &[4; 10]),
            Err(CaError::BadPublicKey(10))
        ));
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        ca.host_cert("web-1", key.public_key_raw()).unwrap();
    }
}
