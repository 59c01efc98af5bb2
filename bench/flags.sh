#!/usr/bin/env bash
# bench/flags.sh: feature-flag evaluations per second, in process (what the proxy's
# X-Baton-Flags header costs per request) against OFREP over loopback HTTP (what an
# OpenFeature SDK pays), measured in the same run by crates/baton-server/examples/flags_bench.rs.
# Usage: bench/flags.sh [SECONDS per measurement, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --offline -p baton-server --example flags_bench >&2
echo "flags bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/flags_bench "${1:-5}"
