//! https webhooks against a real local TLS server: a test CA made with rcgen signs the
//! server's certificate; the notifier trusts that CA through `ca_file`, another CA, or the
//! system's CAs, and is served a certificate for the right name, a wrong one, or an expired one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::deliver::{AttemptError, post};
use super::target::Target;
use super::tests::{Hook, event, eventually, quick};
use super::tls::{Tls, Trust, Trusts};
use super::*;

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// A CA with a name of its own: two with one name would tell their certificates apart
    /// only by signature.
    fn new() -> Ca {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("baton test webhook CA {n}"));
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// Writes the CA's certificate as PEM into `dir`.
    fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }

    /// A server config presenting a certificate for `names`, signed by this CA; `expired`
    /// makes it valid only in 2001.
    fn server(&self, names: &[&str], expired: bool) -> TlsAcceptor {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 12, 31);
        }
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

/// An https webhook server whose certificate `ca` issued for `names`.
async fn https_hook(ca: &Ca, names: &[&str], expired: bool) -> Hook {
    Hook::serve(vec![], None, Some(ca.server(names, expired))).await
}

fn with_ca(url: String, ca_file: &Path) -> Webhook {
    Webhook {
        url,
        ca_file: Some(ca_file.to_path_buf()),
    }
}

/// One attempt to `url` trusting `trust`, as the delivery task makes it.
async fn attempt(url: &str, trust: Trust) -> Result<(), AttemptError> {
    let target = Target::parse(url).unwrap();
    let config = Trusts::default().config(&trust).unwrap();
    let tls = Tls::new(config, &target.host, trust).unwrap();
    post(&target, Some(&tls), Bytes::from_static(b"{}")).await
}

