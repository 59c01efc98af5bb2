//! The host tunnel end to end (docs/DESIGN.md I9: nothing crosses hosts in plaintext): an app
//! whose instances all run on another host (an agent on 127.0.0.2) is served by the edge,
//! health-checked and scraped for its canary analysis under load without a failed request,
//! although its instances listen only on loopback; the host's tunnel lets through only the
//! controller's certificate, and only to the ports of the host's instances.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::deploys::{assert_no_failures, load};
use crate::harness::{Baton, text};
use crate::hosts::Agents;

const REMOTE: &str = r#"
[api]
listen = "127.0.0.1:@API@"

[cluster]
listen = "127.0.0.1:@CLUSTER@"
heartbeat_timeout = "3s"

[hosts.web-1]
address = "127.0.0.2"

[apps.web]
listen = "127.0.0.1:@WEB@"
hosts = ["web-1"]
instances = 2
command = ["{artifact}/baton-demo"]

[apps.web.health]
interval = "200ms"
timeout = "2s"
healthy_threshold = 2
unhealthy_threshold = 2
deadline = "60s"

[apps.web.drain]
timeout = "10s"
stop_timeout = "5s"

[apps.web.canary]
steps = [ { weight = 50, pause = "2s" }, { weight = 100 } ]

[apps.web.analysis]
interval = "250ms"
min_requests = 10

[[apps.web.analysis.metric]]
name = "demo_requests_total"
kind = "rate"
min = 1.0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_reaches_another_hosts_instances_only_through_its_mutual_tls_tunnel() {
    let b = Baton::start(REMOTE);
    let agents = Agents::join_all(&b, &[("web-1", "127.0.0.2")]);
    b.release("web", "1.0.0", &[]);
    b.release("web", "1.1.0", &[]);
    // Healthy only through the tunnel: nothing else leads to the instances.
    b.deploy_ok("web", "1.0.0", &[]).await;
    let s = b.status("web");
    assert_eq!(s.instances.len(), 2, "{s:?}");
    for i in &s.instances {
        let at: SocketAddr = i.address.parse().unwrap();
        assert_eq!(at.ip().to_string(), "127.0.0.2", "{i:?}");
        assert!(
            TcpStream::connect(at).is_err(),
            "{} reachable at {at}",
            i.id
        );
        assert!(
            TcpStream::connect(("127.0.0.1", at.port())).is_ok(),
            "{i:?}"
        );
    }

    // A canary under load: requests, health checks and the analysis' scrapes all go through
    // the tunnel, and the analysis saw the canary's own counter grow.
    let l = load(&b);
    b.deploy_ok("web", "1.1.0", &["--strategy", "canary"]).await;
    assert_no_failures(&l.stop().await, "canary on another host");
    let o = b.cli(&["analysis", "web", "--json"]);
    let a: baton_server::AnalysisView =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let scraped = a.verdicts.iter().any(|v| {
        v.figures["checks"].as_array().is_some_and(|checks| {
            checks.iter().any(|c| {
                c["name"] == "metric.demo_requests_total"
                    && c["outcome"] == "pass"
                    && c["observed"].as_f64().is_some_and(|x| x >= 1.0)
            })
        })
    });
    assert!(scraped, "no verdict saw the scraped rate: {a:?}");

    let tunnel = tunnel_addr(&agents.log("web-1"));
    assert_eq!(tunnel.ip().to_string(), "127.0.0.2");
    // An instance of the release now serving (1.0.0's may still be draining, then gone).
    let port: u16 = b
        .status("web")
        .instances
        .iter()
        .find(|i| i.release == "1.1.0" && i.state == "healthy")
        .expect("a healthy 1.1.0 instance")
        .address
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let agent_dir = agents.dir.join("web-1");
    let read = |f: &str| std::fs::read(agent_dir.join(f)).unwrap();
    let ca = baton_cluster::pem::cert(&read("ca.pem")).unwrap();

    // The controller's identity (the test signs one with the controller's CA): the instance
    // answers; a port that is not one of the host's instances (the controller's API) is
    // refused.
    let cluster_ca =
        baton_cluster::ClusterCa::load_or_create(&b.data_dir().join("cluster")).unwrap();
    let controller = baton_cluster::tunnel_client_config(&cluster_ca).unwrap();
    let answer = through(tunnel, controller.clone(), port).await.unwrap();
    assert!(
        answer.starts_with(b"ok\nHTTP/1.1 200"),
        "{}",
        lossy(&answer)
    );
    let api_port = b.api.port();
    let refused = through(tunnel, controller, api_port).await;
    assert!(is_refused(&refused), "{refused:?}");

    // Without a client certificate, and with the host's own (valid in the cluster, but not
    // the controller's): refused.
    let anonymous = client(&ca, None);
    assert!(is_refused(&through(tunnel, anonymous, port).await));
    let host = client(
        &ca,
        Some((
            baton_cluster::pem::certs(&read("cert.pem")).unwrap(),
            baton_cluster::pem::key(&read("key.pem")).unwrap(),
        )),
    );
    assert!(is_refused(&through(tunnel, host, port).await));

    // Plaintext to the tunnel: nothing of the instance comes back.
    let plain = plaintext(tunnel, port).await;
    assert!(
        !plain.starts_with(b"ok") && !plain.windows(4).any(|w| w == b"HTTP"),
        "{}",
        lossy(&plain)
    );
    let log = agents.log("web-1");
    for why in [
        format!("port {api_port} is not an instance of this host"),
        "not the controller's".to_string(),
    ] {
        assert!(log.contains(&why), "{why}\n{log}");
    }
    drop(agents);
}

/// Where the agent's tunnel listens, from its log line `tunnel listening listen=ADDR`.
fn tunnel_addr(log: &str) -> SocketAddr {
    let line = log
        .lines()
        .find(|l| l.contains("tunnel listening"))
        .unwrap_or_else(|| panic!("no tunnel in the agent's log:\n{log}"));
    let at = line.split("listen=").nth(1).unwrap();
    let addr: String = at
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().unwrap()
}

/// A TLS client of the tunnel trusting cluster CA `ca`, presenting `identity` if given.
fn client(
    ca: &rustls_pki_types::CertificateDer<'static>,
    identity: Option<(
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(baton_cluster::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![baton_cluster::TUNNEL_ALPN.to_vec()];
    config
}

/// Opens the tunnel with `config`, asks for `port`, sends `GET /` and returns all it got.
async fn through(
    tunnel: SocketAddr,
    config: rustls::ClientConfig,
    port: u16,
) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(tunnel).await?;
        let name = baton_cluster::tunnel_server_name("web-1").unwrap();
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        tls.write_all(&baton_cluster::preamble(port)).await?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await?;
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("the tunnel answers or closes")
}

/// What a plaintext client asking for `port` gets back.
async fn plaintext(tunnel: SocketAddr, port: u16) -> Vec<u8> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(tunnel).await.unwrap();
        let mut out = baton_cluster::preamble(port);
        out.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let _ = tcp.write_all(&out).await;
        let mut got = Vec::new();
        let _ = tcp.read_to_end(&mut got).await;
        got
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("the tunnel closes a plaintext client")
}

/// The tunnel closed without the agent's `ok` (or failed the handshake).
fn is_refused(result: &std::io::Result<Vec<u8>>) -> bool {
    match result {
        Ok(bytes) => !bytes.starts_with(baton_cluster::ACK),
        Err(_) => true,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
