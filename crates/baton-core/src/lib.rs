//! Baton's pure core: the model (releases, deployments, instances, events), the
//! `baton.toml` schema and its validation, and the rollout planner.
//!
//! Nothing here does I/O, reads a clock or knows about tokio: every function that needs the
//! time takes `now` (unix milliseconds) as an argument, so decisions can be table-tested.

pub mod analysis;
pub mod breaker;
pub mod config;
pub mod duration;
pub mod flags;
pub mod model;
pub mod plan;
pub mod prom;
pub mod promotion;
pub mod run;
pub mod sticky;

pub use duration::Duration;
