//! The host's tunnel listener (crates/baton-cluster/src/tunnel.rs has the protocol): the only
//! way into this host's instances from another machine. TLS 1.3 with the certificate the
//! controller issued in `welcome` (over a key made at the agent's start), the controller's
//! certificate required of the client; then one preamble naming the local port of one of
//! this host's instances, which the agent connects to on loopback and splices. It is never an
//! app listener and never the control channel.
//!
//! An agent restart hands the listening socket over (the port stays); the old agent stops
//! accepting and keeps splicing each of its connections until the edge closes it. The edge
//! does so as soon as the new agent's session opens (the host's tunnel epoch moves: its
//! idle connections are closed at once, the others when their exchange ends, and none is
//! reused), so nothing is cut mid-answer: a long response, server-sent events or a
//! WebSocket go on until they end, or until [`DRAIN_TIMEOUT`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton_cluster::{ACK, TunnelCert, TunnelOffer};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::AgentError;
use crate::executor::Executor;

/// Longest a client may take for the handshake and its preamble.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the connect to a local instance may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The hand-over name of the tunnel's socket (an agent restart keeps its port).
const SOCKET_NAME: &str = "tunnel";
/// Longest a draining agent waits for the edge to close its tunnel connections: a stream
/// still open then is cut.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Bytes copied per read, each way.
const SPLICE_BUF: usize = 16 * 1024;
/// Most connections in their handshake or preamble at once; more are closed at accept, so
/// strangers cannot hold the agent's file descriptors (which its `host_port` listeners share).
const MAX_OPENING: usize = 64;
/// A spliced connection with no byte either way for this long is closed (a peer gone
/// without a word, a network cut): the edge's pool closes its idle connections far sooner.
const SPLICE_IDLE: Duration = Duration::from_secs(600);
/// The tunnel's key in the agent's data dir (0600), kept across restarts.
const KEY_FILE: &str = "tunnel-key.pem";
/// The last certificate the controller issued for it: a restarted agent serves the tunnel at
/// once, before its new session's `welcome`.
const CERT_FILE: &str = "tunnel.pem";

/// The tunnel of this host: its port, and its key waiting for a certificate.
pub(crate) struct Tunnel {
    port: u16,
    public_key: Vec<u8>,
    key: PrivateKeyDer<'static>,
    cert: Arc<TunnelCert>,
    accept: tokio::task::JoinHandle<()>,
    /// One clone per open connection.
    open: Arc<()>,
    /// Where the certificate is kept.
    cert_file: PathBuf,
}

/// The tunnel's key: the stored one, or a new one (stored, and any certificate for an older
/// key removed).
fn load_or_make_key(dir: &Path) -> Result<rcgen::KeyPair, AgentError> {
    let stored = std::fs::read_to_string(dir.join(KEY_FILE)).ok();
    if let Some(key) = stored.and_then(|pem| rcgen::KeyPair::from_pem(&pem).ok()) {
        return Ok(key);
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| AgentError::Join(format!("cannot make the tunnel's key: {e}")))?;
    let _ = std::fs::remove_file(dir.join(CERT_FILE));
    baton_cluster::write_private(&dir.join(KEY_FILE), key.serialize_pem().as_bytes())
        .map_err(AgentError::Store)?;
    Ok(key)
}

impl Tunnel {
    /// Listens on `address:port` (the predecessor's socket after a restart) and serves
    /// connections to `executor`'s instances; handshakes fail until [`Tunnel::install`].
    pub(crate) async fn start(
        data_dir: &Path,
        address: IpAddr,
        port: u16,
        ca: &CertificateDer<'static>,
        sockets: &baton_proxy::handoff::Sockets,
        executor: Arc<Executor>,
    ) -> Result<Tunnel, AgentError> {
        let key = load_or_make_key(data_dir)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let cert = Arc::new(TunnelCert::default());
        let cert_file = data_dir.join(CERT_FILE);
        if let Ok(pem) = std::fs::read(&cert_file) {
            let stored = baton_cluster::pem::certs(&pem)
                .map_err(|e| e.to_string())
                .and_then(|chain| cert.set(chain, &private).map_err(|e| e.to_string()));
            if let Err(e) = stored {
                tracing::warn!(error = %e, file = %cert_file.display(), "ignoring the stored tunnel certificate; waiting for the controller's");
            }
        }
        let config = baton_cluster::tunnel_server_config(ca, cert.clone())
            .map_err(|e| AgentError::Join(format!("cannot set up the tunnel: {e}")))?;
        let addr = SocketAddr::new(address, port);
        let listener = sockets.listen(SOCKET_NAME, addr).await.map_err(|e| {
            AgentError::Usage(format!(
                "cannot listen for the tunnel on {addr}: {e}: free the port or pick another with --tunnel-port"
            ))
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| AgentError::Io {
                path: "tunnel listener".into(),
                source,
            })?
            .port();
        tracing::info!(listen = %SocketAddr::new(address, port), "tunnel listening");
        let open = Arc::new(());
        let conns = Conns {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            executor,
            _open: open.clone(),
        };
        Ok(Tunnel {
            port,
            public_key: key.public_key_raw().to_vec(),
            key: private,
            cert,
            accept: tokio::spawn(serve(listener, conns)),
            open,
            cert_file,
        })
    }

    /// After a hand-over: accepts no more (the new agent does) and waits, at most
    /// [`DRAIN_TIMEOUT`], for the edge to close the open connections.
    pub(crate) async fn drain(&self) {
        self.accept.abort();
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        // The accept task holds one clone until its abort lands.
        while Arc::strong_count(&self.open) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = Arc::strong_count(&self.open) - 1;
        if left > 0 {
            tracing::warn!(
                left,
                "tunnel connections still open after the drain timeout; closing them"
            );
        }
    }

    /// What `hello` says of the tunnel.
    pub(crate) fn offer(&self) -> TunnelOffer {
        TunnelOffer {
            port: self.port,
            public_key: baton_cluster::hex(&self.public_key),
        }
    }

    /// Serves the certificate the controller issued (`welcome`), and keeps it for the next
    /// start.
    pub(crate) fn install(&self, cert_pem: &str) {
        let installed = baton_cluster::pem::certs(cert_pem.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|chain| self.cert.set(chain, &self.key).map_err(|e| e.to_string()));
        if let Err(e) = installed {
            tracing::error!(error = %e, "cannot use the tunnel certificate from the controller");
            return;
        }
        if let Err(e) = baton_cluster::write_private(&self.cert_file, cert_pem.as_bytes()) {
            tracing::warn!(error = %e, "cannot keep the tunnel certificate; a restart waits for the controller's");
        }
    }
}

/// What each connection needs.
#[derive(Clone)]
struct Conns {
    acceptor: TlsAcceptor,
    executor: Arc<Executor>,
    /// Counts the connection as open while it lives ([`Tunnel::drain`] waits for them).
    _open: Arc<()>,
}

async fn serve(listener: TcpListener, conns: Conns) {
    let opening = Arc::new(tokio::sync::Semaphore::new(MAX_OPENING));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "tunnel accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = opening.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "tunnel connection closed: {MAX_OPENING} others are still in their handshake");
            continue;
        };
        let conns = conns.clone();
        tokio::spawn(async move {
            if let Err(e) = open(tcp, &conns, permit).await {
                tracing::warn!(%peer, error = %e, "tunnel connection refused");
            }
        });
    }
}

