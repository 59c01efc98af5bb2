//! The edge's side of the host tunnel (crates/baton-cluster/src/tunnel.rs): how the
//! controller's proxy, health checks and metrics scrapes reach an instance on another host.
//!
//! A [`HostDial`] opens a TLS connection to the host's tunnel (the host's certificate checked
//! against the cluster CA for the host's name, the controller's certificate presented), names
//! the instance's port, waits for the agent's answer (so that an instance that is gone is a
//! connect error, retried elsewhere, as for a local one), and hands the pool a loopback TCP
//! stream spliced to it: the proxy's HTTP/1.1 client and its keep-alive pool stay as they are,
//! one pooled connection being one tunnel connection.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use baton_cluster::{ACK, preamble, tunnel_server_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Cluster;

/// Most strangers' connections skipped on a bridge's loopback listener before giving up.
const MAX_STRANGERS: usize = 8;

/// Opens connections to the instance on `port` of host `host`, through its tunnel.
pub struct HostDial {
    cluster: Arc<Cluster>,
    host: String,
    port: u16,
    /// The host's tunnel epoch (`Cluster::tunnel_epoch`).
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for HostDial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostDial")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

impl HostDial {
    /// A dialer for the instance listening on loopback port `port` of host `host`.
    pub fn new(cluster: Arc<Cluster>, host: &str, port: u16) -> Arc<HostDial> {
        Arc::new(HostDial {
            epoch: cluster.tunnel_epoch(host),
            cluster,
            host: host.to_string(),
            port,
        })
    }

    /// A TLS connection to the host's tunnel, spliced to the instance.
    pub async fn open(&self) -> io::Result<TlsStream<TcpStream>> {
        let addr = self.cluster.tunnel_addr(&self.host).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!(
                    "host {} has not said where its tunnel listens (its agent has not connected since the controller started)",
                    self.host
                ),
            )
        })?;
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        baton_cluster::keepalive(&tcp);
        let name = tunnel_server_name(&self.host).map_err(io::Error::other)?;
        let mut tls = TlsConnector::from(self.cluster.tunnel_client.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "tunnel of host {} at {addr}: {}",
                        self.host,
                        baton_cluster::describe_io_error(&e)
                    ),
                )
            })?;
        tls.write_all(&preamble(self.port)).await?;
        let mut answer = [0u8; ACK.len()];
        match tls.read_exact(&mut answer).await {
            Ok(_) if &answer == ACK => Ok(tls),
            Ok(_) => Err(io::Error::other(format!(
                "tunnel of host {} at {addr}: not a tunnel's answer",
                self.host
            ))),
            // The agent closes without a word both when no instance of its host listens on
            // the port and when it refuses the controller's certificate (TLS 1.3 reports
            // the client's rejection only at the first read): its log says which.
            Err(e) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "tunnel of host {} at {addr} closed instead of accepting port {}: {}; no instance of the host listens there, or the agent refused this controller's certificate (see the agent's log)",
                    self.host,
                    self.port,
                    baton_cluster::describe_io_error(&e)
                ),
            )),
        }
    }
}

impl baton_proxy::Dial for HostDial {
    fn dial(&self) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send + '_>> {
        Box::pin(async move { bridge(self.open().await?).await })
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A loopback TCP stream whose far end is spliced to `tls`, for a client that takes only
/// TCP streams. The far end is the connection from the stream's own address: a stranger's
/// connection racing in on the short-lived listener is closed.
async fn bridge(mut tls: TlsStream<TcpStream>) -> io::Result<TcpStream> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let near = TcpStream::connect(listener.local_addr()?).await?;
    let me = near.local_addr()?;
    for _ in 0..MAX_STRANGERS {
        let (mut far, from) = listener.accept().await?;
        if from != me {
            continue;
        }
        let _ = near.set_nodelay(true);
        let _ = far.set_nodelay(true);
        tokio::spawn(async move {
            let _ = tokio::io::copy_bidirectional(&mut far, &mut tls).await;
        });
        return Ok(near);
    }
    Err(io::Error::other(
        "too many strangers' connections on the tunnel's loopback bridge",
    ))
}
