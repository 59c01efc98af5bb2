//! The cluster listener: TLS only, on `[cluster] listen` and nothing else. A connection
//! without a client certificate may send one `join` and is closed after the answer; a
//! connection with one (verified against the cluster CA during the handshake) is a host's
//! session, and the host is the one whose last join issued that very certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use baton_cluster::{AgentMsg, ControllerMsg, FrameReader, Refused, sha256_hex, write_frame};
use baton_core::model::EventKind;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{Cluster, EVENT_APP, join, session};
use crate::clock;
use crate::shared::Shared;

/// Longest wait for a TLS handshake, and then for a connection's first message.
pub(super) const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most cluster connections at once (sessions and joins together); more are closed at once.
const MAX_CONNECTIONS: usize = 1024;

pub(super) type Reader = FrameReader<ReadHalf<TlsStream<TcpStream>>>;
pub(super) type Writer = WriteHalf<TlsStream<TcpStream>>;

/// An accepted connection, past its TLS handshake and first message.
pub(super) struct Conn {
    /// Where it comes from.
    pub peer: SocketAddr,
    /// Its incoming frames.
    pub reader: Reader,
    /// Its outgoing side.
    pub wr: Writer,
    /// Turns true when Baton stops.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// Accepts agents on `listener` until `stop` resolves.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = baton_cluster::controller_config(cluster.ca())?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "cluster listener: {MAX_CONNECTIONS} connections open, closing a new one");
            continue;
        };
        let (shared, cluster, acceptor) = (shared.clone(), cluster.clone(), acceptor.clone());
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "cluster listener: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "cluster listener: no TLS handshake in time");
                    return;
                }
            };
            connection(shared, cluster, tls, peer, stop).await;
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

async fn connection(
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| sha256_hex(c));
    let (rd, mut wr) = tokio::io::split(tls);
    let mut reader = FrameReader::new(rd);
    let first = match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, reader.next::<AgentMsg>()).await {
        Ok(Ok(Some(msg))) => msg,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "cluster connection: bad first message");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "cluster connection: no first message in time");
            return;
        }
    };
    let Some(leaf) = leaf else {
        // Without a client certificate, only a join is heard.
        let answer = match first {
            AgentMsg::Join(j) => join::admit(&shared, &cluster, j, peer).await,
            _ => refused(
                "a connection without a client certificate may only send join: join first with a token from `baton host token`",
            ),
        };
        close(&mut wr, &answer).await;
        return;
    };
    let name = match host_of(&shared, &leaf, peer) {
        Ok(name) => name,
        Err(refusal) => {
            close(&mut wr, &refusal).await;
            return;
        }
    };
    if let AgentMsg::Fetch { digest } = &first {
        if !shared.config.hosts.contains_key(&name) {
            let why = format!("host {name} is no longer in the controller's baton.toml");
            close(&mut wr, &refused(why)).await;
            return;
        }
        send_artifact(&shared, &name, digest, &mut wr).await;
        return;
    }
    let conn = Conn {
        peer,
        reader,
        wr,
        stop,
    };
    session::run(shared, cluster, name, first, conn).await;
}

/// The host whose last join issued the certificate with sha256 `leaf`, or the refusal.
#[allow(clippy::result_large_err)] // built once per connection, then sent
fn host_of(shared: &Shared, leaf: &str, peer: SocketAddr) -> Result<String, ControllerMsg> {
    match shared.store.host_by_cert(leaf) {
        Ok(Some(h)) => Ok(h.name),
        Ok(None) => {
            record(
                shared,
                EventKind::HostRefused,
                &format!(
                    "a connection from {peer} was refused: its certificate is not the latest issued to any host"
                ),
            );
            Err(refused(
                "this host certificate is no longer valid here: the host joined again since, or the controller's data was reset; join again with a new token from `baton host token` (remove the agent's data directory first)",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "cluster connection: cannot read hosts");
            Err(refused(
                "the controller cannot read its store; try again later",
            ))
        }
    }
}

/// A refusal message.
pub(super) fn refused(reason: impl Into<String>) -> ControllerMsg {
    ControllerMsg::Refused(Refused {
        reason: reason.into(),
    })
}

/// Sends the last message of a connection and closes it.
pub(super) async fn close(wr: &mut Writer, msg: &ControllerMsg) {
    let _ = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, async {
        let _ = write_frame(wr, msg).await;
        let _ = wr.shutdown().await;
    })
    .await;
}

/// Records a cluster event in the event log.
pub(super) fn record(shared: &Shared, kind: EventKind, message: &str) {
    if let Err(e) = shared.event(clock::now(), EVENT_APP, None, kind, message) {
        tracing::error!(error = %e, "cannot record a cluster event");
    }
}

/// Streams a stored artifact's canonical archive to a host that lacks it: an `artifact` frame
/// with its size, then the bytes. The agent stores it, which checks it and its digest.
async fn send_artifact(shared: &Shared, host: &str, digest: &str, wr: &mut Writer) {
    let file = match shared.artifacts.open_archive(digest) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(host, digest, error = %e, "a host asked for an artifact this controller cannot send");
            close(
                wr,
                &refused(format!(
                    "artifact {digest} is not in the controller's store"
                )),
            )
            .await;
            return;
        }
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let header = ControllerMsg::Artifact {
        digest: digest.to_string(),
        size,
    };
    let mut file = tokio::fs::File::from_std(file);
    let send = async {
        write_frame(wr, &header)
            .await
            .map_err(std::io::Error::other)?;
        tokio::io::copy(&mut file, wr).await?;
        wr.shutdown().await
    };
    // A host that stops reading must not hold a connection slot for ever.
    let sent = tokio::time::timeout(Duration::from_secs(600), send)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("timed out after 600s")));
    match sent {
        Ok(()) => tracing::info!(host, digest, size, "artifact sent to a host"),
        Err(e) => tracing::warn!(host, digest, error = %e, "sending an artifact to a host failed"),
    }
}
