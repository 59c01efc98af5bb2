//! Baton's daemon: the controller loop that moves apps between releases, and the HTTP API
//! through which the CLI records intents and reads state (docs/DESIGN.md "Parts and the way data
//! flows"). `baton up` calls [`run`].

mod api;
pub mod breakers;
mod clock;
pub mod cluster;
mod controller;
mod daemon;
pub mod dashboard;
pub mod flags;
mod handle;
pub mod handover;
mod listeners;
pub mod notify;
mod reload;
pub mod scrape;
mod shared;
mod tls;
mod token;
pub mod views;

pub use api::{
    AnalysisView, DarkView, DashboardToken, DashboardTokenRequest, HANDING_OVER, LedgerEntry,
    PromoteRequest, RELEASE_ENVELOPE, ReleaseQuery, Run, StopRequest, Stopping,
};
pub use daemon::{Daemon, LoadError, load_config, run};
pub use reload::{EVENT_APP as RELOAD_EVENT_APP, ReloadError, Reloader};
pub use token::{TOKEN_FILE, read_token};
