//! Baton's data plane: per-app listeners, the split snapshot, backend selection, health checks, drain, per-release metrics.
