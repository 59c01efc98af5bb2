//! Baton's data plane: per-app listeners, the split snapshot, backend selection, health checks, drain, per-release metrics.
//!
//! The controller builds [`Backend`]s as instances start, publishes [`RoutingTable`]s through
//! a [`Router`], runs one [`serve`] per app listener and one [`spawn_health_checker`] per
//! backend, and reads [`Backend::metrics`] for analysis. A listener that terminates TLS gets
//! a [`Tls`] (its certificates, reloaded as they change) and, if asked, a [`serve_redirect`]
//! listener beside it.

mod affinity;
mod backend;
mod body;
mod breaker;
mod date;
mod error;
mod flags;
mod forward;
mod h1;
pub mod handoff;
mod headers;
mod health;
mod listener;
mod metrics;
pub mod mirror;
mod outlier;
mod redirect;
mod router;
mod select;
mod signals;
mod tls;
mod upgrade;
mod workers;

pub use affinity::{Affinity, Decision, Match, MatchSource, MatchValue, Target};
pub use backend::{Backend, CONNECT_TIMEOUT, Health, POOL_IDLE_TIMEOUT, POOL_MAX_IDLE};
pub use baton_h1::Dial;
pub use breaker::{BreakerStatus, BreakerTransition};
pub use error::{ErrorKind, ProxyError, UpstreamError};
pub use flags::{AppFlags, FlagTable, X_BATON_FLAGS, header_value};
pub use headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID};
pub use health::{CHECKS_PER_CONNECTION, HealthCheck, spawn_health_checker};
pub use listener::{HEADER_READ_TIMEOUT, ListenerConfig, MIN_HEADER_BYTES, serve};
pub use metrics::{BUCKETS, MetricsSnapshot};
pub use outlier::Ejected;
pub use redirect::serve_redirect;
pub use router::{AppRoute, ReleaseRoute, Router, RoutingTable};
pub use select::{pick_backend, select, select_retry, select_target};
pub use tls::{HANDSHAKE_TIMEOUT, Tls, TlsError, WATCH_INTERVAL};
