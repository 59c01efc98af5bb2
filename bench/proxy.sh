#!/usr/bin/env bash
# bench/proxy.sh: requests/s and p50/p99 latency straight to a demo instance, through Baton,
# through nginx and through HAProxy proxying to the same instances, with the ratios
# Baton/nginx and Baton/HAProxy, all measured in the same run.
#
# Usage: bench/proxy.sh        (as root on Debian it installs nginx, haproxy and wrk if missing)
#
# Environment (defaults in brackets):
#   INSTANCES [2]      demo instances behind every proxy
#   THREADS [2]        wrk -t
#   CONNECTIONS [64]   wrk -c
#   DURATION [15s]     wrk -d for each measured run
#   WARMUP [3s]        wrk -d for the unmeasured warm-up before each run
#   ROUNDS [3]         times the four targets are measured, interleaved; the table shows medians
#   TARGETS ["direct baton nginx haproxy"]
#   BODY [0]           >0: every request is a POST /echo with a body of this many bytes (the
#                      instance sends it back), instead of GET /
#   BUILD [1]          0 skips cargo build --release (uses target/release/baton)
#   BENCH_KEEP_TMP [0] 1 keeps the temp dir (configs, logs, raw wrk output)
#   RESULTS_OUT        also copy the raw results (JSON lines) to this file

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTANCES=${INSTANCES:-2}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
ROUNDS=${ROUNDS:-3}
TARGETS=${TARGETS:-direct baton nginx haproxy}
BODY=${BODY:-0}

bench_init
build_baton
install_tools

start_baton "$INSTANCES"
make_release 1.0.0
log "deploying 1.0.0 on $INSTANCES instances"
baton_cli deploy web 1.0.0 --wait >"$BENCH_TMP/deploy.log" 2>&1 || { cat "$BENCH_TMP/deploy.log" >&2; die "deploy 1.0.0 failed"; }
mapfile -t BACKENDS < <(instance_addresses)
((${#BACKENDS[@]} == INSTANCES)) || die "expected $INSTANCES healthy instances, status shows: ${BACKENDS[*]:-none}"
log "instances: ${BACKENDS[*]}"

# === nginx ===
NGINX_DIR="$BENCH_TMP/nginx"
mkdir -p "$NGINX_DIR/logs"
NGINX_ADDR="127.0.0.1:$(free_port)"
{
    echo "worker_processes auto;"
    echo "daemon off;"
    echo "pid $NGINX_DIR/nginx.pid;"
    echo "error_log $NGINX_DIR/logs/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    echo "  access_log off;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $NGINX_DIR/${t}_temp;"; done
    echo "  upstream demo {"
    for b in "${BACKENDS[@]}"; do echo "    server $b;"; done
    echo "    keepalive 64;"
    echo "  }"
    echo "  server {"
    echo "    listen $NGINX_ADDR;"
    echo "    location / {"
    echo "      proxy_pass http://demo;"
    echo "      proxy_http_version 1.1;"
    echo "      proxy_set_header Connection \"\";"
    echo "    }"
    echo "  }"
    echo "}"
} >"$NGINX_DIR/nginx.conf"
nginx -t -q -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/logs/error.log" || die "nginx rejected $NGINX_DIR/nginx.conf"
bg_start "$NGINX_DIR/stdout.log" nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/logs/error.log"
NGINX_PID=$LAST_PID
wait_http "$LAST_PID" "http://$NGINX_ADDR/" nginx "$NGINX_DIR/logs/error.log"

# === HAProxy ===
HAPROXY_DIR="$BENCH_TMP/haproxy"
mkdir -p "$HAPROXY_DIR"
HAPROXY_ADDR="127.0.0.1:$(free_port)"
{
    echo "global"
    # HAProxy 2.5+ starts one thread per CPU by default; stated here so the config says it.
    echo "  nbthread $(nproc)"
    echo "  maxconn 4096"
    echo "  pidfile $HAPROXY_DIR/haproxy.pid"
    echo "defaults"
    echo "  mode http"
    echo "  option http-keep-alive"
    echo "  http-reuse always"
    echo "  timeout connect 5s"
    echo "  timeout client 30s"
    echo "  timeout server 30s"
    echo "frontend fe"
    echo "  bind $HAPROXY_ADDR"
    echo "  default_backend demo"
    echo "backend demo"
    echo "  balance roundrobin"
    i=0
    for b in "${BACKENDS[@]}"; do i=$((i + 1)); echo "  server s$i $b"; done
} >"$HAPROXY_DIR/haproxy.cfg"
haproxy -c -q -f "$HAPROXY_DIR/haproxy.cfg" || die "haproxy rejected $HAPROXY_DIR/haproxy.cfg"
bg_start "$HAPROXY_DIR/stdout.log" haproxy -db -f "$HAPROXY_DIR/haproxy.cfg"
HAPROXY_PID=$LAST_PID
wait_http "$LAST_PID" "http://$HAPROXY_ADDR/" haproxy "$HAPROXY_DIR/stdout.log"

# The request every run sends: GET /, or with BODY a POST /echo (a wrk script sets the method
# and body).
REQUEST_PATH=/
WRK_SCRIPT=()
if ((BODY > 0)); then
    REQUEST_PATH=/echo
    python3 -c '
import sys
n = int(sys.argv[1])
print("wrk.method = \"POST\"")
print("wrk.body = string.rep(\"x\", %d)" % n)
print("wrk.headers[\"Content-Type\"] = \"application/octet-stream\"")' "$BODY" >"$BENCH_TMP/post.lua"
    WRK_SCRIPT=(-s "$BENCH_TMP/post.lua")
fi

target_url() {
    case $1 in
    direct) echo "http://${BACKENDS[0]}$REQUEST_PATH" ;;
    baton) echo "http://$BATON_PROXY$REQUEST_PATH" ;;
    nginx) echo "http://$NGINX_ADDR$REQUEST_PATH" ;;
    haproxy) echo "http://$HAPROXY_ADDR$REQUEST_PATH" ;;
    *) die "unknown target $1" ;;
    esac
}
DIRECT_PID=$(baton_cli status web --json | python3 -c '
import json, sys
addr = sys.argv[1]
print(next(i["pid"] for i in json.load(sys.stdin)["instances"] if i["address"] == addr))' "${BACKENDS[0]}")

# The processes whose CPU time counts for a target: the proxy (nginx: master and workers), or
# for `direct` the one instance.
target_pids() {
    case $1 in
    direct) echo "$DIRECT_PID" ;;
    baton) echo "$BATON_PID" ;;
    nginx) echo "$NGINX_PID" $(pgrep -P "$NGINX_PID") ;;
    haproxy) echo "$HAPROXY_PID" ;;
    esac
}
# CPU seconds (user + system, all threads) used so far by the given pids.
cpu_seconds() {
    python3 -c '
import os, sys
tck = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    total += int(rest[11]) + int(rest[12])
print(total / tck)' "$@"
}

