//! Dialing the controller: a TCP connection from the host's own address (so the controller
//! sees it coming from the host), then TLS for the name `baton-controller`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::AgentError;

/// Longest wait for the TCP connection and the TLS handshake together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The TLS handshake failed: the controller is not who it must be, or refused us.
    Tls(String),
    /// The network failed: worth retrying.
    Network(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tls(s) | ConnectError::Network(s) => f.write_str(s),
        }
    }
}

/// Refuses an `--address` this machine does not have: instances will listen on it.
pub fn check_local_address(address: IpAddr) -> Result<(), AgentError> {
    std::net::TcpListener::bind(SocketAddr::new(address, 0))
        .map(drop)
        .map_err(|e| {
            AgentError::Usage(format!(
                "--address {address} is not an address of this machine ({e}): give the address this host's instances listen on and are reached at"
            ))
        })
}

/// Connects to `controller` from `from` and completes the TLS handshake with `config`.
pub async fn connect(
    controller: &str,
    from: IpAddr,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let attempt = async {
        let tcp = tcp(controller, from).await?;
        TlsConnector::from(config)
            .connect(baton_cluster::controller_name(), tcp)
            .await
            .map_err(|e| {
                let why = baton_cluster::describe_io_error(&e);
                match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(_) => ConnectError::Tls(format!(
                        "TLS with the controller at {controller} failed: {why}"
                    )),
                    None => ConnectError::Network(format!("{controller}: {why}")),
                }
            })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Network(format!(
                "{controller}: no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            )))
        })
}

async fn tcp(controller: &str, from: IpAddr) -> Result<TcpStream, ConnectError> {
    let net = |e: std::io::Error| ConnectError::Network(format!("{controller}: {e}"));
    let addrs = tokio::net::lookup_host(controller).await.map_err(net)?;
    let target = addrs
        .into_iter()
        .find(|a| a.is_ipv4() == from.is_ipv4())
        .ok_or_else(|| {
            ConnectError::Network(format!(
                "{controller} has no {} address to reach from {from}",
                if from.is_ipv4() { "IPv4" } else { "IPv6" }
            ))
        })?;
    let socket = if from.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(net)?;
    socket.bind(SocketAddr::new(from, 0)).map_err(net)?;
    let stream = socket.connect(target).await.map_err(net)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
