//! Baton's HTTP/1.1 wire code, apart from the proxy's policy (routing, selection, retry,
//! health, drain), so that it can be read, reviewed and fuzzed alone.
//!
//! - [`request`]: request heads as Baton's own server side takes them, parsed into offsets in
//!   the read buffer, anything unusual left to hyper's server.
//! - [`rules`]: what RFC 9112 (and 9110, 9113) requires of a request before it is forwarded,
//!   checked on hyper's parsed request too, and which headers are hop-by-hop.
//! - [`response`]: response heads from instances, the framing of their bodies, and the pieces
//!   of a response head written to clients.
//! - [`chunked`]: the chunked transfer coding, decoder and encoder.
//! - [`client`]: the client connection to instances: one exchange on a pooled connection,
//!   the response body read from it as the client takes it ([`body`]).
//! - [`pool`]: the idle keep-alive connections to one instance.
//!
//! Modules depend on each other one way only: `error` and `chunked` below all, then `pool`,
//! `body`, `rules`, `response`, `request` and `client` on top.

pub mod body;
pub mod chunked;
pub mod client;
mod error;
pub mod pool;
pub mod request;
pub mod response;
pub mod rules;

pub use body::{RequestBody, UpstreamBody};
pub use client::{BodyFraming, Incoming, Outgoing};
pub use error::UpstreamError;
pub use pool::{Conn, Dial, Pool};
pub use response::Head;
pub use rules::Refusal;
