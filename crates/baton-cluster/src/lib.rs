//! The controller-agent channel: the cluster CA and the certificates it issues, join tokens,
//! the TLS configs of both ends, and the framed messages they exchange (docs/DESIGN.md "Many
//! hosts"), and the host tunnel through which the edge reaches other hosts' instances. Both `baton up` (crates/baton-server/src/cluster/) and `baton agent`
//! (crates/baton-agent) build on it; it knows nothing of the store or the config file.

mod ca;
mod fingerprint;
mod frame;
mod msg;
pub mod pem;
mod pin;
mod tls;
mod token;
mod tunnel;

pub use ca::{CONTROLLER_NAME, CaError, ClusterCa, Issued, write_private};
pub use fingerprint::{Fingerprint, from_hex_key, hex, random_bytes, sha256_hex};
pub use frame::{FrameError, FrameReader, MAX_FRAME, write_frame, write_frame_within};
pub use msg::{
    AgentMsg, ControllerMsg, HEARTBEAT_INTERVAL_MS, Hello, HostBreaker, Join, Joined,
    PROTOCOL_VERSION, Refused, TunnelOffer, Welcome,
};
pub use pin::PinnedCa;
pub use tls::{
    ALPN, TlsError, agent_config, controller_config, controller_name, describe_io_error,
    join_config, provider,
};
pub use token::{JoinToken, TOKEN_PREFIX, TokenParseError, digests_equal};
pub use tunnel::{
    ACK, MAX_PREAMBLE, PreambleError, TUNNEL_ALPN, TunnelCert, is_controller, keepalive,
    parse_preamble, preamble, read_preamble, tunnel_client_config, tunnel_server_config,
    tunnel_server_name,
};

/// The version of Baton this crate was built with; agents report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