for t in $TARGETS; do
    if ((BODY > 0)); then
        curl -sf -o /dev/null -d ping "$(target_url "$t")" || die "$t ($(target_url "$t")) does not answer POST"
    else
        curl -sf -o /dev/null "$(target_url "$t")" || die "$t ($(target_url "$t")) does not answer GET /"
    fi
done

# === measure ===
RESULTS="$BENCH_TMP/results.jsonl"
: >"$RESULTS"
WRK=(wrk "-t$THREADS" "-c$CONNECTIONS" --latency "${WRK_SCRIPT[@]}")
for ((round = 1; round <= ROUNDS; round++)); do
    for t in $TARGETS; do
        url=$(target_url "$t")
        log "round $round/$ROUNDS: $t ($url): warm-up $WARMUP, then $DURATION"
        # wrk's own -d bounds each run; timeout is a backstop in case it hangs.
        timeout 120 "${WRK[@]}" "-d$WARMUP" "$url" >/dev/null 2>&1 || die "wrk warm-up against $t failed"
        out="$BENCH_TMP/wrk-$t-$round.txt"
        read -r -a pids < <(target_pids "$t")
        cpu0=$(cpu_seconds "${pids[@]}")
        timeout 300 "${WRK[@]}" "-d$DURATION" "$url" >"$out" 2>&1 || die "wrk against $t failed: $(cat "$out")"
        cpu1=$(cpu_seconds "${pids[@]}")
        python3 "$BENCH_ROOT/bench/wrkstats.py" parse "$t" "$round" "$out" "$(python3 -c "print($cpu1 - $cpu0)")" >>"$RESULTS"
    done
done

echo
echo "baton proxy benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
machine_summary
baton_summary
echo "tools: $(nginx -v 2>&1 | sed 's/.*: //'), haproxy $(haproxy -v | awk 'NR==1{print $3}'), wrk $(wrk -v 2>&1 | awk 'NR==1{print $2}')"
echo "load: ${WRK[*]} -d$DURATION (warm-up $WARMUP each), $ROUNDS round(s), targets interleaved"
if ((BODY > 0)); then echo "requests: POST $REQUEST_PATH with a $BODY-byte body (echoed back)"; else echo "requests: GET $REQUEST_PATH"; fi
echo "backends: $INSTANCES baton-demo instances (${BACKENDS[*]})"
echo "note: 'direct' hits ONE instance (${BACKENDS[0]}); the proxies spread the load over all $INSTANCES."
echo "baton memory after the run: $(awk '/VmRSS/{print $2, $3}' "/proc/$BATON_PID/status") RSS"
echo "cpu: user+system CPU of the proxy process(es) (for 'direct': the instance) during each measured run."
echo "note: wrk, the proxy under test and the instances share the same $(nproc) cores."
echo
python3 "$BENCH_ROOT/bench/wrkstats.py" proxy-table "$RESULTS"
if [[ -n "${RESULTS_OUT:-}" ]]; then cp "$RESULTS" "$RESULTS_OUT"; fi
