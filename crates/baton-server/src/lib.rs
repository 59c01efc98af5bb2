//! Baton's daemon: controller loop, HTTP API.
