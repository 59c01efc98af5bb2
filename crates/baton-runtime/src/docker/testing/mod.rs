//! Test support for the docker driver's tests and for the end-to-end tests of `baton`: connect
//! or fail loudly, build `FROM scratch` images of host binaries without pulling anything, and
//! remove every container and image a test made, even when it panics. Behind the
//! `test-support` feature; not part of the driver's API.

mod cleanup;
mod image_build;
mod labelled;
mod ldd;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use cleanup::OwnerGuard;
pub use image_build::{ImageBuild, TestImage};
pub use labelled::{LabelPrefixGuard, LabelledContainer, labelled, read_only};
pub use ldd::shared_libraries;

use super::Docker;

/// Connects to the engine, or fails the test saying why: tests that need Docker never skip.
///
/// # Panics
/// When the engine cannot be reached.
pub async fn docker() -> Docker {
    Docker::connect()
        .await
        .unwrap_or_else(|error| panic!("this test needs a running Docker engine: {error}"))
}

/// A name no other test, and no other run of the tests, uses: `<prefix>-<pid>-<n>-<time>`, in
/// characters valid in container names and image tags.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}
