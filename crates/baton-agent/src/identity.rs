//! What a joined host keeps in its data directory: the cluster CA (`ca.pem`), its
//! certificate (`cert.pem`), its private key (`key.pem`, mode 0600) and its name (`name`).
//! The directory has mode 0700. A host whose directory holds a certificate has joined.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use baton_cluster::{pem, write_private};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::AgentError;

const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
const NAME_FILE: &str = "name";

/// A joined host's credentials.
#[derive(Debug)]
pub struct Identity {
    /// The host's name.
    pub name: String,
    /// The cluster CA.
    pub ca: CertificateDer<'static>,
    /// The host's certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// The host's private key.
    pub key: PrivateKeyDer<'static>,
}

/// The default data directory: `$HOME/.baton-agent`, or `./.baton-agent` without `$HOME`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Path::new(&home).join(".baton-agent"),
        _ => PathBuf::from(".baton-agent"),
    }
}

/// Creates `dir` (mode 0700) if needed.
pub fn prepare(dir: &Path) -> Result<(), AgentError> {
    let io = |source| AgentError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// The credentials in `dir`, or `None` if the host has not joined yet.
pub fn load(dir: &Path) -> Result<Option<Identity>, AgentError> {
    let cert_path = dir.join(CERT_FILE);
    if !cert_path.exists() {
        return Ok(None);
    }
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read(&path).map_err(|source| AgentError::Io { path, source })
    };
    let corrupt = |file: &str, what: String| AgentError::Corrupt {
        path: dir.join(file),
        what,
    };
    let name = String::from_utf8_lossy(&read(NAME_FILE)?)
        .trim()
        .to_string();
    let ca = pem::cert(&read(CA_FILE)?).map_err(|w| corrupt(CA_FILE, w))?;
    let chain = pem::certs(&read(CERT_FILE)?).map_err(|w| corrupt(CERT_FILE, w))?;
    let key = pem::key(&read(KEY_FILE)?).map_err(|w| corrupt(KEY_FILE, w))?;
    Ok(Some(Identity {
        name,
        ca,
        chain,
        key,
    }))
}

/// Stores the credentials of a join; the certificate last, as the mark of a finished join.
pub fn save(
    dir: &Path,
    name: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), AgentError> {
    let write = |file: &str, text: &str| {
        write_private(&dir.join(file), text.as_bytes()).map_err(AgentError::Store)
    };
    write(KEY_FILE, key_pem)?;
    write(NAME_FILE, &format!("{name}\n"))?;
    write(CA_FILE, ca_pem)?;
    write(CERT_FILE, cert_pem)
}
