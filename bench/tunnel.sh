#!/usr/bin/env bash
# bench/tunnel.sh: what the host tunnel costs. One `baton up` with one real agent (on
# 127.0.0.2, the same machine): app `near` has its instances on the controller's own host (the
# edge reaches them on loopback), app `far` on the agent's host (the edge reaches them only
# through the host's mutual-TLS tunnel). wrk measures requests/s and p50/p99 through each edge
# listener, interleaved, and prints far/near; `direct` (one far instance, on loopback, no
# proxy) is the reference for the instances themselves.
#
# Usage: bench/tunnel.sh        (as root on Debian it installs wrk if missing)
#
# Environment (defaults in brackets):
#   INSTANCES [2]      demo instances of each app
#   THREADS [2]        wrk -t
#   CONNECTIONS [64]   wrk -c
#   DURATION [10s]     wrk -d for each measured run
#   WARMUP [2s]        wrk -d for the unmeasured warm-up before each run
#   ROUNDS [3]         times the targets are measured, interleaved; the table shows medians
#   TARGETS ["direct near far"]
#   BUILD [1]          0 skips cargo build --release (uses target/release/baton)
#   BENCH_KEEP_TMP [0] 1 keeps the temp dir (configs, logs, raw wrk output)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTANCES=${INSTANCES:-2}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
TARGETS=${TARGETS:-direct near far}

bench_init
build_baton
command -v wrk >/dev/null || {
    [[ $(id -u) == 0 ]] || die "wrk missing and not root: apt-get install -y wrk"
    DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2 || die "apt-get install wrk failed"
}

dir="$BENCH_TMP/baton"
mkdir -p "$dir" "$BENCH_TMP/artifacts"
API_PORT=$(free_port)
CLUSTER_PORT=$(free_port)
NEAR="127.0.0.1:$(free_port)"
FAR="127.0.0.1:$(free_port)"
BATON_CONFIG_FILE="$dir/baton.toml"
cat >"$BATON_CONFIG_FILE" <<EOF
[api]
listen = "127.0.0.1:$API_PORT"

[cluster]
listen = "127.0.0.1:$CLUSTER_PORT"

[hosts.web-1]
address = "127.0.0.2"

[apps.near]
listen = "$NEAR"
instances = $INSTANCES
command = ["{artifact}/baton-demo"]

[apps.far]
listen = "$FAR"
hosts = ["web-1"]
instances = $INSTANCES
command = ["{artifact}/baton-demo"]
EOF
log "starting baton up and one agent (web-1 on 127.0.0.2)"
bg_start "$dir/baton.log" "$BATON" up --config "$BATON_CONFIG_FILE"
BATON_PID=$LAST_PID
wait_until 30 "the baton API" baton_cli status near --json
host_connected() { baton_cli hosts --json | python3 -c "import json,sys; sys.exit(0 if any(h['name']=='web-1' and h['state']=='connected' for h in json.load(sys.stdin)) else 1)"; }
token=$(baton_cli host token 2>/dev/null)
bg_start "$dir/agent.log" "$BATON" agent --join "127.0.0.1:$CLUSTER_PORT" --token "$token" \
    --name web-1 --address 127.0.0.2 --data-dir "$BENCH_TMP/agent-web-1"
AGENT_PID=$LAST_PID
wait_until 30 "the agent to connect" host_connected
"$BATON" demo artifact "$BENCH_TMP/artifacts/1.0.0" --version 1.0.0 >/dev/null
for app in near far; do
    baton_cli release create "$app" 1.0.0 --artifact "$BENCH_TMP/artifacts/1.0.0" >/dev/null
    baton_cli deploy "$app" 1.0.0 --wait >"$dir/deploy-$app.log" 2>&1 ||
        die "deploy $app failed: $(cat "$dir/deploy-$app.log")"
done
# A far instance listens on the agent's host's loopback: on this one machine, 127.0.0.1.
DIRECT="127.0.0.1:$(baton_cli status far --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["instances"][0]["address"].rsplit(":",1)[1])')"

target_url() {
    case $1 in
    direct) echo "http://$DIRECT/" ;;
    near) echo "http://$NEAR/" ;;
    far) echo "http://$FAR/" ;;
    *) die "unknown target $1" ;;
    esac
}
for t in $TARGETS; do
    curl -sf -o /dev/null "$(target_url "$t")" || die "$t ($(target_url "$t")) does not answer GET /"
done

RESULTS="$BENCH_TMP/results.jsonl"
: >"$RESULTS"
WRK=(wrk "-t$THREADS" "-c$CONNECTIONS" --latency)
for ((round = 1; round <= ROUNDS; round++)); do
    for t in $TARGETS; do
        url=$(target_url "$t")
        log "round $round/$ROUNDS: $t ($url): warm-up $WARMUP, then $DURATION"
        timeout 120 "${WRK[@]}" "-d$WARMUP" "$url" >/dev/null 2>&1 || die "wrk warm-up against $t failed"
        out="$BENCH_TMP/wrk-$t-$round.txt"
        # CPU: baton up, plus the agent for `far` (it terminates the tunnel's TLS).
        pids=("$BATON_PID")
        [[ $t == far ]] && pids+=("$AGENT_PID")
        cpu0=$(python3 -c 'import os,sys
t=0
for p in sys.argv[1:]:
    r=open(f"/proc/{p}/stat").read().rsplit(")",1)[1].split(); t+=int(r[11])+int(r[12])
print(t/os.sysconf("SC_CLK_TCK"))' "${pids[@]}")
        timeout 300 "${WRK[@]}" "-d$DURATION" "$url" >"$out" 2>&1 || die "wrk against $t failed: $(cat "$out")"
        cpu1=$(python3 -c 'import os,sys
t=0
for p in sys.argv[1:]:
    r=open(f"/proc/{p}/stat").read().rsplit(")",1)[1].split(); t+=int(r[11])+int(r[12])
print(t/os.sysconf("SC_CLK_TCK"))' "${pids[@]}")
        python3 "$BENCH_ROOT/bench/wrkstats.py" parse "$t" "$round" "$out" "$(python3 -c "print($cpu1 - $cpu0)")" >>"$RESULTS"
    done
done

echo
echo "baton tunnel benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
machine_summary
baton_summary
echo "load: ${WRK[*]} -d$DURATION (warm-up $WARMUP each), $ROUNDS round(s), targets interleaved"
echo "near: edge -> $INSTANCES instances on the controller's host (loopback)"
echo "far:  edge -> $INSTANCES instances on host web-1 (127.0.0.2) through its mutual-TLS tunnel"
echo "direct: one far instance ($DIRECT), no proxy"
echo "cpu: baton up (plus the agent for far) during each measured run"
echo "note: wrk, baton, the agent and the instances share the same $(nproc) cores."
echo
python3 "$BENCH_ROOT/bench/wrkstats.py" proxy-table "$RESULTS"
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(t, k):
    v = [r[k] for r in rows if r.get("target") == t and r.get(k) is not None]
    return statistics.median(v) if v else None
keys = rows[0].keys() if rows else []
rps = next((k for k in ("rps", "requests_per_sec", "req_per_sec") if k in keys), None)
p99 = next((k for k in ("p99_ms", "p99") if k in keys), None)
if rps and med("near", rps) and med("far", rps):
    print(f"\nfar/near requests/s: {med('far', rps) / med('near', rps):.2f}")
if p99 and med("near", p99) and med("far", p99):
    print(f"far/near p99: {med('far', p99) / med('near', p99):.2f}")
EOF
