//! The docker driver: instances as containers of the local Docker Engine, reached over its unix
//! socket with bollard.
//!
//! - A container runs in the host's network namespace, so it listens on `$HOST:$PORT` like a
//!   process instance: same ports, no NAT.
//! - It is named `baton-<owner>-<instance>` and labelled `baton.owner`, `baton.instance`,
//!   `baton.app`, `baton.release` and `baton.log`, so a restarted Baton finds exactly its own
//!   containers ([`ContainerHandle::adopt`], [`list_owned`]) and never another Baton's.
//! - It has no restart policy: Baton sees every exit and restarts instances itself.
//! - Its stdout and stderr are appended to the instance's log file while Baton follows it.
//! - Images are addressed by ID; [`Docker::save_image`] and [`Docker::load_image`] move them
//!   through files, so no registry is needed.
//!
//! A caller (the controller, or an agent) connects once with [`Docker::connect`] and uses one
//! owner id for its data directory ([`owner_id`]). A release's image comes from its artifact
//! ([`ensure_image`]). It starts instances with [`ContainerHandle::start`] after
//! recording them; after a restart it calls [`ContainerHandle::adopt`] for each instance it has
//! a record of (`Ok(None)`: the instance is gone; `Err`: the engine cannot tell, so start
//! nothing), then removes what it has no running record of ([`remove_orphans`]). It stops
//! instances with [`ContainerHandle::stop`] once they are drained.

mod artifact;
mod client;
mod create;
mod error;
mod handle;
mod image;
mod labels;
mod log_time;
mod logs;
mod owned;
mod owner;
mod spec;
mod wait;

#[cfg(test)]
pub(crate) mod testee;

#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod testing;

pub use artifact::ensure_image;
pub use client::{DEFAULT_SOCKET, Docker};
pub use error::DockerError;
pub use handle::ContainerHandle;
pub use image::ImageInfo;
pub use labels::{
    APP_LABEL, INSTANCE_LABEL, LOG_LABEL, OWNER_LABEL, RELEASE_LABEL, container_instance,
};
pub use owned::{OwnedContainer, list_owned};
pub use owner::{owner_id, remove_orphans};
pub use spec::ContainerSpec;
