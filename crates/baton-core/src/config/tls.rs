//! `[apps.<name>.tls]`: TLS termination on the app's listener (docs/design-notes.md, "TLS
//! termination"): the certificates (one as `cert` + `key`, or several as
//! `[[apps.<name>.tls.certs]]`, picked by SNI), and an optional plain-HTTP listener that
//! redirects to HTTPS.
//!
//! Only the shape is checked here: reading the files, matching keys to certificates and their
//! dates is the proxy's work at start and reload, where the files are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `[apps.<name>.tls]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM, leaf first); relative to the config file.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM); relative to the config file.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// More certificates, picked by the name the client asks for (SNI).
    #[serde(default)]
    pub certs: Vec<CertConfig>,
    /// A plain-HTTP listener that answers every request with a redirect to HTTPS.
    #[serde(default)]
    pub redirect_http: Option<SocketAddr>,
}

/// `[[apps.<name>.tls.certs]]`: one certificate and the names it serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    /// The certificate chain (PEM, leaf first); relative to the config file.
    pub cert: PathBuf,
    /// Its private key (PEM); relative to the config file.
    pub key: PathBuf,
    /// The server names it is for (`*.example.com` allowed); default: the DNS names in the
    /// certificate's subject alternative names.
    #[serde(default)]
    pub names: Vec<String>,
}

impl TlsConfig {
    /// Every certificate, the default one (for clients without SNI or with an unknown name)
    /// first, with relative paths resolved against `base` (the config file's directory).
    pub fn certificates(&self, base: &Path) -> Vec<CertConfig> {
        let single = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(CertConfig {
                cert: cert.clone(),
                key: key.clone(),
                names: Vec::new(),
            }),
            _ => None,
        };
        single
            .into_iter()
            .chain(self.certs.iter().cloned())
            .map(|c| CertConfig {
                cert: base.join(c.cert),
                key: base.join(c.key),
                names: c.names,
            })
            .collect()
    }

    /// This section with its relative paths resolved against `base`, so that it means the
    /// same wherever it is read (an agent's host).
    pub fn resolved(&self, base: &Path) -> TlsConfig {
        TlsConfig {
            cert: self.cert.as_ref().map(|c| base.join(c)),
            key: self.key.as_ref().map(|k| base.join(k)),
            certs: self
                .certs
                .iter()
                .map(|c| CertConfig {
                    cert: base.join(&c.cert),
                    key: base.join(&c.key),
                    names: c.names.clone(),
                })
                .collect(),
            redirect_http: self.redirect_http,
        }
    }

    /// The first problem with this section, as (key under `tls`, what to do).
    pub(super) fn problem(&self) -> Option<(String, String)> {
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                return Some((
                    "key".into(),
                    "cert needs its key: add key = \"/path/to/key.pem\"".into(),
                ));
            }
            (None, Some(_)) => {
                return Some((
                    "cert".into(),
                    "key needs its cert: add cert = \"/path/to/chain.pem\"".into(),
                ));
            }
            (None, None) if self.certs.is_empty() => {
                return Some((
                    "cert".into(),
                    "needs a certificate: set cert and key, or add [[apps.<name>.tls.certs]] entries".into(),
                ));
            }
            _ => {}
        }
        let paths = self
            .cert
            .iter()
            .chain(&self.key)
            .chain(self.certs.iter().flat_map(|c| [&c.cert, &c.key]));
        for path in paths {
            let bytes = path.as_os_str().as_encoded_bytes();
            if bytes.is_empty() || bytes.iter().any(|b| matches!(b, b'\0' | b'\r' | b'\n')) {
                return Some((
                    "cert".into(),
                    format!("{path:?} is not a usable file path: name a PEM file"),
                ));
            }
        }
        for (i, c) in self.certs.iter().enumerate() {
            if let Some(bad) = c.names.iter().find(|n| !valid_server_name(n)) {
                return Some((
                    format!("certs[{i}].names"),
                    format!(
                        "{bad:?} is not a server name: use DNS names such as \"example.com\" or \"*.example.com\""
                    ),
                ));
            }
        }
        if self.redirect_http.is_some_and(|a| a.port() == 0) {
            return Some((
                "redirect_http".into(),
                "0 is not a port: plain HTTP is usually \"0.0.0.0:80\"".into(),
            ));
        }
        None
    }
}

/// A DNS name a client may send in SNI, or a wildcard for one label (`*.example.com`).
fn valid_server_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(text: &str) -> TlsConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn one_cert_and_sni_certs_resolve_against_the_config_directory_default_first() {
        let t = tls(r#"
cert = "web.pem"
key = "/abs/web.key"
[[certs]]
cert = "api.pem"
key = "api.key"
names = ["api.example.com"]
"#);
        assert_eq!(t.problem(), None);
        let certs = t.certificates(Path::new("/etc/baton"));
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].cert, PathBuf::from("/etc/baton/web.pem"));
        assert_eq!(certs[0].key, PathBuf::from("/abs/web.key"));
        assert_eq!(certs[1].key, PathBuf::from("/etc/baton/api.key"));
        assert_eq!(certs[1].names, ["api.example.com"]);
        // Resolved once, the same wherever it is read again.
        let resolved = t.resolved(Path::new("/etc/baton"));
        assert_eq!(resolved.certificates(Path::new("/elsewhere")), certs);
    }

    #[test]
    fn incomplete_or_odd_sections_are_refused_at_their_key() {
        let cases = [
            ("cert = \"a.pem\"", "key"),
            ("key = \"a.key\"", "cert"),
            ("redirect_http = \"0.0.0.0:80\"", "cert"),
            (
                "cert = \"a\"\nkey = \"b\"\nredirect_http = \"0.0.0.0:0\"",
                "redirect_http",
            ),
            (
                "[[certs]]\ncert = \"a\"\nkey = \"b\"\nnames = [\"bad name\"]",
                "certs[0].names",
            ),
            ("cert = \"\"\nkey = \"b\"", "cert"),
        ];
        for (text, key) in cases {
            assert_eq!(
                tls(text).problem().map(|(k, _)| k).as_deref(),
                Some(key),
                "{text}"
            );
        }
        assert_eq!(
            tls("[[certs]]\ncert = \"a\"\nkey = \"b\"\nnames = [\"*.example.com\"]").problem(),
            None
        );
    }

    #[test]
    fn the_redirect_listener_may_not_clash_with_another_listener() {
        let text = |redirect: &str| {
            format!(
                "[apps.web]\nlisten = \"127.0.0.1:8443\"\ncommand = [\"x\"]\n[apps.web.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nredirect_http = \"{redirect}\"\n"
            )
        };
        let parse = |t: &str| super::super::Config::parse(t, Path::new("baton.toml"));
        let c = parse(&text("0.0.0.0:8080")).unwrap();
        assert_eq!(
            c.apps["web"]
                .tls
                .as_ref()
                .unwrap()
                .certificates(Path::new("/etc"))[0]
                .cert,
            PathBuf::from("/etc/c.pem")
        );
        let e = parse(&text("0.0.0.0:8443")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("apps.web.tls.redirect_http"), "{e}");
        assert!(e.message.contains("web@production"), "{e}");
    }
}
