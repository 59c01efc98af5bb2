//! Baton's SQLite store and content-addressed artifact store.
//!
//! [`Store`] keeps releases, deployments, app state, instances and the event log in one
//! SQLite file (WAL, `synchronous = FULL`). It is synchronous: call it from
//! `spawn_blocking`, or directly for short operations. Times are always passed in.

mod apps;
mod db;
mod deployments;
mod error;
mod events;
mod instances;
mod releases;
mod schema;

pub use db::Store;
pub use deployments::NewDeployment;
pub use error::StoreError;
pub use releases::ReleaseOutcome;
pub use schema::SCHEMA_VERSION;
