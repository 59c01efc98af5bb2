#!/usr/bin/env bash
# bench/proxy_instructions.sh: instructions per proxied request, counted by callgrind.
#
# Deterministic, unlike the timings of bench/proxy.sh: the count does not depend on what else
# the machine is doing, so it shows whether a change to the proxy made each request cheaper
# in user space (it sees nothing of the kernel's share; use bench/proxy.sh for the whole).
#
# Runs `baton up` under valgrind (2 demo instances, not under valgrind), warms up, zeroes the
# counters, loads the proxy with wrk for DURATION, dumps, and divides by the requests wrk
# completed. The controller's own background work (about 1.5 M instructions a second) is
# included; compare runs of the same DURATION.
#
# Usage: bench/proxy_instructions.sh   (installs valgrind and wrk with apt-get if missing)
#
# Environment (defaults in brackets):
#   DURATION [10s]  CONNECTIONS [8]  BUILD [1]  BENCH_KEEP_TMP [0] (keeps the callgrind file)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}

bench_init
build_baton
install_tools
if ! command -v valgrind >/dev/null; then
    [[ $(id -u) == 0 ]] || die "valgrind missing and not root: run 'apt-get install -y valgrind' first"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind; } >&2 || die "apt-get install valgrind failed"
fi

OUT="$BENCH_TMP/callgrind.out"
log "starting baton up under callgrind (slow: up to a minute)"
BATON_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=$OUT" \
    BATON_HEALTH_INTERVAL=1s BATON_HEALTH_TIMEOUT=5s BATON_START_WAIT=120 start_baton 2
make_release 1.0.0
baton_cli deploy web 1.0.0 --wait >"$BENCH_TMP/deploy.log" 2>&1 || { cat "$BENCH_TMP/deploy.log" >&2; die "deploy failed"; }
timeout 60 wrk -t1 "-c$CONNECTIONS" -d3s "http://$BATON_PROXY/" >/dev/null
callgrind_control -z "$BATON_PID" >/dev/null
timeout 120 wrk -t1 "-c$CONNECTIONS" "-d$DURATION" "http://$BATON_PROXY/" >"$BENCH_TMP/wrk.txt"
callgrind_control -d "$BATON_PID" >/dev/null
requests=$(awk '/requests in/{print $1}' "$BENCH_TMP/wrk.txt")
dump=$(ls -t "$OUT"* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
[[ -n "$requests" && "$requests" -gt 0 && -n "$total" ]] || die "no figures: requests=$requests total=$total"
echo
echo "baton proxy instructions, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
baton_summary
echo "load: wrk -t1 -c$CONNECTIONS -d$DURATION under callgrind"
echo "requests: $requests   instructions: $total   per request: $((total / requests))"
echo "(includes the controller's background work, ~1.5 M instructions a second: ~$((1500000 * ${DURATION%s} / requests)) per request here)"
if [[ "${BENCH_KEEP_TMP:-0}" == 1 ]]; then echo "callgrind file: $dump (callgrind_annotate --inclusive=yes)"; fi
