//! The tunnel's preamble and who its handshake lets through, over real TLS on in-memory pipes.

use super::*;
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[test]
fn a_preamble_names_one_port_in_plain_decimal() {
    assert_eq!(parse_preamble(b"baton-tunnel 8080"), Ok(8080));
    assert_eq!(parse_preamble(&preamble(65535)[..18]), Ok(65535));
    for bad in [
        &b""[..],
        b"baton-tunnel",
        b"baton-tunnel ",
        b"baton-tunnel 0",
        b"baton-tunnel 65536",
        b"baton-tunnel +80",
        b"baton-tunnel 80 ",
        b"baton-tunnel  80",
        b"baton-tunnel 000080",
        b"BATON-TUNNEL 80",
        b"GET / HTTP/1.1",
        b"baton-tunnel \xff",
    ] {
        assert!(
            matches!(parse_preamble(bad), Err(PreambleError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[tokio::test]
async fn reading_a_preamble_is_bounded_and_leaves_what_follows() {
    let mut input: &[u8] = b"baton-tunnel 443\nGET / HTTP/1.1\r\n";
    assert_eq!(read_preamble(&mut input).await, Ok(443));
    assert_eq!(input, b"GET / HTTP/1.1\r\n");

    let long = vec![b'a'; 10 * MAX_PREAMBLE];
    let mut input: &[u8] = &long;
    assert_eq!(read_preamble(&mut input).await, Err(PreambleError::TooLong));
    // Only the bound and one byte more were taken.
    assert_eq!(input.len(), long.len() - MAX_PREAMBLE - 1);

    let mut input: &[u8] = b"baton-tunnel 44";
    assert_eq!(read_preamble(&mut input).await, Err(PreambleError::Ended));
}

fn ca() -> (tempfile::TempDir, ClusterCa) {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::load_or_create(dir.path()).unwrap();
    (dir, ca)
}

/// A tunnel listener's config for host `name`, its certificate issued by `ca`.
fn agent_side(ca: &ClusterCa, name: &str) -> ServerConfig {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = ca.tunnel_cert(name, key.public_key_raw()).unwrap();
    let cert = Arc::new(TunnelCert::default());
    let private = crate::pem::key(key.serialize_pem().as_bytes()).unwrap();
    cert.set(crate::pem::certs(pem.as_bytes()).unwrap(), &private)
        .unwrap();
    tunnel_server_config(ca.cert_der(), cert).unwrap()
}

/// A handshake to host `name`: whether the client finished, and whether the server saw the
/// controller.
async fn handshake(server: ServerConfig, client: ClientConfig, name: &str) -> (bool, bool) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server = tokio::spawn(async move {
        let s = acceptor.accept(b).await.ok()?;
        let leaf = s.get_ref().1.peer_certificates()?.first()?.clone();
        Some(is_controller(&leaf))
    });
    let client = TlsConnector::from(Arc::new(client))
        .connect(tunnel_server_name(name).unwrap(), a)
        .await;
    let seen = server.await.unwrap();
    (client.is_ok(), seen == Some(true))
}

#[tokio::test]
async fn only_the_controller_of_the_same_cluster_opens_a_hosts_tunnel() {
    let (_d1, ours) = ca();
    let (_d2, theirs) = ca();
    let edge = tunnel_client_config(&ours).unwrap();
    assert_eq!(
        handshake(agent_side(&ours, "web-1"), edge.clone(), "web-1").await,
        (true, true)
    );
    // The certificate names another host: the edge refuses it.
    let (ok, _) = handshake(agent_side(&ours, "web-2"), edge.clone(), "web-1").await;
    assert!(!ok, "a tunnel certificate for another host name");
    // A tunnel of another cluster, and an edge of another cluster.
    let (ok, _) = handshake(agent_side(&theirs, "web-1"), edge, "web-1").await;
    assert!(!ok);
    let foreign = tunnel_client_config(&theirs).unwrap();
    let (_, seen) = handshake(agent_side(&ours, "web-1"), foreign, "web-1").await;
    assert!(!seen);

    // Another host of the cluster has a valid client certificate, but is not the controller.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let chain = crate::pem::certs(
        ours.host_cert("web-2", key.public_key_raw())
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let private = crate::pem::key(key.serialize_pem().as_bytes()).unwrap();
    let mut host = crate::tls::agent_config(ours.cert_der(), chain, private).unwrap();
    host.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
    let (_, seen) = handshake(agent_side(&ours, "web-1"), host, "web-1").await;
    assert!(
        !seen,
        "a host's certificate must not pass as the controller"
    );

    // No client certificate at all: the handshake fails.
    let mut anonymous = crate::tls::join_config(ours.fingerprint()).unwrap();
    anonymous.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
    let (_, seen) = handshake(agent_side(&ours, "web-1"), anonymous, "web-1").await;
    assert!(!seen);
}

#[tokio::test]
async fn a_tunnel_without_its_certificate_yet_refuses_handshakes() {
    let (_d, ours) = ca();
    let cert = Arc::new(TunnelCert::default());
    assert!(!cert.is_set());
    let server = tunnel_server_config(ours.cert_der(), cert).unwrap();
    let (ok, _) = handshake(server, tunnel_client_config(&ours).unwrap(), "web-1").await;
    assert!(!ok);
}
