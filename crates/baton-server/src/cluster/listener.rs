//! The cluster listener: TLS only, on `[cluster] listen` and nothing else. A connection
//! without a client certificate may send one `join` and is closed after the answer; a
//! connection with one (verified against the cluster CA during the handshake) is a host's
//! session, and the host is the one whose last join issued that very certificate.
//!
//! Before a connection is known to be a host's (its handshake, its first message, a join),
//! it must be quick ([`FIRST_MESSAGE_TIMEOUT`] for all of it) and its address may have only
//! [`MAX_PENDING_PER_IP`] such connections open: one address cannot take every slot.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
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

/// Longest wait for a connection's TLS handshake and first message, together.
pub(super) const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most cluster connections at once (sessions and joins together); more are closed at once.
const MAX_CONNECTIONS: usize = 1024;
/// Most connections from one address that are not yet known to be a host's (in their
/// handshake or first message, or joining); more from it are closed at once. Agents open one
/// session and a connection per artifact download, each authenticated in milliseconds.
pub(super) const MAX_PENDING_PER_IP: usize = 8;

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
    let pending = Arc::new(Pending::default());
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
        let Some(unproven) = pending.take(peer.ip()) else {
            continue;
        };
        let (shared, cluster, acceptor) = (shared.clone(), cluster.clone(), acceptor.clone());
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let preamble = tokio::time::Instant::now() + FIRST_MESSAGE_TIMEOUT;
            let tls = match tokio::time::timeout_at(preamble, acceptor.accept(tcp)).await {
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
            let first = Preamble {
                deadline: preamble,
                unproven,
            };
            connection(shared, cluster, tls, peer, first, stop).await;
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// What a connection has until it is known to be a host's.
struct Preamble {
    /// When its first message must have arrived (its handshake counted).
    deadline: tokio::time::Instant,
    /// Its place among its address's unproven connections.
    unproven: PendingSlot,
}

async fn connection(
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    preamble: Preamble,
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
    let first = match tokio::time::timeout_at(preamble.deadline, reader.next::<AgentMsg>()).await {
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
    // A host's own connection from here on: it no longer counts against its address.
    drop(preamble.unproven);
    if let AgentMsg::Fetch { digest } = &first {
        if !shared.config().config.hosts.contains_key(&name) {
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

// === impl Pending ===

/// How many unproven connections each address has open.
#[derive(Default)]
pub(super) struct Pending {
    by_ip: Mutex<HashMap<IpAddr, PerIp>>,
}

#[derive(Default)]
struct PerIp {
    open: usize,
    /// Whether the refusals of this episode at the limit were logged already.
    warned: bool,
}

/// One unproven connection of an address; freed on drop.
pub(super) struct PendingSlot {
    pending: Arc<Pending>,
    ip: IpAddr,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, PerIp>> {
        self.by_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more unproven connection from `ip`, unless it has
    /// [`MAX_PENDING_PER_IP`] already.
    pub(super) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<PendingSlot> {
        let mut by_ip = self.lock();
        let entry = by_ip.entry(ip).or_default();
        if entry.open >= MAX_PENDING_PER_IP {
            if !entry.warned {
                entry.warned = true;
                tracing::warn!(%ip, "cluster listener: {MAX_PENDING_PER_IP} connections from this address are not past their handshake and first message; closing its new ones until they are");
            }
            return None;
        }
        entry.open += 1;
        Some(PendingSlot {
            pending: self.clone(),
            ip,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut by_ip = self.pending.lock();
        if let Some(entry) = by_ip.get_mut(&self.ip) {
            entry.open -= 1;
            if entry.open == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_a_bounded_number_of_unproven_connections_and_others_are_apart() {
        let pending = Arc::new(Pending::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut held: Vec<PendingSlot> = (0..MAX_PENDING_PER_IP)
            .map(|_| pending.take(a).expect("under the limit"))
            .collect();
        assert!(pending.take(a).is_none(), "over the limit");
        assert!(pending.take(b).is_some(), "another address is not affected");
        held.pop();
        assert!(pending.take(a).is_some(), "a freed place is taken again");
        held.clear();
        assert!(
            pending.lock().is_empty(),
            "nothing is kept for idle addresses"
        );
    }
}
