//! Loading, checking, picking and rotating certificates, with test certificates made here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_core::config::CertConfig;
use rcgen::{CertificateParams, KeyPair};
use rustls::sign::CertifiedKey;

use super::*;

/// A certificate for `names` written to `dir` as `{file}.pem` and `{file}.key`.
fn write_cert(
    dir: &Path,
    file: &str,
    names: &[&str],
    params: impl FnOnce(&mut CertificateParams),
) -> CertConfig {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params(&mut p);
    let cert = p.self_signed(&key).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    CertConfig {
        cert: c,
        key: k,
        names: Vec::new(),
    }
}

fn plain(dir: &Path, file: &str, names: &[&str]) -> CertConfig {
    write_cert(dir, file, names, |_| {})
}

fn error(certs: Vec<CertConfig>) -> (PathBuf, String) {
    match Tls::load(certs).unwrap_err() {
        TlsError::File { path, problem } => (path, problem),
        other => panic!("{other}"),
    }
}

fn served(tls: &Tls, sni: Option<&str>) -> Arc<CertifiedKey> {
    tls.resolver.table.load().pick(sni).clone()
}

fn leaf(key: &CertifiedKey) -> Vec<u8> {
    key.end_entity_cert().unwrap().to_vec()
}

#[test]
fn names_come_from_the_certificates_and_the_first_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let web = plain(dir.path(), "web", &["web.test"]);
    let api = plain(dir.path(), "api", &["api.test", "*.api.test"]);
    let mut other = plain(dir.path(), "other", &["ignored.test"]);
    other.names = vec!["Other.Test".into()];
    let tls = Tls::load(vec![web.clone(), api.clone(), other.clone()]).unwrap();
    let pem = |c: &CertConfig| {
        rustls_pki_types::CertificateDer::from_pem_file(&c.cert)
            .unwrap()
            .to_vec()
    };
    use rustls_pki_types::pem::PemObject;
    assert_eq!(leaf(&served(&tls, Some("web.test"))), pem(&web));
    assert_eq!(leaf(&served(&tls, Some("api.test"))), pem(&api));
    assert_eq!(leaf(&served(&tls, Some("v1.api.test"))), pem(&api));
    assert_eq!(leaf(&served(&tls, Some("other.test"))), pem(&other));
    // Only the names listed: not the certificate's own.
    assert_eq!(leaf(&served(&tls, Some("ignored.test"))), pem(&web));
    assert_eq!(leaf(&served(&tls, Some("unknown.test"))), pem(&web));
    assert_eq!(leaf(&served(&tls, None)), pem(&web));
}

#[test]
fn bad_certificates_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = plain(dir.path(), "good", &["a.test"]);
    let other = plain(dir.path(), "other", &["b.test"]);

    let missing = CertConfig {
        cert: dir.path().join("nope.pem"),
        ..good.clone()
    };
    let (path, problem) = error(vec![missing]);
    assert!(
        path.ends_with("nope.pem") && problem.contains("cannot read"),
        "{problem}"
    );

    let mismatched = CertConfig {
        key: other.key.clone(),
        ..good.clone()
    };
    let (path, problem) = error(vec![mismatched]);
    assert_eq!(path, other.key);
    assert!(
        problem.contains("is not the key of the certificate"),
        "{problem}"
    );

    let expired = write_cert(dir.path(), "expired", &["a.test"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let (path, problem) = error(vec![expired.clone()]);
    assert_eq!(path, expired.cert);
    assert!(problem.contains("expired on Fri, 01 Jan 2021"), "{problem}");

    let future = write_cert(dir.path(), "future", &["a.test"], |p| {
        p.not_before = rcgen::date_time_ymd(2200, 1, 1);
        p.not_after = rcgen::date_time_ymd(2201, 1, 1);
    });
    assert!(error(vec![future]).1.contains("not valid before"));

    // A key where the certificate belongs, and the other way round.
    let swapped = CertConfig {
        cert: good.key.clone(),
        key: good.cert.clone(),
        names: Vec::new(),
    };
    let (path, problem) = error(vec![swapped]);
    assert_eq!(path, good.key);
    assert!(problem.contains("no PEM certificate"), "{problem}");
    let key_is_cert = CertConfig {
        key: good.cert.clone(),
        ..good.clone()
    };
    let (path, problem) = error(vec![key_is_cert]);
    assert_eq!(path, good.cert);
    assert!(problem.contains("no PEM private key"), "{problem}");

    // A second certificate must say which names it serves.
    let nameless = write_cert(dir.path(), "nameless", &[], |_| {});
    let (path, problem) = error(vec![good.clone(), nameless.clone()]);
    assert_eq!(path, nameless.cert);
    assert!(problem.contains("names"), "{problem}");
    Tls::load(vec![nameless, good]).unwrap();
}

#[test]
fn a_reload_with_a_bad_file_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let web = plain(dir.path(), "web", &["web.test"]);
    let tls = Tls::load(vec![web.clone()]).unwrap();
    let before = leaf(&served(&tls, None));
    std::fs::write(&web.cert, "garbage").unwrap();
    let e = tls.reload().unwrap_err().to_string();
    assert!(e.starts_with(&web.cert.display().to_string()), "{e}");
    assert_eq!(leaf(&served(&tls, None)), before);
    let fresh = plain(dir.path(), "web", &["web.test"]);
    tls.reload().unwrap();
    let after = leaf(&served(&tls, None));
    assert_ne!(after, before);
    assert_eq!(fresh.cert, web.cert);
}

#[test]
fn a_changed_file_is_taken_once_it_settles_and_a_bad_one_once_only() {
    let dir = tempfile::tempdir().unwrap();
    let web = plain(dir.path(), "web", &["web.test"]);
    let tls = Tls::load(vec![web.clone()]).unwrap();
    let first = leaf(&served(&tls, None));
    let mut pending = None;
    assert!(tls.poll(&mut pending).is_none(), "nothing changed");

    plain(dir.path(), "web", &["web.test"]);
    assert!(
        tls.poll(&mut pending).is_none(),
        "seen once: not settled yet"
    );
    assert_eq!(leaf(&served(&tls, None)), first);
    assert!(matches!(tls.poll(&mut pending), Some(Ok(()))));
    let second = leaf(&served(&tls, None));
    assert_ne!(second, first);

    // Only the key replaced: it no longer matches; refused once, the second certificate stays.
    let other = plain(dir.path(), "other", &["web.test"]);
    std::fs::copy(&other.key, &web.key).unwrap();
    assert!(tls.poll(&mut pending).is_none());
    assert!(matches!(tls.poll(&mut pending), Some(Err(_))));
    assert!(
        tls.poll(&mut pending).is_none(),
        "not retried until the files change"
    );
    assert_eq!(leaf(&served(&tls, None)), second);
}
