//! Upgraded connections (WebSocket and other `101 Switching Protocols`): a byte tunnel between
//! client and backend that counts as in flight on the backend until it closes.

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::backend::InFlight;

/// Once both sides have switched, copies bytes both ways until either closes or the listener
/// is gone. The guard keeps the backend busy (so a drain waits) for the tunnel's life; the
/// registration keeps the listener's shutdown waiting (up to its `upgrade_grace`).
pub(crate) fn spawn_tunnel(
    client: OnUpgrade,
    backend: TcpStream,
    already_read: Bytes,
    guard: InFlight,
    closing: CancellationToken,
    registered: crate::signals::Client,
) {
    tokio::spawn(async move {
        let tunnel = async {
            let client = match client.await {
                Ok(client) => client,
                Err(error) => {
                    tracing::debug!(%error, "protocol switch failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut backend = backend;
            // What the backend sent right after its 101 head belongs to the new protocol.
            if !already_read.is_empty()
                && let Err(error) = client.write_all(&already_read).await
            {
                tracing::debug!(%error, "tunnel broken");
                return;
            }
            match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
                Err(error) => tracing::debug!(%error, "tunnel broken"),
            }
        };
        tokio::select! {
            () = tunnel => {}
            () = closing.cancelled() => tracing::debug!("tunnel closed by listener shutdown"),
        }
        drop(guard);
        drop(registered);
    });
}
