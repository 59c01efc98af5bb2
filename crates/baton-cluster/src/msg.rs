//! The messages of the controller-agent channel, one JSON object per frame (`frame.rs`),
//! tagged by `"type"`.
//!
//! A connection opens with one [`AgentMsg`]: `join` on a connection without a client
//! certificate (the only message such a connection may send; the controller answers `joined`
//! or `refused` and closes), or `hello` on a mutually authenticated one (answered `welcome`
//! or `refused`). After `welcome` the agent sends `heartbeat` every
//! [`HEARTBEAT_INTERVAL_MS`] and the controller answers each with `heartbeat`.
//!
//! Desired and observed state are added here as new variants of [`ControllerMsg`] and
//! [`AgentMsg`] (e.g. `ControllerMsg::Desired(DesiredHost)` and `AgentMsg::Observed(..)`)
//! with their own typed structs; bump [`PROTOCOL_VERSION`] when a peer of the previous version
//! could not understand them (an unknown `type` is a protocol error that closes the
//! connection).

use std::collections::BTreeMap;
use std::net::IpAddr;

use baton_core::run::{HostSplit, RunSpec, Running};
use serde::{Deserialize, Serialize};

/// The version of this protocol, sent in `join` and `hello`.
/// 3: `HostApp::tls` (an agent of version 2 would serve an HTTPS app's `host_port` in plain HTTP).
/// 4: `Hello::tunnel` and `Welcome::tunnel_cert`: the edge reaches a host's instances only
/// through its tunnel (an agent of version 3 would leave them listening on the host's address).
/// 5: `HostApp::breakers`, `outlier` and `flags`, and `AgentMsg::Breaker`: a host's
/// `host_port` listener runs the app's breakers and outlier ejection, reports breaker
/// transitions, and adds the `X-Baton-Flags` header.
pub const PROTOCOL_VERSION: u32 = 5;
/// How often an agent sends a heartbeat, in milliseconds.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1000;

/// A message from an agent to the controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMsg {
    /// Asks to join the cluster with a token (only on a connection without a client
    /// certificate).
    Join(Join),
    /// Opens a session on a mutually authenticated connection.
    Hello(Hello),
    /// The agent is alive.
    Heartbeat,
    /// An instance the controller asked for runs (also the answer to a repeated `run`).
    Started(Running),
    /// An instance the controller asked for could not start.
    StartFailed {
        /// The instance id.
        instance: String,
        /// Why, for the event log.
        error: String,
    },
    /// An instance exited without being asked to (a crash).
    Exited {
        /// The instance id.
        instance: String,
        /// The pid of the run that ended.
        pid: u32,
        /// How it ended.
        info: String,
    },
    /// An instance the controller asked to stop is gone.
    Stopped {
        /// The instance id.
        instance: String,
    },
    /// The requests each app's listener on the host (`host_port`) received since the agent
    /// started, sent with a heartbeat when they changed: the external-LB handshake watches a
    /// host's traffic stop and return.
    Served {
        /// Requests by app (unit key).
        apps: BTreeMap<String, u64>,
    },
    /// A circuit breaker of an app's `host_port` listener on this host changed state.
    Breaker(HostBreaker),
    /// Opens a connection of its own to download an artifact (mutually authenticated): the
    /// controller answers `artifact` and then the canonical archive's bytes, raw.
    Fetch {
        /// The artifact's digest.
        digest: String,
    },
}

/// A breaker transition on a host's `host_port` listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostBreaker {
    /// The app's unit key (`web@production`).
    pub app: String,
    /// The breaker's name.
    pub breaker: String,
    /// From, to, when, why and the figures.
    pub transition: baton_core::breaker::Transition,
}

/// A message from the controller to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControllerMsg {
    /// The join succeeded: the host's certificate and the cluster CA.
    Joined(Joined),
    /// The session is open.
    Welcome(Welcome),
    /// The join or the hello was refused; the controller closes the connection.
    Refused(Refused),
    /// The answer to an agent's heartbeat: the controller is alive.
    Heartbeat,
    /// Run this instance (idempotent: one that runs is reported as it is).
    Run(RunSpec),
    /// Stop this instance: SIGTERM, SIGKILL after `timeout_ms` (idempotent).
    Stop {
        /// The instance id.
        instance: String,
        /// How long it gets between SIGTERM and SIGKILL.
        timeout_ms: u64,
    },
    /// What the host's own proxy serves (`host_port`), whole; replaces the previous one.
    Split(HostSplit),
    /// The answer to `fetch`: `size` raw bytes of the canonical archive follow the frame.
    Artifact {
        /// The digest asked for.
        digest: String,
        /// How many bytes follow.
        size: u64,
    },
}

/// `join`: everything the controller needs to admit a new host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// The whole join token (`BATON-JOIN-1....`).
    pub token: String,
    /// The host's name, as in `[hosts.NAME]`.
    pub name: String,
    /// The host's address, as in `[hosts.NAME] address`.
    pub address: IpAddr,
    /// The host's new public key: an uncompressed P-256 point, hex. Its private key never
    /// leaves the host.
    pub public_key: String,
    /// The agent's version (`baton --version`).
    pub version: String,
    /// [`PROTOCOL_VERSION`] of the agent.
    pub protocol: u32,
}

/// `hello`: the host is known by its certificate; this says what runs there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The agent's version.
    pub version: String,
    /// [`PROTOCOL_VERSION`] of the agent.
    pub protocol: u32,
    /// The address the agent was started with; it must still match the config.
    pub address: IpAddr,
    /// The instances the agent runs (re-adopted after a restart of the agent): the controller
    /// keeps those it wants and stops the others (a host back after being lost).
    #[serde(default)]
    pub running: Vec<Running>,
    /// The agent's tunnel listener (`tunnel.rs`), through which the edge reaches its instances.
    #[serde(default)]
    pub tunnel: Option<TunnelOffer>,
}

/// Where a host's tunnel listens, and the key its certificate is to be issued over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelOffer {
    /// The port on the host's address.
    pub port: u16,
    /// The listener's public key, made at the agent's start: an uncompressed P-256 point, hex.
    pub public_key: String,
}

/// `joined`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Joined {
    /// The host's certificate (PEM).
    pub cert_pem: String,
    /// The cluster CA certificate (PEM), whose fingerprint the token pinned.
    pub ca_pem: String,
}

/// `welcome`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    /// The host's generation: incremented at every join and every session, so that a
    /// message of an older session can be told apart and ignored.
    pub generation: u64,
    /// The controller closes the session after this long without a heartbeat; the agent
    /// does the same without an answer.
    pub heartbeat_timeout_ms: u64,
    /// The tunnel listener's server certificate (PEM), issued over `Hello::tunnel`'s key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_cert: Option<String>,
}

/// `refused`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    /// Why, and what to do about it.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let m = AgentMsg::Heartbeat;
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"heartbeat"}"#
        );
        let w = ControllerMsg::Welcome(Welcome {
            generation: 3,
            heartbeat_timeout_ms: 5000,
            tunnel_cert: None,
        });
        let text = serde_json::to_string(&w).unwrap();
        assert_eq!(
            text,
            r#"{"type":"welcome","generation":3,"heartbeat_timeout_ms":5000}"#
        );
        assert_eq!(serde_json::from_str::<ControllerMsg>(&text).unwrap(), w);
        assert!(serde_json::from_str::<AgentMsg>(r#"{"type":"desired"}"#).is_err());
    }
}
