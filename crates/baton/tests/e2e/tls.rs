//! TLS termination on an app's listener: HTTPS with curl and with Python's ssl, verified
//! against a CA made here; HTTP/2 by ALPN; SNI picking the certificate; a certificate rotated
//! under keep-alive and new-connection load with 0 failed requests; bad certificates refused
//! at start naming the file; the plain-HTTP redirect.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::{Baton, free_port, text, wait_until_async};
use crate::input::up_exit;

/// A CA of the test's own, and the certificates it signs, in a directory.
struct TestCa {
    dir: tempfile::TempDir,
    cert: Certificate,
    key: KeyPair,
}

impl TestCa {
    fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "Baton test CA");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        TestCa { dir, cert, key }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `names`, written as `{file}.pem` and `{file}.key`; returns its DER.
    fn leaf(&self, file: &str, names: &[&str], expired: bool) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.use_authority_key_identifier_extension = true;
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        // Written beside and renamed over: a reader never sees half a file.
        for (ext, pem) in [("pem", cert.pem()), ("key", key.serialize_pem())] {
            let tmp = self.dir.path().join(format!("{file}.{ext}.tmp"));
            std::fs::write(&tmp, pem).unwrap();
            std::fs::rename(&tmp, self.dir.path().join(format!("{file}.{ext}"))).unwrap();
        }
        cert.der().to_vec()
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// A client trusting the CA; with `resume`, it resumes sessions (and is then shown the
    /// certificate of the session it resumes).
    fn connector(&self, resume: bool) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.ca()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut config = config;
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        TlsConnector::from(Arc::new(config))
    }
}

const TLS_WEB: &str = r#"
[api]
listen = "127.0.0.1:@API@"

[apps.web]
listen = "127.0.0.1:@WEB@"
instances = 2
command = ["{artifact}/baton-demo", "--port", "{port}"]

[apps.web.health]
interval = "200ms"
healthy_threshold = 1

[apps.web.tls]
cert = "@CERTS@/web.pem"
key = "@CERTS@/web.key"
redirect_http = "127.0.0.1:@REDIRECT@"

[[apps.web.tls.certs]]
cert = "@CERTS@/api.pem"
key = "@CERTS@/api.key"
"#;