/// One tunnel connection: handshake, controller check, preamble, connect, splice.
async fn open(
    tcp: TcpStream,
    conns: &Conns,
    opening: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    baton_cluster::keepalive(&tcp);
    let open = async {
        let mut tls = conns
            .acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("handshake: {}", baton_cluster::describe_io_error(&e)))?;
        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        if !leaf.is_some_and(baton_cluster::is_controller) {
            return Err("the client's certificate is not the controller's".to_string());
        }
        // rustls accepts a client that offers no ALPN at all: only the tunnel's own may pass.
        if tls.get_ref().1.alpn_protocol() != Some(baton_cluster::TUNNEL_ALPN) {
            return Err("the client did not ask for the tunnel protocol (ALPN)".to_string());
        }
        let port = baton_cluster::read_preamble(&mut tls)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((tls, port))
    };
    let (mut tls, port) = tokio::time::timeout(OPEN_TIMEOUT, open)
        .await
        .map_err(|_| format!("no handshake and preamble within {OPEN_TIMEOUT:?}"))??;
    drop(opening);
    if !conns.executor.running().iter().any(|r| r.port == port) {
        return Err(format!("port {port} is not an instance of this host"));
    }
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let instance = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} took over {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = instance.set_nodelay(true);
    tls.write_all(ACK).await.map_err(|e| e.to_string())?;
    tls.flush().await.map_err(|e| e.to_string())?;
    // Either side closing ends the splice; errors then are the usual resets, not news.
    let _ = splice(tls, instance).await;
    Ok(())
}

/// Copies bytes both ways until both sides have closed, or nothing went either way for
/// [`SPLICE_IDLE`]. The agent never closes a connection on its own otherwise: it does not
/// follow HTTP framing, so only the edge knows when a connection is between exchanges.
async fn splice(tls: TlsStream<TcpStream>, mut instance: TcpStream) -> std::io::Result<()> {
    let (mut edge_rd, mut edge_wr) = tokio::io::split(tls);
    let (mut inst_rd, mut inst_wr) = instance.split();
    let (mut up, mut down) = (vec![0u8; SPLICE_BUF], vec![0u8; SPLICE_BUF]);
    let (mut up_open, mut down_open) = (true, true);
    let mut last = Instant::now();
    while up_open || down_open {
        tokio::select! {
            n = edge_rd.read(&mut up), if up_open => match n? {
                0 => {
                    up_open = false;
                    inst_wr.shutdown().await?;
                }
                n => {
                    inst_wr.write_all(&up[..n]).await?;
                    last = Instant::now();
                }
            },
            n = inst_rd.read(&mut down), if down_open => match n? {
                0 => {
                    down_open = false;
                    edge_wr.shutdown().await?;
                }
                n => {
                    edge_wr.write_all(&down[..n]).await?;
                    edge_wr.flush().await?;
                    last = Instant::now();
                }
            },
            () = tokio::time::sleep_until(last + SPLICE_IDLE) => {
                let _ = edge_wr.shutdown().await;
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_kept_across_starts_and_a_new_one_drops_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_make_key(dir.path()).unwrap();
        let again = load_or_make_key(dir.path()).unwrap();
        assert_eq!(first.public_key_raw(), again.public_key_raw());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A certificate for that key is kept; a key file that no longer parses makes a new
        // key, and the certificate of the old one goes.
        std::fs::write(dir.path().join(CERT_FILE), "a certificate").unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "garbage").unwrap();
        let fresh = load_or_make_key(dir.path()).unwrap();
        assert_ne!(fresh.public_key_raw(), first.public_key_raw());
        assert!(!dir.path().join(CERT_FILE).exists());
        let kept = load_or_make_key(dir.path()).unwrap();
        assert_eq!(kept.public_key_raw(), fresh.public_key_raw());
    }
}
