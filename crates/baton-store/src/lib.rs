//! Baton's SQLite store and content-addressed artifact store.
//!
//! [`Store`] keeps releases, deployments, app state, instances and the event log in one
//! SQLite file (WAL, `synchronous = FULL`). It is synchronous: call it from
//! `spawn_blocking`, or directly for short operations. Times are always passed in.
//!
//! [`ArtifactStore`] keeps release artifacts content-addressed on disk: [`pack`] turns a
//! directory or tarball into the canonical archive, whose [`digest`] names it, and
//! [`ArtifactStore::import`] unpacks it read-only under `<root>/<hex>/`.

mod apps;
mod artifact;
mod artifact_error;
mod canonical;
mod contracts;
mod db;
mod deployments;
mod error;
mod events;
#[cfg(test)]
mod fixtures;
mod flags;
mod hosts;
mod instances;
mod limits;
mod releases;
mod schema;
mod spool;
mod tar_ext;
mod untar;
mod verdicts;
mod walk;

pub use artifact::ArtifactStore;
pub use artifact_error::ArtifactError;
pub use canonical::{digest, pack, pack_to};
pub use contracts::{Contract, ContractState};
pub use db::Store;
pub use deployments::NewDeployment;
pub use error::StoreError;
pub use flags::{FlagChange, FlagToken, FlagTokenRecord, Revoked};
pub use hosts::{HostJoin, StoredHost, StoredToken, TokenRefusal, check_token};
pub use limits::ImportLimits;
pub use releases::ReleaseOutcome;
pub use schema::SCHEMA_VERSION;
pub use verdicts::StoredVerdict;
