#!/usr/bin/env bash
# bench/restart.sh: the restart gap. How much longer a client waits while `baton restart`
# hands over to a new process, compared with the same load without restarts, in the same run.
#
# Baton runs INSTANCES demo instances; bench/restart_load.py sends paced requests over
# keep-alive connections and over new connections for the whole run, recording each request's
# start and latency. The script alternates BASELINE seconds without restarts and one
# `baton restart` (its window lasts until the old process has exited, so requests it was still
# finishing count), RESTARTS times, then prints p50/p99/max latency and failures for requests
# started during restarts and without, and the difference (bench/restart_stats.py).
#
# Usage: bench/restart.sh
#
# Environment (defaults in brackets):
#   INSTANCES [3]   RESTARTS [10]   BASELINE [3] seconds between restarts
#   KEEPALIVE [4]   FRESH [2]       RATE [50] requests/s per worker
#   BUILD [1]       0 skips cargo build --release (uses target/release/baton, or BATON_BIN)
#   BATON_BIN       another baton binary, with BUILD=0 (e.g. a debug build, to try the script)
#   BENCH_KEEP_TMP [0]  1 keeps the temp dir (config, baton log, raw samples)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTANCES=${INSTANCES:-3}
RESTARTS=${RESTARTS:-10}
BASELINE=${BASELINE:-3}
KEEPALIVE=${KEEPALIVE:-4}
FRESH=${FRESH:-2}
RATE=${RATE:-50}
BATON=${BATON_BIN:-$BATON}

bench_init
build_baton
start_baton "$INSTANCES"
make_release 1.0.0
log "deploying 1.0.0 on $INSTANCES instances"
baton_cli deploy web 1.0.0 --wait >"$BENCH_TMP/deploy.log" 2>&1 || { cat "$BENCH_TMP/deploy.log" >&2; die "deploy 1.0.0 failed"; }

PID_FILE="$BENCH_TMP/baton/.baton/baton.pid"
instance_pids() {
    baton_cli status web --json | python3 -c 'import json,sys; print(" ".join(sorted(str(i["pid"]) for i in json.load(sys.stdin)["instances"])))'
}
PIDS_BEFORE=$(instance_pids)

LOAD_MAX=$((RESTARTS * (BASELINE + 60) + 60))
STOP_FILE="$BENCH_TMP/stop-load"
WINDOWS="$BENCH_TMP/windows.jsonl"
: >"$WINDOWS"
log "load: $KEEPALIVE keep-alive + $FRESH new-connection workers at $RATE req/s each"
bg_start "$BENCH_TMP/load.json" python3 "$BENCH_ROOT/bench/restart_load.py" "http://$BATON_PROXY/" "$STOP_FILE" "$LOAD_MAX" "$KEEPALIVE" "$FRESH" "$RATE"
LOAD_PID=$LAST_PID
sleep 1

window() { printf '{"kind": "%s", "start": %s, "end": %s}\n' "$1" "$2" "$3" >>"$WINDOWS"; }
FAILED=0
for ((r = 1; r <= RESTARTS; r++)); do
    t0=$(date +%s.%N)
    sleep "$BASELINE"
    window baseline "$t0" "$(date +%s.%N)"
    old=$(cat "$PID_FILE")
    t0=$(date +%s.%N)
    if ! baton_cli restart >"$BENCH_TMP/restart-$r.log" 2>&1; then
        FAILED=$((FAILED + 1))
        log "restart $r failed: $(cat "$BENCH_TMP/restart-$r.log")"
        continue
    fi
    new=$(cat "$PID_FILE")
    BENCH_PIDS+=("$new")
    wait_until 60 "the old baton (pid $old) to exit" bash -c "! test -d /proc/$old || grep -q ') Z' /proc/$old/stat"
    window restart "$t0" "$(date +%s.%N)"
    log "restart $r/$RESTARTS: pid $old -> $new"
done
t0=$(date +%s.%N)
sleep "$BASELINE"
window baseline "$t0" "$(date +%s.%N)"
touch "$STOP_FILE"
wait_until 20 "the load to stop" bash -c "! kill -0 $LOAD_PID 2>/dev/null"
PIDS_AFTER=$(instance_pids)

echo
echo "baton restart under load, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
machine_summary
baton_summary
echo "setup: $INSTANCES instances, $RESTARTS restarts with ${BASELINE}s without between them"
echo "load: $KEEPALIVE keep-alive + $FRESH new-connection workers (bench/restart_load.py), $RATE req/s each, against $BATON_PROXY"
echo "note: the load, baton (two of them during a restart) and the instances share the same $(nproc) cores."
echo
python3 "$BENCH_ROOT/bench/restart_stats.py" "$BENCH_TMP/load.json" "$WINDOWS"
if [[ "$PIDS_BEFORE" == "$PIDS_AFTER" ]]; then
    echo "instances: the same $INSTANCES pids before and after ($PIDS_AFTER)"
else
    echo "instances: pids changed: before $PIDS_BEFORE, after $PIDS_AFTER"
    FAILED=$((FAILED + 1))
fi
baton_cli stop >/dev/null
((FAILED == 0)) || { echo "$FAILED check(s) failed; logs in $BENCH_TMP (kept)"; exit 1; }
