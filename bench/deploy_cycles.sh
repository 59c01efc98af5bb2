#!/usr/bin/env bash
# bench/deploy_cycles.sh: failed requests and switch time over repeated deploy/rollback cycles
# under load.
#
# Baton runs 3 demo instances of 1.0.0; wrk (keep-alive connections) and a small Python client
# (a new connection per request) load the proxy for the whole run while the script performs
# CYCLES cycles of `deploy web 1.1.0 --wait` then `rollback web --wait`, the strategy
# alternating per cycle. Each switch's wall time (of the --wait command) and its duration_ms
# from `baton history web --json` are recorded.
#
# Usage: bench/deploy_cycles.sh   (as root on Debian it installs nginx, haproxy and wrk if missing)
#
# Environment (defaults in brackets):
#   INSTANCES [3]                      demo instances
#   CYCLES [20]                        deploy/rollback cycles
#   STRATEGIES ["rolling blue-green"]  strategies used in turn, one per cycle
#   THREADS [1]  CONNECTIONS [16]      wrk -t / -c (wrk runs flat out)
#   FRESH_RATE [50]                    requests/s of the new-connection client (0: off)
#   SETTLE [1]                         seconds of load before the first and after the last switch
#   SWITCH_TIMEOUT [180]               seconds one --wait command may take before it is killed
#   BUILD [1]          0 skips cargo build --release (uses target/release/baton)
#   BENCH_KEEP_TMP [0]                 1 keeps the temp dir (config, baton log, raw output)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTANCES=${INSTANCES:-3}
CYCLES=${CYCLES:-20}
STRATEGIES=${STRATEGIES:-rolling blue-green}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-16}
FRESH_RATE=${FRESH_RATE:-50}
SETTLE=${SETTLE:-1}
SWITCH_TIMEOUT=${SWITCH_TIMEOUT:-180}
read -r -a STRATS <<<"$STRATEGIES"
((${#STRATS[@]} > 0)) || die "STRATEGIES is empty"

bench_init
build_baton
install_tools

start_baton "$INSTANCES"
make_release 1.0.0
make_release 1.1.0
log "deploying 1.0.0 on $INSTANCES instances"
baton_cli deploy web 1.0.0 --wait >"$BENCH_TMP/deploy-initial.log" 2>&1 || { cat "$BENCH_TMP/deploy-initial.log" >&2; die "deploy 1.0.0 failed"; }
curl -sf -o /dev/null "http://$BATON_PROXY/" || die "the proxy on $BATON_PROXY does not answer"

# === load ===
# Both loads are bounded on their own (wrk -d, MAX_SECONDS) in case this script dies before
# stopping them; the trap kills them too.
LOAD_MAX=$((CYCLES * 2 * SWITCH_TIMEOUT + 60))
STOP_FILE="$BENCH_TMP/stop-load"
WRK_OUT="$BENCH_TMP/wrk.txt"
log "load: wrk -t$THREADS -c$CONNECTIONS (keep-alive), and $FRESH_RATE req/s on new connections"
bg_start "$WRK_OUT" wrk "-t$THREADS" "-c$CONNECTIONS" "-d${LOAD_MAX}s" --latency "http://$BATON_PROXY/"
WRK_PID=$LAST_PID
FRESH_PID=""
if [[ $FRESH_RATE != 0 ]]; then
    bg_start "$BENCH_TMP/fresh.json" python3 "$BENCH_ROOT/bench/fresh_load.py" "http://$BATON_PROXY/" "$STOP_FILE" "$LOAD_MAX" "$FRESH_RATE"
    FRESH_PID=$LAST_PID
fi
sleep "$SETTLE"

# === cycles ===
CYCLES_OUT="$BENCH_TMP/cycles.jsonl"
: >"$CYCLES_OUT"
FAILED_SWITCHES=0
# switch CYCLE ACTION STRATEGY COMMAND...: runs one --wait command, records what it took.
switch() {
    local cycle=$1 action=$2 strategy=$3
    shift 3
    local out="$BENCH_TMP/switch-$cycle-$action.log" t0 t1 rc=0
    t0=$(date +%s.%N)
    timeout "$SWITCH_TIMEOUT" "$@" >"$out" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    local id
    id=$(grep -o -m1 'deployment #[0-9]*' "$out" | tr -dc 0-9 || true)
    if ((rc != 0)); then
        FAILED_SWITCHES=$((FAILED_SWITCHES + 1))
        log "cycle $cycle: $action ($strategy) exited $rc: $(tail -n 3 "$out" | tr '\n' ' ')"
    fi
    python3 -c 'import json,sys; a=sys.argv; print(json.dumps({"cycle": int(a[1]), "action": a[2], "strategy": a[3], "deployment": int(a[4]) if a[4] else None, "exit": int(a[5]), "start": float(a[6]), "end": float(a[7]), "wall_s": float(a[7]) - float(a[6])}))' \
        "$cycle" "$action" "$strategy" "$id" "$rc" "$t0" "$t1" >>"$CYCLES_OUT"
}
for ((c = 1; c <= CYCLES; c++)); do
    s=${STRATS[$(((c - 1) % ${#STRATS[@]}))]}
    kill -0 "$BATON_PID" 2>/dev/null || die "baton exited during cycle $c; see $BENCH_TMP/baton/baton.log"
    log "cycle $c/$CYCLES ($s): deploy 1.1.0, rollback"
    switch "$c" deploy "$s" "$BATON" deploy web 1.1.0 --strategy "$s" --wait --config "$BATON_CONFIG_FILE"
    switch "$c" rollback "$s" "$BATON" rollback web --strategy "$s" --wait --config "$BATON_CONFIG_FILE"
done
sleep "$SETTLE"

# === stop the load, collect ===
touch "$STOP_FILE"
kill -INT "$WRK_PID" 2>/dev/null || true # wrk prints its summary on SIGINT
for ((i = 0; i < 100; i++)); do
    is_running "$WRK_PID" || { [[ -n "$FRESH_PID" ]] && is_running "$FRESH_PID"; } || break
    sleep 0.1
done
baton_cli history web --json --limit 1000 >"$BENCH_TMP/history.json"

echo
echo "baton deploy/rollback cycles under load, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
machine_summary
baton_summary
echo "tools: wrk $(wrk -v 2>&1 | awk 'NR==1{print $2}')"
echo "setup: $INSTANCES instances, $CYCLES cycles of deploy 1.1.0 --wait / rollback --wait, strategies in turn: ${STRATS[*]}"
echo "load: wrk -t$THREADS -c$CONNECTIONS flat out (keep-alive) + $FRESH_RATE req/s on new connections, against $BATON_PROXY"
echo "note: wrk, baton and the instances share the same $(nproc) cores; wall time includes the CLI's own polling."
echo
args=("$CYCLES_OUT" "$BENCH_TMP/history.json" "$WRK_OUT")
[[ -n "$FRESH_PID" ]] && args+=("$BENCH_TMP/fresh.json")
python3 "$BENCH_ROOT/bench/wrkstats.py" cycles-table "${args[@]}"
echo
if ((FAILED_SWITCHES > 0)); then
    echo "$FAILED_SWITCHES switch command(s) did not succeed; logs in $BENCH_TMP (kept)"
    exit 1
fi
