//! The demo service used by Baton's quickstart, tests and benchmarks, and a load generator.
//!
//! The `baton` binary copies itself into an artifact directory as `baton-demo`
//! ([`write_artifact`]); started under that name it calls [`service_main`], which runs the
//! small HTTP service in [`serve`]. [`load`] drives traffic at any HTTP address and records
//! every response, so tests can prove "zero failed requests" during a deploy.

mod artifact;
mod cli;
mod db;
mod error;
pub mod load;
mod metrics;
mod options;
mod service;

pub use artifact::{ARTIFACT_CONFIG, ARTIFACT_EXE, write_artifact};
pub use cli::service_main;
pub use error::DemoError;
pub use options::{DemoOptions, ServiceOptions};
pub use service::serve;