fn curl(args: &[&str]) -> String {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed (.ci/run)");
    assert!(o.status.success(), "curl {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// HTTPS with Python's ssl, CA-verified, asking for `sni`: (status line, SAN DNS names).
/// With `check_hostname` false, the chain is still verified but the name may differ.
fn python_get(
    ca: &Path,
    addr: SocketAddr,
    sni: &str,
    check_hostname: bool,
) -> (String, Vec<String>) {
    const SCRIPT: &str = r#"
import json, socket, ssl, sys
ca, port, sni = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = sys.argv[4] == "1"
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        san = [v for k, v in s.getpeercert()["subjectAltName"] if k == "DNS"]
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + sni.encode() + b"\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ssl.SSLEOFError:
            pass
print(json.dumps({"status": data.split(b"\r\n")[0].decode(), "san": san}))
"#;
    let o = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(ca)
        .arg(addr.port().to_string())
        .arg(sni)
        .arg(if check_hostname { "1" } else { "0" })
        .output()
        .unwrap();
    assert!(o.status.success(), "python ssl: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let san = v["san"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    (v["status"].as_str().unwrap().to_string(), san)
}

/// Starts Baton with `web` (web.test, the default) and `api` (api.test) certificates and
/// the redirect listener, and deploys the demo.
async fn start(ca: &TestCa) -> (Baton, u16) {
    ca.leaf("web", &["web.test"], false);
    ca.leaf("api", &["api.test"], false);
    let redirect = free_port();
    let config = TLS_WEB
        .replace("@CERTS@", ca.dir.path().to_str().unwrap())
        .replace("@REDIRECT@", &redirect.to_string());
    let b = Baton::start(&config);
    b.release("web", "1.0.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    (b, redirect)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_with_curl_and_python_h2_by_alpn_sni_and_the_redirect() {
    let ca = TestCa::new();
    let (b, redirect) = start(&ca).await;
    let port = b.web().port();
    let cacert = ca.ca().display().to_string();
    let resolve = |name: &str| format!("{name}:{port}:127.0.0.1");
    let url = |name: &str| format!("https://{name}:{port}/");

    // curl, verifying against the CA: HTTP/1.1, and HTTP/2 by ALPN.
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let out = curl(&[
            flag,
            "--cacert",
            &cacert,
            "--resolve",
            &resolve("web.test"),
            "-w",
            "\n%{http_code} %{http_version}",
            &url("web.test"),
        ]);
        let (body, last) = out.rsplit_once('\n').unwrap();
        assert_eq!(last, format!("200 {version}"), "{out}");
        assert!(body.contains("1.0.0"), "{out}");
    }
    // Plain HTTP on the TLS listener gets no answer.
    let o = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));

    // Python's ssl with CA and host name verification; SNI picks the certificate.
    for (sni, name) in [("web.test", "web.test"), ("api.test", "api.test")] {
        let (status, san) = python_get(&ca.ca(), b.web(), sni, true);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(san, [name]);
    }
    // An unknown name gets the first certificate.
    let (status, san) = python_get(&ca.ca(), b.web(), "other.test", false);
    assert_eq!(
        (status.as_str(), san),
        ("HTTP/1.1 200 OK", vec!["web.test".to_string()])
    );

    // The redirect listener: 301 for GET, 308 for POST, to the TLS listener.
    let head = curl(&[
        "-si",
        "-H",
        "Host: web.test",
        &format!("http://127.0.0.1:{redirect}/a/b?c=1"),
    ]);
    assert!(head.starts_with("HTTP/1.1 301"), "{head}");
    assert!(
        head.contains(&format!("location: https://web.test:{port}/a/b?c=1")),
        "{head}"
    );
    let head = curl(&[
        "-si",
        "-X",
        "POST",
        "-H",
        "Host: web.test:80",
        &format!("http://127.0.0.1:{redirect}/form"),
    ]);
    assert!(head.starts_with("HTTP/1.1 308"), "{head}");
    assert!(
        head.contains(&format!("location: https://web.test:{port}/form")),
        "{head}"
    );
}

/// Load that counts every failed request: keep-alive connections, and a new connection per
/// request.
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

async fn keep_alive(load: Arc<Load>, connector: TlsConnector, addr: SocketAddr) {
    while !load.stop.load(Ordering::Relaxed) {
        let Ok(mut sender) = open(&connector, addr).await.map(|(s, _)| s) else {
            load.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // Many requests per connection, so that connections opened before the rotation
        // keep serving after it.
        for _ in 0..200 {
            if load.stop.load(Ordering::Relaxed) {
                return;
            }
            let counter = match get(&mut sender).await {
                true => &load.ok,
                false => &load.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn new_connections(load: Arc<Load>, connector: TlsConnector, addr: SocketAddr) {
    while !load.stop.load(Ordering::Relaxed) {
        let ok = match open(&connector, addr).await {
            Ok((mut sender, _)) => get(&mut sender).await,
            Err(_) => false,
        };
        let counter = if ok { &load.ok } else { &load.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// A verified TLS connection to web.test: its HTTP/1.1 sender and the leaf it was served.
async fn open(connector: &TlsConnector, addr: SocketAddr) -> Result<(Sender, Vec<u8>), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("web.test").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok((sender, leaf))
}

async fn get(sender: &mut Sender) -> bool {
    let req = hyper::Request::get("/")
        .header("host", "web.test")
        .body(Empty::new())
        .unwrap();
    match sender.send_request(req).await {
        Ok(res) if res.status() == 200 => res.into_body().collect().await.is_ok(),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_rotated_under_load_fails_no_request() {
    let ca = TestCa::new();
    let (b, _) = start(&ca).await;
    let addr = b.web();
    let connector = ca.connector(true);
    let fresh = ca.connector(false);
    let old = open(&fresh, addr).await.unwrap().1;
    let load = Arc::new(Load {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(tokio::spawn(keep_alive(
            load.clone(),
            connector.clone(),
            addr,
        )));
    }
    for _ in 0..2 {
        tasks.push(tokio::spawn(new_connections(
            load.clone(),
            connector.clone(),
            addr,
        )));
    }
    let started = wait_until_async(Duration::from_secs(10), || async {
        load.ok.load(Ordering::Relaxed) > 200
    })
    .await;
    assert!(started, "no load got through");

    let new = ca.leaf("web", &["web.test"], false);
    assert_ne!(new, old);
    let rotated = wait_until_async(Duration::from_secs(15), || async {
        open(&fresh, addr).await.is_ok_and(|(_, leaf)| leaf == new)
    })
    .await;
    let before = load.ok.load(Ordering::Relaxed);
    // Load on both certificates' connections for a while after the swap.
    wait_until_async(Duration::from_secs(10), || async {
        load.ok.load(Ordering::Relaxed) > before + 500
    })
    .await;
    load.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        rotated,
        "new connections never got the new certificate; log:\n{}",
        b.log()
    );
    let (ok, failed) = (
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > before, "no request after the rotation");
    assert!(b.log().contains("TLS certificates reloaded"), "{}", b.log());

    // A bad change (an expired certificate) is refused, naming the file; the new one stays.
    ca.leaf("web", &["web.test"], true);
    let logged = wait_until_async(Duration::from_secs(15), || async {
        b.log().contains("TLS certificate change refused")
    })
    .await;
    assert!(logged, "{}", b.log());
    assert!(b.log().contains(&ca.path("web.pem")), "{}", b.log());
    assert_eq!(open(&fresh, addr).await.unwrap().1, new);
}

#[test]
fn bad_certificates_are_refused_at_start_naming_the_file() {
    let _serial = crate::harness::serial();
    let ca = TestCa::new();
    ca.leaf("web", &["web.test"], false);
    ca.leaf("api", &["api.test"], false);
    ca.leaf("expired", &["web.test"], true);
    std::fs::write(ca.dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = |cert: &str, key: &str| {
        TLS_WEB
            .replace("@API@", &free_port().to_string())
            .replace("@WEB@", &free_port().to_string())
            .replace("@REDIRECT@", &free_port().to_string())
            .replace("@CERTS@/web.pem", &ca.path(cert))
            .replace("@CERTS@/web.key", &ca.path(key))
            .replace("@CERTS@", ca.dir.path().to_str().unwrap())
    };
    let cases = [
        ("expired.pem", "expired.key", "expired.pem", "expired on"),
        (
            "web.pem",
            "api.key",
            "api.key",
            "is not the key of the certificate",
        ),
        (
            "garbage.pem",
            "web.key",
            "garbage.pem",
            "no PEM certificate",
        ),
        (
            "web.pem",
            "missing.key",
            "missing.key",
            "cannot read the private key",
        ),
    ];
    for (cert, key, named, problem) in cases {
        let (code, err) = up_exit(dir.path(), &config(cert, key));
        assert_eq!(code, Some(1), "{cert} {key}: {err}");
        assert!(
            err.contains(&format!("{}: ", ca.path(named))) && err.contains(problem),
            "{cert} {key}: {err}"
        );
        assert!(err.contains("[apps.web.tls]"), "{err}");
    }
}

const TLS_HOST_PORT: &str = r#"
[api]
listen = "127.0.0.1:@API@"

[cluster]
listen = "127.0.0.1:@CLUSTER@"

[hosts.web-1]
address = "127.0.0.2"

[apps.web]
listen = "127.0.0.1:@WEB@"
hosts = ["web-1"]
host_port = @OTHER@
command = ["{artifact}/baton-demo"]

[apps.web.health]
interval = "200ms"
healthy_threshold = 1

[apps.web.tls]
cert = "@CERTS@/web.pem"
key = "@CERTS@/web.key"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_host_port_serves_https_too() {
    let ca = TestCa::new();
    ca.leaf("web", &["web.test"], false);
    let b = Baton::start(&TLS_HOST_PORT.replace("@CERTS@", ca.dir.path().to_str().unwrap()));
    let _agents = crate::hosts::Agents::join_all(&b, &[("web-1", "127.0.0.2")]);
    b.release("web", "1.0.0", &[]);
    b.deploy_ok("web", "1.0.0", &[]).await;
    let cacert = ca.ca().display().to_string();
    for (ip, port) in [
        ("127.0.0.1", b.web().port()),
        ("127.0.0.2", b.apps["other"].port()),
    ] {
        let url = format!("https://web.test:{port}/");
        let resolve = format!("web.test:{port}:{ip}");
        let https = || {
            Command::new("curl")
                .args([
                    "-sf",
                    "--max-time",
                    "5",
                    "--cacert",
                    &cacert,
                    "--resolve",
                    &resolve,
                    &url,
                ])
                .output()
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("1.0.0")
                })
        };
        let ok = crate::harness::wait_until(Duration::from_secs(30), https);
        assert!(ok, "{url} at {ip}: no HTTPS answer; log:\n{}", b.log());
        let plain = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{ip}:{port}/")])
            .output()
            .unwrap();
        assert!(
            !plain.status.success(),
            "plain HTTP answered at {ip}:{port}"
        );
    }

    // A reload reaches the host's listener without an agent restart. New certificate files:
    // the same port serves the new certificate.
    let host_port = b.apps["other"].port();
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 2], port));
    let fresh = ca.connector(false);
    let config = std::fs::read_to_string(&b.config).unwrap();
    let renewed = ca.leaf("web2", &["web.test"], false);
    let renamed = config
        .replace("/web.pem", "/web2.pem")
        .replace("/web.key", "/web2.key");
    std::fs::write(&b.config, &renamed).unwrap();
    let o = b.cli_async(&["reload"]).await;
    assert!(o.status.success(), "baton reload: {}", text(&o));
    let served = |port: u16, leaf: Vec<u8>| {
        let fresh = fresh.clone();
        async move {
            match open(&fresh, at(port)).await {
                Ok((mut sender, got)) => got == leaf && get(&mut sender).await,
                Err(_) => false,
            }
        }
    };
    let ok = wait_until_async(Duration::from_secs(30), || {
        served(host_port, renewed.clone())
    })
    .await;
    assert!(
        ok,
        "the host's listener kept the old certificate; log:\n{}",
        b.log()
    );

    // host_port moved: the new port serves, the old one is closed.
    let moved_port = free_port();
    let moved = renamed.replace(
        &format!("host_port = {host_port}"),
        &format!("host_port = {moved_port}"),
    );
    std::fs::write(&b.config, &moved).unwrap();
    let o = b.cli_async(&["reload"]).await;
    assert!(o.status.success(), "baton reload: {}", text(&o));
    let ok = wait_until_async(Duration::from_secs(30), || {
        served(moved_port, renewed.clone())
    })
    .await;
    assert!(ok, "nothing serves on the new host_port; log:\n{}", b.log());
    let closed = |port: u16| async move { TcpStream::connect(at(port)).await.is_err() };
    let ok = wait_until_async(Duration::from_secs(30), || closed(host_port)).await;
    assert!(ok, "the old host_port still accepts");

    // host_port removed: the host's listener closes.
    let without = moved.replace(&format!("host_port = {moved_port}\n"), "");
    assert_ne!(without, moved);
    std::fs::write(&b.config, &without).unwrap();
    let o = b.cli_async(&["reload"]).await;
    assert!(o.status.success(), "baton reload: {}", text(&o));
    let ok = wait_until_async(Duration::from_secs(30), || closed(moved_port)).await;
    assert!(ok, "the host's listener stayed after host_port was removed");
}

/// `baton reload` puts new certificate files in force (checked first, for new handshakes),
/// and one with a bad certificate changes nothing: the certificate in force keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_takes_new_certificate_files_and_refuses_a_bad_one() {
    let ca = TestCa::new();
    let (b, _) = start(&ca).await;
    let addr = b.web();
    let fresh = ca.connector(false);
    let config = std::fs::read_to_string(&b.config).unwrap();
    let renewed = ca.leaf("web2", &["web.test"], false);
    std::fs::write(
        &b.config,
        config
            .replace("/web.pem", "/web2.pem")
            .replace("/web.key", "/web2.key"),
    )
    .unwrap();
    let o = b.cli_async(&["reload"]).await;
    assert!(o.status.success(), "baton reload: {}", text(&o));
    let leaf = open(&fresh, addr).await.map(|(_, leaf)| leaf);
    assert!(
        leaf.as_ref().is_ok_and(|l| *l == renewed),
        "{:?}",
        leaf.err()
    );

    ca.leaf("web3", &["web.test"], true);
    std::fs::write(
        &b.config,
        config
            .replace("/web.pem", "/web3.pem")
            .replace("/web.key", "/web3.key"),
    )
    .unwrap();
    let o = b.cli_async(&["reload"]).await;
    assert!(
        !o.status.success(),
        "an expired certificate was taken: {}",
        text(&o)
    );
    assert!(text(&o).contains(&ca.path("web3.pem")), "{}", text(&o));
    let leaf = open(&fresh, addr).await.map(|(_, leaf)| leaf);
    assert!(
        leaf.as_ref().is_ok_and(|l| *l == renewed),
        "{:?}",
        leaf.err()
    );
}