#[tokio::test]
async fn events_are_delivered_over_https_to_a_webhook_signed_by_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let ca_file = ca.write(dir.path());
    let hook = https_hook(&ca, &["localhost", "127.0.0.1"], false).await;
    let port = hook.addr.port();
    let notifier = Notifier::start(
        vec![
            with_ca(
                format!("https://baton:s3cret@localhost:{port}/hook?token=x"),
                &ca_file,
            ),
            with_ca(format!("https://127.0.0.1:{port}/hook"), &ca_file),
        ],
        quick(),
        DEFAULT_QUEUE_CAPACITY,
    )
    .unwrap();
    for id in 1..=3 {
        notifier.notify(&event(id));
    }
    eventually("3 events to each of the two URLs", || {
        hook.delivered().len() == 6
    })
    .await;
    let mut ids = hook.delivered();
    ids.sort_unstable();
    assert_eq!(ids, [1, 1, 2, 2, 3, 3]);
    let auth: Vec<_> = hook
        .attempts()
        .into_iter()
        .filter_map(|r| r.authorization)
        .collect();
    // base64("baton:s3cret"), sent only by the URL that has userinfo.
    assert_eq!(auth, ["Basic YmF0b246czNjcmV0"; 3]);
    assert!(!format!("{notifier:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_retried_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Ca::new();
    let ca_file = ours.write(dir.path());
    let theirs = Ca::new();
    let hook = https_hook(&theirs, &["localhost"], false).await;
    let url = format!("https://user:hunter2@localhost:{}/hook", hook.addr.port());
    let policy = RetryPolicy {
        max_attempts: 3,
        ..quick()
    };
    let notifier = Notifier::start(
        vec![with_ca(url.clone(), &ca_file)],
        policy,
        DEFAULT_QUEUE_CAPACITY,
    )
    .unwrap();
    notifier.notify(&event(1));
    // Given up after its three attempts: three connections, not one request.
    notifier.flush(Duration::from_secs(20)).await;
    assert_eq!(notifier.pending(), 0);
    assert_eq!(*hook.connections.lock().unwrap(), 3);
    assert!(hook.attempts().is_empty());

    let err = attempt(&url, Trust::CaFile(ca_file.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, AttemptError::Tls(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("TLS handshake failed: "), "{msg}");
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(
        msg.contains(&format!(
            "not signed by the CA in ca_file {}",
            ca_file.display()
        )),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn the_system_cas_do_not_trust_a_private_ca() {
    let ca = Ca::new();
    let hook = https_hook(&ca, &["localhost"], false).await;
    let url = format!("https://localhost:{}/hook", hook.addr.port());
    // A machine without a CA store refuses https without ca_file at start instead.
    if let Err(e) = Trusts::default().config(&Trust::System) {
        assert!(
            matches!(e, TrustError::NoSystemRoots { .. }) && e.to_string().contains("ca_file"),
            "{e}"
        );
        return;
    }
    let msg = attempt(&url, Trust::System).await.unwrap_err().to_string();
    assert!(
        msg.contains("UnknownIssuer") && msg.contains("set ca_file in its [[notify]]"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let ca_file = ca.write(dir.path());
    let hook = https_hook(&ca, &["hooks.example"], false).await;
    for (url, name) in [
        (
            format!("https://localhost:{}/", hook.addr.port()),
            "localhost",
        ),
        (
            format!("https://127.0.0.1:{}/", hook.addr.port()),
            "127.0.0.1",
        ),
    ] {
        let msg = attempt(&url, Trust::CaFile(ca_file.clone()))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("not valid for name")
                && msg.contains(&format!("not issued for \"{name}\"")),
            "{msg}"
        );
    }
    assert!(hook.attempts().is_empty());
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let ca_file = ca.write(dir.path());
    let hook = https_hook(&ca, &["localhost"], true).await;
    let url = format!("https://localhost:{}/", hook.addr.port());
    let msg = attempt(&url, Trust::CaFile(ca_file))
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("expired") && msg.contains("renew it"), "{msg}");
}

#[tokio::test]
async fn a_plain_http_server_behind_an_https_url_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = Ca::new().write(dir.path());
    let hook = Hook::serve(vec![], None, None).await;
    let url = format!("https://localhost:{}/", hook.addr.port());
    let msg = attempt(&url, Trust::CaFile(ca_file))
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("did not answer in TLS"), "{msg}");
}

#[tokio::test]
async fn a_ca_file_that_is_missing_not_pem_or_empty_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, b"not a certificate\n").unwrap();
    let key_only = dir.path().join("key.pem");
    std::fs::write(&key_only, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for (path, why) in [
        (&missing, "cannot read it"),
        (&garbage, "holds no PEM certificate"),
        (&key_only, "holds no PEM certificate"),
        (&broken, "not a usable X.509 certificate"),
    ] {
        let hook = with_ca("https://bob:pw@hooks.example/x".into(), path);
        let err = Notifier::start(vec![hook], quick(), 4).unwrap_err();
        assert!(matches!(err, NotifyError::Trust { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("webhook https://hooks.example/x: ")
                && msg.contains(&path.display().to_string())
                && msg.contains(why)
                && msg.contains("PEM file"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn a_ca_file_is_checked_when_the_config_loads_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("baton.toml");
    let text = "[[notify]]\nwebhook = \"http://127.0.0.1:9/\"\n\n[[notify]]\nwebhook = \"https://hooks.example/\"\nca_file = \"hooks-ca.pem\"\n";
    let config = Config::parse(text, &file).unwrap();
    let err = check_ca_files(&config, text, &file).unwrap_err();
    let shown = err.to_string();
    let ca = dir.path().join("hooks-ca.pem");
    assert!(
        shown.starts_with(&format!(
            "{}:6:1: notify[1].ca_file: ca_file {}: cannot read it",
            file.display(),
            ca.display()
        )),
        "{shown}"
    );
    Ca::new().write(dir.path());
    std::fs::rename(dir.path().join("ca.pem"), &ca).unwrap();
    check_ca_files(&config, text, &file).unwrap();
    let notifier = Notifier::from_config(&config.notify, &file, quick()).unwrap();
    assert!(format!("{notifier:?}").contains("https://hooks.example/"));
}

#[tokio::test]
async fn a_ca_file_on_an_http_webhook_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = Ca::new().write(dir.path());
    let err = Notifier::start(
        vec![with_ca("http://127.0.0.1:9/".into(), &ca_file)],
        quick(),
        4,
    )
    .unwrap_err();
    assert!(
        matches!(err, NotifyError::CaFileWithoutHttps { .. }),
        "{err}"
    );
}
