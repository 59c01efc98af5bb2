//! The one place the daemon reads the wall clock; everything below takes `now` as an argument.

use baton_core::model::Millis;

/// Unix time in milliseconds.
pub fn now() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
