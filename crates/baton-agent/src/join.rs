//! Joining: verify the controller against the CA the token pins, send `join` with a new
//! public key, and keep what comes back. The private key never leaves the host.

use std::sync::Arc;

use baton_cluster::{
    AgentMsg, ControllerMsg, FrameReader, Join, JoinToken, PROTOCOL_VERSION, VERSION, hex,
    write_frame_within,
};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::backoff::Backoff;
use crate::connect::{CONNECT_TIMEOUT, ConnectError, connect};
use crate::identity::{self, Identity};
use crate::{AgentError, AgentOptions};

/// Joins with `token`, retrying while the network fails; a refusal or a controller that is
/// not the pinned one ends it.
pub async fn join(opts: &AgentOptions, token: &str) -> Result<Identity, AgentError> {
    let parsed = JoinToken::parse(token).map_err(|e| AgentError::Usage(e.to_string()))?;
    let config =
        baton_cluster::join_config(parsed.ca).map_err(|e| AgentError::Join(e.to_string()))?;
    let config = Arc::new(config);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| AgentError::Join(format!("cannot generate a key: {e}")))?;
    let msg = AgentMsg::Join(Join {
        token: token.trim().to_string(),
        name: opts.name.clone(),
        address: opts.address,
        public_key: hex(key.public_key_raw()),
        version: VERSION.to_string(),
        protocol: PROTOCOL_VERSION,
    });
    let mut backoff = Backoff::default();
    loop {
        match attempt(opts, config.clone(), &msg).await {
            Ok(joined) => {
                identity::save(
                    &opts.data_dir,
                    &opts.name,
                    &joined.ca_pem,
                    &joined.cert_pem,
                    &key.serialize_pem(),
                )?;
                tracing::info!(host = %opts.name, data_dir = %opts.data_dir.display(), "joined the cluster");
                return identity::load(&opts.data_dir)?.ok_or_else(|| {
                    AgentError::Join("the credentials just written are gone".into())
                });
            }
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(why)) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %why, retry_in = ?delay, "cannot reach the controller to join");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

enum Attempt {
    Fatal(AgentError),
    Retry(String),
}

async fn attempt(
    opts: &AgentOptions,
    config: Arc<rustls::ClientConfig>,
    msg: &AgentMsg,
) -> Result<baton_cluster::Joined, Attempt> {
    let tls = match connect(&opts.controller, opts.address, config).await {
        Ok(tls) => tls,
        Err(ConnectError::Tls(why)) => return Err(Attempt::Fatal(AgentError::Join(why))),
        Err(ConnectError::Network(why)) => return Err(Attempt::Retry(why)),
    };
    let (rd, mut wr) = tokio::io::split(tls);
    write_frame_within(&mut wr, msg, CONNECT_TIMEOUT)
        .await
        .map_err(|e| Attempt::Retry(e.to_string()))?;
    let answer = tokio::time::timeout(
        CONNECT_TIMEOUT,
        FrameReader::new(rd).next::<ControllerMsg>(),
    )
    .await
    .map_err(|_| Attempt::Retry("the controller did not answer the join in time".into()))?
    .map_err(|e| Attempt::Retry(e.to_string()))?;
    match answer {
        Some(ControllerMsg::Joined(j)) => Ok(j),
        Some(ControllerMsg::Refused(r)) => Err(Attempt::Fatal(AgentError::Refused(r.reason))),
        Some(other) => Err(Attempt::Fatal(AgentError::Join(format!(
            "the controller answered the join with {other:?}; are both the same Baton version?"
        )))),
        None => Err(Attempt::Retry(
            "the controller closed the connection".into(),
        )),
    }
}
