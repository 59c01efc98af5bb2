//! Canary analysis: pure judges that turn windows of per-release metrics into verdicts.
