//! Upgraded connections (WebSocket and other `101 Switching Protocols`): a byte tunnel between
//! client and backend that counts as in flight on the backend until it closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::backend::InFlight;

/// Once both sides have switched, copies bytes both ways until either closes or the listener
/// is gone. The guard keeps the backend busy (so a drain waits) for the tunnel's life.
pub(crate) fn spawn_tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    guard: InFlight,
    closing: CancellationToken,
) {
    tokio::spawn(async move {
        let tunnel = async {
            let (client, backend) = match tokio::try_join!(client, backend) {
                Ok(both) => both,
                Err(error) => {
                    tracing::debug!(%error, "protocol switch failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
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
    });
}
