//! Admitting a new host: the token (known, right secret, not expired, not used), the name and
//! address (as configured in `[hosts.NAME]`), then a client certificate for the name over the
//! host's own public key. Every refusal is recorded as a `host_join_refused` event; no
//! message or event ever holds the token's secret.

use std::net::SocketAddr;

use baton_cluster::{ControllerMsg, Join, JoinToken, Joined, PROTOCOL_VERSION, pem, sha256_hex};
use baton_core::config::valid_host_name;
use baton_core::model::EventKind;
use baton_store::HostJoin;

use super::Cluster;
use super::listener::{record, refused};
use crate::clock;
use crate::shared::Shared;

/// Answers a `join`: `joined` with the host's certificate, or `refused` with what to fix.
pub(super) async fn admit(
    shared: &Shared,
    cluster: &Cluster,
    join: Join,
    peer: SocketAddr,
) -> ControllerMsg {
    let name = quoted(&join.name);
    match check_and_issue(shared, cluster, &join) {
        Ok((joined, generation, token)) => {
            record(
                shared,
                EventKind::HostJoined,
                &format!(
                    "host {} ({}) joined from {peer} with token {token}, generation {generation}, agent {}",
                    join.name,
                    join.address,
                    quoted(&join.version)
                ),
            );
            ControllerMsg::Joined(joined)
        }
        Err(reason) => {
            record(
                shared,
                EventKind::HostJoinRefused,
                &format!("join of host {name} from {peer} refused: {reason}"),
            );
            refused(reason)
        }
    }
}

/// A string an agent sent, for a message: escaped and cut to 64 characters.
fn quoted(s: &str) -> String {
    let head: String = s.chars().take(64).collect();
    format!("{head:?}")
}

fn check_and_issue(
    shared: &Shared,
    cluster: &Cluster,
    join: &Join,
) -> Result<(Joined, i64, String), String> {
    if join.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "the agent speaks protocol {} and this controller {PROTOCOL_VERSION}: run the same Baton version on both",
            join.protocol
        ));
    }
    let token = JoinToken::parse(&join.token).map_err(|e| e.to_string())?;
    if token.ca != cluster.fingerprint() {
        return Err("the token was made by another controller (its CA fingerprint differs): get a token from this one with `baton host token`".into());
    }
    let now = clock::now();
    let secret = token.secret_hash();
    shared
        .store
        .check_join_token(&token.id, &secret, now)
        .map_err(internal)?
        .map_err(|r| r.to_string())?;
    check_host(shared, join)?;
    let public_key = baton_cluster::from_hex_key(&join.public_key)
        .ok_or("the public key is not hex; is the agent the same Baton version?")?;
    let cert_pem = cluster
        .ca()
        .host_cert(&join.name, &public_key)
        .map_err(|e| e.to_string())?;
    let cert = pem::cert(cert_pem.as_bytes()).map_err(internal)?;
    let address = join.address.to_string();
    let generation = shared
        .store
        .join_host(&HostJoin {
            token_id: &token.id,
            secret_sha256: &secret,
            name: &join.name,
            address: &address,
            cert_sha256: &sha256_hex(&cert),
            version: &join.version,
            now,
        })
        .map_err(internal)?
        .map_err(|r| r.to_string())?;
    let joined = Joined {
        cert_pem,
        ca_pem: cluster.ca().cert_pem().to_string(),
    };
    Ok((joined, generation, token.id))
}

/// The name must be a configured host, and the address the one configured for it.
fn check_host(shared: &Shared, join: &Join) -> Result<(), String> {
    let name = &join.name;
    if !valid_host_name(name) {
        return Err(format!(
            "{} is not a host name: use a-z, 0-9 and '-' (at most 63), as in [hosts.NAME] of baton.toml",
            quoted(name)
        ));
    }
    let snapshot = shared.config();
    let Some(host) = snapshot.config.hosts.get(name) else {
        return Err(format!(
            "host {name} is not in the controller's baton.toml: add [hosts.{name}] with address = \"{}\" there and run `baton reload`, or start the agent with the --name of a configured host",
            join.address
        ));
    };
    if host.address != join.address {
        return Err(format!(
            "host {name} has address {} in the controller's baton.toml but the agent says {}: fix [hosts.{name}] address, or the agent's --address",
            host.address, join.address
        ));
    }
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> String {
    tracing::error!(error = %e, "join: internal error");
    format!("the controller failed to record the join ({e}); try again")
}
