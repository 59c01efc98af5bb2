#!/usr/bin/env bash
# bench/canary.sh: how fast the canary analysis catches a bad release, how many user requests
# it costs, and how often it rolls back a healthy one, over repeated runs under steady load.
#
# Baton runs 3 demo instances of 1.0.0 (stable) behind its proxy; bench/canary_load.py sends
# RATE req/s over keep-alive connections for the whole run and records every request (start,
# end, status, and the version that answered). Then, one after the other:
#   - N_BAD canaries of releases 3.0.N that answer ERROR_RATE of `GET /` with 500: each is
#     deployed with `baton deploy --wait` and must be rolled back by the analysis;
#   - N_HEALTHY canaries of releases 2.0.N that behave exactly like the stable (same demo
#     options, another version): each must go through its steps and succeed, and becomes the
#     stable of the next run.
# Every deploy is a new release, created before the load starts. Steps: WEIGHT % with a
# pause of PAUSE, then 100 %. A step ends only on a passing verdict (on_inconclusive = "hold"),
# so a bad canary is ended by the analysis alone, never by the clock.
#
# Figures, per bad run: detection = from the first 5xx a user got from the canary to the last
# request the proxy sent to the canary (the moment the split went 100 % stable); blast radius
# = failed requests (non-2xx or no answer) among all requests sent during the run. Per healthy
# run: whether it succeeded; for a false rollback, the reason and the failing verdict's figures
# (from `baton analysis web --json`). Goals (from the issue on sequential analysis): every bad
# canary caught with a median detection <= 2 s at 200 req/s with 5 % weight; zero false
# rollbacks in 200 healthy runs. The script exits 0 when both are met, 1 when not (the table
# is printed either way).
#
# Usage: bench/canary.sh
#
# Environment (defaults in brackets):
#   N_BAD [10]  N_HEALTHY [200]    runs of each kind (bad ones first)
#   RATE [200]                     load, requests/s in total
#   CONNECTIONS [8]                keep-alive connections of the load client
#   INSTANCES [3]                  demo instances of the stable release
#   WEIGHT [5]  PAUSE [2s]         the canary step before 100 %
#   ERROR_RATE [0.3]               share of 500s from a bad canary
#   MIN_REQUESTS [50]  MAX_ERROR_RATE [0.02]  ANALYSIS_INTERVAL [250ms]   [apps.web.analysis]
#   RUN_TIMEOUT [120]              seconds one deploy --wait may take before it is killed
#   SETTLE [1]                     seconds of load before the first run and between runs
#   BUILD [1]                      0 skips cargo build --release (uses target/release/baton)
#   BENCH_KEEP_TMP [0]             1 keeps the temp dir (config, baton log, every request)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N_BAD=${N_BAD:-10}
N_HEALTHY=${N_HEALTHY:-200}
RATE=${RATE:-200}
CONNECTIONS=${CONNECTIONS:-8}
INSTANCES=${INSTANCES:-3}
WEIGHT=${WEIGHT:-5}
PAUSE=${PAUSE:-2s}
ERROR_RATE=${ERROR_RATE:-0.3}
MIN_REQUESTS=${MIN_REQUESTS:-50}
MAX_ERROR_RATE=${MAX_ERROR_RATE:-0.02}
ANALYSIS_INTERVAL=${ANALYSIS_INTERVAL:-250ms}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
SETTLE=${SETTLE:-1}

bench_init
build_baton
# What the binary was built from, read now: the checkout may change during the run.
BUILT_FROM="$(baton_summary)"
# The runs use a private copy of the binary, so a rebuild in the checkout during the run
# cannot swap the CLI under the daemon. It is stripped of its debug info: every release's
# artifact is a copy of this binary, and 61 of them at full size would fill gigabytes.
mkdir -p "$BENCH_TMP/bin"
strip -o "$BENCH_TMP/bin/baton" "$BATON" 2>/dev/null || cp "$BATON" "$BENCH_TMP/bin/baton"
BATON="$BENCH_TMP/bin/baton"

BATON_EXTRA_TOML="strategy = \"canary\"

[apps.web.canary]
steps = [ { weight = $WEIGHT, pause = \"$PAUSE\" }, { weight = 100 } ]

[apps.web.analysis]
interval = \"$ANALYSIS_INTERVAL\"
min_requests = $MIN_REQUESTS
max_error_rate = $MAX_ERROR_RATE
on_inconclusive = \"hold\""
start_baton "$INSTANCES"

# make_canary_release VERSION [DEMO OPTIONS...]: a demo artifact stored as a release of `web`;
# the artifact dir is removed once Baton has its own copy.
make_canary_release() {
    local version=$1 out="$BENCH_TMP/artifacts/$1"
    shift
    "$BATON" demo artifact "$out" --version "$version" "$@" >/dev/null
    baton_cli release create web "$version" --artifact "$out" >/dev/null
    rm -rf "$out"
}
log "creating releases: 1.0.0, $N_BAD bad (3.0.N, --error-rate $ERROR_RATE), $N_HEALTHY healthy (2.0.N)"
make_canary_release 1.0.0
for ((i = 1; i <= N_BAD; i++)); do make_canary_release "3.0.$i" --error-rate "$ERROR_RATE"; done
for ((i = 1; i <= N_HEALTHY; i++)); do make_canary_release "2.0.$i"; done
log "deploying 1.0.0 on $INSTANCES instances (blue-green: a first deploy has no stable to compare with)"
baton_cli deploy web 1.0.0 --strategy blue-green --wait >"$BENCH_TMP/deploy-initial.log" 2>&1 || { cat "$BENCH_TMP/deploy-initial.log" >&2; die "deploy 1.0.0 failed"; }
curl -sf -o /dev/null "http://$BATON_PROXY/" || die "the proxy on $BATON_PROXY does not answer"

# === load ===
# Bounded on its own (MAX_SECONDS) in case this script dies before stopping it; the trap
# kills it too.
LOAD_MAX=$(((N_BAD + N_HEALTHY) * (RUN_TIMEOUT + SETTLE + 5) + 60))
STOP_FILE="$BENCH_TMP/stop-load"
REQUESTS="$BENCH_TMP/requests.txt"
log "load: $RATE req/s over $CONNECTIONS keep-alive connections"
bg_start "$BENCH_TMP/load.log" python3 "$BENCH_ROOT/bench/canary_load.py" load "http://$BATON_PROXY/" "$REQUESTS" "$STOP_FILE" "$LOAD_MAX" "$RATE" "$CONNECTIONS"
LOAD_PID=$LAST_PID
sleep "$SETTLE"

# === runs ===
RUNS="$BENCH_TMP/runs.jsonl"
: >"$RUNS"
STABLE=1.0.0
app_idle() { baton_cli status web --json | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["phase"] != "idle")'; }
# canary_run KIND VERSION: deploys VERSION as a canary with --wait, records what happened.
canary_run() {
    local kind=$1 version=$2 out="$BENCH_TMP/deploy-$2.log" t0 t1 rc=0 id
    kill -0 "$BATON_PID" 2>/dev/null || die "baton exited before the run of $version; see $BENCH_TMP/baton/baton.log"
    is_running "$LOAD_PID" || die "the load client exited: $(cat "$BENCH_TMP/load.log")"
    t0=$(date +%s.%N)
    timeout "$RUN_TIMEOUT" "$BATON" deploy web "$version" --wait --config "$BATON_CONFIG_FILE" >"$out" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    id=$(grep -o -m1 'deployment #[0-9]*' "$out" | tr -dc 0-9 || true)
    if ((rc == 124)); then
        # Not decided within RUN_TIMEOUT: counted as not caught (bad) or not succeeded
        # (healthy); go back to the stable so the next run starts from a quiet app.
        log "$kind $version: no outcome after ${RUN_TIMEOUT}s; aborting it"
        baton_cli analysis web --json >"$BENCH_TMP/analysis-$version.json" 2>&1 || true
        baton_cli abort web >/dev/null 2>&1 || true
        wait_until 60 "the abort of $version" app_idle
    fi
    if ((rc != 0)); then
        # The verdicts of this deployment, before the next deploy replaces them.
        baton_cli analysis web --json >"$BENCH_TMP/analysis-$version.json" 2>&1 || true
    fi
    python3 -c 'import json,sys; a=sys.argv; print(json.dumps({"kind": a[1], "version": a[2], "stable": a[3], "deployment": int(a[4]) if a[4] else None, "exit": int(a[5]), "start": float(a[6]), "end": float(a[7])}))' \
        "$kind" "$version" "$STABLE" "$id" "$rc" "$t0" "$t1" >>"$RUNS"
    log "$kind $version over $STABLE: exit $rc after $(python3 -c "print(f'{$t1 - $t0:.2f}')")s: $(tail -n 1 "$out")"
    if [[ $kind == healthy && $rc == 0 ]]; then STABLE=$version; fi
    sleep "$SETTLE"
}
for ((i = 1; i <= N_BAD; i++)); do canary_run bad "3.0.$i"; done
for ((i = 1; i <= N_HEALTHY; i++)); do canary_run healthy "2.0.$i"; done

# === stop the load, collect ===
touch "$STOP_FILE"
for ((i = 0; i < 50; i++)); do is_running "$LOAD_PID" || break; sleep 0.1; done
baton_cli history web --json --limit 1000 >"$BENCH_TMP/history.json"

echo
echo "baton canary analysis benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
machine_summary
echo "$BUILT_FROM"
echo "setup: $INSTANCES instances of the stable; canary steps: $WEIGHT % for at least $PAUSE (until a passing verdict), then 100 %"
echo "analysis: interval $ANALYSIS_INTERVAL, min_requests $MIN_REQUESTS, max_error_rate $MAX_ERROR_RATE, compare with the stable (defaults: confidence 0.999)"
echo "load: $RATE req/s over $CONNECTIONS keep-alive connections (bench/canary_load.py), against $BATON_PROXY"
echo "runs: $N_BAD bad canaries (--error-rate $ERROR_RATE), then $N_HEALTHY healthy ones, each a new release"
echo "note: the load client, baton and the instances share the same $(nproc) cores."
echo
REPORT="$BENCH_TMP/report.txt"
python3 "$BENCH_ROOT/bench/canary_load.py" report "$REQUESTS" "$RUNS" "$BENCH_TMP/history.json" "$BENCH_TMP" | tee "$REPORT"
# The temp dir is kept when a goal is missed, for its logs and requests; the releases stored
# by Baton are of no use there and weigh most, so they go (Baton stopped first).
stop_pid "$BATON_PID"
rm -rf "$BENCH_TMP/baton/.baton/artifacts"
tail -n 1 "$REPORT" | grep -q '^goals: met$'
