#!/usr/bin/env bash
# bench/external_lb.sh: a rolling update of 2 servers behind an external load balancer
# (Debian's HAProxy, with an AWS target group's health-check settings), done the naive way
# and by Baton with the external-LB handshake, under the same steady load, in the same run.
#
# Every way sits behind one HAProxy with the same settings for every backend: `option httpchk`,
# `default-server inter 5s fall 3 rise 2`, `timeout check 2s`, `retries 0` (a refused
# connection is a 503 to the client, as with ELB), round robin. Its stats socket gives the
# servers' states. The load (bench/lb_load.py, standard-library Python, independent of Baton)
# sends at a fixed rate on keep-alive and on new connections through HAProxy, from SETTLE
# seconds before the rollout to SETTLE seconds after it; a request fails on a connection
# error, a timeout (5 s) or a status outside 2xx.
#
#  1. naive: two demo services (baton-demo 1.0.0) on 127.0.0.2:P and 127.0.0.3:P; HAProxy
#     checks GET /health on them. For each server in turn, the script does what a deploy
#     script behind ELB does: SIGTERM (the demo drains its in-flight requests and exits),
#     COPY_DELAY seconds standing for the copy of the new version, start 1.1.0 on the same
#     address, wait until it answers /health, then until HAProxy shows it `UP` (exactly: not
#     `UP 2/3`, so a check failed in the gap must have been passed again; if no check fell in
#     the gap HAProxy never noticed and it is still `UP`). Run once per value of
#     NAIVE_COPY_DELAYS: a short copy that HAProxy may not even notice, and one longer than
#     fall x inter + timeout (17 s), after which HAProxy has marked the server DOWN.
#  2. handshake: `baton up` with two real agents (127.0.0.2, 127.0.0.3), an app of 2
#     instances (one per host) with `host_port` and `[apps.web.external_lb]` (health_port, the
#     same 5s/2s/3/2), rolling with max_surge 0 / max_unavailable 1: each host's only instance
#     is replaced. HAProxy sends to host_port and checks health_port. `baton deploy web 1.1.0
#     --wait` under the load.
#  3. host_port only (PLAIN=1): two more apps on the same agents with `host_port` and no
#     external_lb: `plain`, rolling with max_surge 1 / max_unavailable 0 (the defaults), and
#     `plain0`, rolling with max_surge 0 / max_unavailable 1 (as the handshake's app, without
#     the handshake); HAProxy checks GET /health through host_port. `baton deploy APP 1.1.0
#     --wait` under the load, for each.
#
# A rollout's duration runs from its first action until the script (or `baton deploy --wait`)
# is done and HAProxy shows both servers `UP`. Only loopback addresses are used.
#
# Usage: bench/external_lb.sh   (as root on Debian it installs nginx, haproxy and wrk if missing)
#
# Environment (defaults in brackets):
#   KEEPALIVE [2]  FRESH [2]     load workers on keep-alive / on new connections
#   RATE [25]                    requests/s per worker
#   SETTLE [5]                   seconds of load before and after each rollout
#   NAIVE_COPY_DELAYS ["1 20"]   seconds between stopping a server and starting its new
#                                version, one naive rollout per value
#   PLAIN [1]                    0 skips the third way (host_port without external_lb)
#   ROLLOUT_TIMEOUT [300]        seconds one rollout may take before the script gives up
#   BUILD [1]                    0 skips cargo build --release (uses target/release/baton)
#   BENCH_KEEP_TMP [0]           1 keeps the temp dir (configs, logs, raw load output)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEEPALIVE=${KEEPALIVE:-2}
FRESH=${FRESH:-2}
RATE=${RATE:-25}
SETTLE=${SETTLE:-5}
NAIVE_COPY_DELAYS=${NAIVE_COPY_DELAYS:-1 20}
PLAIN=${PLAIN:-1}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-300}
read -r -a COPY_DELAYS <<<"$NAIVE_COPY_DELAYS"

bench_init
build_baton
install_tools

# === ports and artifacts ===
# Distinct free ports, held open together while the kernel picks them. The servers' ports are
# used on 127.0.0.2 and .3 too (a small race with other programs is accepted, as in lib.sh).
mapfile -t ports < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(14)]
for s in socks: s.bind(("127.0.0.1", 0))
for s in socks: print(s.getsockname()[1])')
NAIVE_FRONT=${ports[0]} HANDSHAKE_FRONT=${ports[1]} PLAIN_FRONT=${ports[2]}
NAIVE_PORT=${ports[3]} HOST_PORT=${ports[4]} HEALTH_PORT=${ports[5]} PLAIN_HOST_PORT=${ports[6]}
API_PORT=${ports[7]} CLUSTER_PORT=${ports[8]} EDGE_PORT=${ports[9]}
PLAIN_EDGE_PORT=${ports[10]} PLAIN0_FRONT=${ports[11]} PLAIN0_HOST_PORT=${ports[12]} PLAIN0_EDGE_PORT=${ports[13]}
SERVERS=(web-1 web-2)
ADDRESSES=(127.0.0.2 127.0.0.3)

for v in 1.0.0 1.1.0; do
    "$BATON" demo artifact "$BENCH_TMP/artifacts/$v" --version "$v" >/dev/null
done

# === HAProxy ===
HAP_DIR="$BENCH_TMP/haproxy"
HAP_SOCK="$HAP_DIR/haproxy.sock"
mkdir -p "$HAP_DIR"
# backend NAME CHECK_PATH PORT [CHECK_PORT]: one frontend/backend pair, the same settings for all.
hap_backend() {
    local name=$1 front=$2 path=$3 port=$4 check_port=${5:-} i
    printf 'frontend %s\n    bind 127.0.0.1:%s\n    default_backend %s\n' "$name" "$front" "$name"
    printf 'backend %s\n    option httpchk GET %s\n    timeout check 2s\n' "$name" "$path"
    printf '    default-server inter 5s fall 3 rise 2\n'
    for i in 0 1; do
        printf '    server %s %s:%s check%s\n' "${SERVERS[i]}" "${ADDRESSES[i]}" "$port" "${check_port:+ port $check_port}"
    done
}
{
    printf 'global\n    stats socket %s level admin\n    maxconn 2000\n' "$HAP_SOCK"
    printf 'defaults\n    mode http\n    retries 0\n    timeout connect 2s\n'
    printf '    timeout client 30s\n    timeout server 30s\n'
    hap_backend naive "$NAIVE_FRONT" /health "$NAIVE_PORT"
    hap_backend handshake "$HANDSHAKE_FRONT" / "$HOST_PORT" "$HEALTH_PORT"
    hap_backend plain "$PLAIN_FRONT" /health "$PLAIN_HOST_PORT"
    hap_backend plain0 "$PLAIN0_FRONT" /health "$PLAIN0_HOST_PORT"
} >"$HAP_DIR/haproxy.cfg"
haproxy -c -q -f "$HAP_DIR/haproxy.cfg" || die "HAProxy refuses $HAP_DIR/haproxy.cfg"
log "starting HAProxy (frontends naive 127.0.0.1:$NAIVE_FRONT, handshake :$HANDSHAKE_FRONT, plain :$PLAIN_FRONT, plain0 :$PLAIN0_FRONT)"
bg_start "$HAP_DIR/haproxy.log" haproxy -db -f "$HAP_DIR/haproxy.cfg"
HAP_PID=$LAST_PID
wait_until 10 "HAProxy's stats socket" test -S "$HAP_SOCK"

# hap_status BACKEND SERVER: the state HAProxy gives the server (UP, DOWN, UP 2/3, ...).
hap_status() {
    python3 - "$HAP_SOCK" "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
out = b""
while chunk := s.recv(65536):
    out += chunk
for line in out.decode().splitlines():
    f = line.split(",")
    if len(f) > 17 and f[0] == sys.argv[2] and f[1] == sys.argv[3]:
        print(f[17])
        break
else:
    sys.exit(1)
EOF
}
server_up() { [[ "$(hap_status "$1" "$2")" == UP ]]; }
all_up() { server_up "$1" web-1 && server_up "$1" web-2; }

# === load ===
# start_load NAME FRONT_PORT: the load through one frontend, bounded on its own in time.
LOAD_MAX=$((ROLLOUT_TIMEOUT + 2 * SETTLE + 120))
start_load() {
    local name=$1 front=$2
    rm -f "$BENCH_TMP/stop-$name"
    bg_start "$BENCH_TMP/load-$name.json" python3 "$BENCH_ROOT/bench/lb_load.py" \
        "http://127.0.0.1:$front/" "$BENCH_TMP/stop-$name" "$LOAD_MAX" "$KEEPALIVE" "$FRESH" "$RATE"
    LOAD_PID=$LAST_PID
}
load_done() { ! is_running "$LOAD_PID"; }
stop_load() {
    local name=$1
    touch "$BENCH_TMP/stop-$name"
    wait_until 15 "the load generator to finish" load_done
    wait "$LOAD_PID" 2>/dev/null || die "the load generator failed: $(cat "$BENCH_TMP/load-$name.json")"
}
ROWS="$BENCH_TMP/rows.jsonl"
: >"$ROWS"
# row NAME LABEL T0 T1: one line of the results table.
row() {
    python3 -c 'import json,sys; a=sys.argv; print(json.dumps({"name": a[1], "label": a[2], "start": float(a[3]), "end": float(a[4])}))' \
        "$@" >>"$ROWS"
}
now() { date +%s.%N; }

# === 1. naive ===
declare -A NAIVE_PIDS=()
start_demo() { # start_demo INDEX VERSION
    local i=$1 v=$2
    bg_start "$BENCH_TMP/naive-${SERVERS[i]}-$v.log" env "BATON_INSTANCE=${SERVERS[i]}" \
        "$BENCH_TMP/artifacts/$v/baton-demo" --host "${ADDRESSES[i]}" --port "$NAIVE_PORT"
    NAIVE_PIDS[$i]=$LAST_PID
    wait_http "$LAST_PID" "http://${ADDRESSES[i]}:$NAIVE_PORT/health" "baton-demo $v on ${ADDRESSES[i]}" "$BENCH_TMP/naive-${SERVERS[i]}-$v.log"
}
for delay in "${COPY_DELAYS[@]}"; do
    name="naive-$delay"
    log "$name: baton-demo 1.0.0 on ${ADDRESSES[*]}:$NAIVE_PORT"
    start_demo 0 1.0.0
    start_demo 1 1.0.0
    wait_until 60 "HAProxy to take both naive servers in" all_up naive
    start_load "$name" "$NAIVE_FRONT"
    sleep "$SETTLE"
    t0=$(now)
    for i in 0 1; do
        log "$name: ${SERVERS[i]}: SIGTERM, ${delay}s copy, start 1.1.0, wait until HAProxy shows it UP"
        stop_pid "${NAIVE_PIDS[$i]}"
        sleep "$delay"
        start_demo "$i" 1.1.0
        wait_until "$ROLLOUT_TIMEOUT" "HAProxy to show ${SERVERS[i]} UP" server_up naive "${SERVERS[i]}"
    done
    t1=$(now)
    sleep "$SETTLE"
    stop_load "$name"
    row "$name" "naive script, ${delay} s copy" "$t0" "$t1"
    for i in 0 1; do stop_pid "${NAIVE_PIDS[$i]}"; done
done

# === 2 and 3. Baton ===
dir="$BENCH_TMP/baton"
mkdir -p "$dir"
BATON_CONFIG_FILE="$dir/baton.toml"
cat >"$BATON_CONFIG_FILE" <<EOF
[api]
listen = "127.0.0.1:$API_PORT"

[cluster]
listen = "127.0.0.1:$CLUSTER_PORT"

[hosts.web-1]
address = "${ADDRESSES[0]}"

[hosts.web-2]
address = "${ADDRESSES[1]}"

[apps.web]
listen = "127.0.0.1:$EDGE_PORT"
hosts = ["web-1", "web-2"]
instances = 2
host_port = $HOST_PORT
command = ["{artifact}/baton-demo"]

[apps.web.external_lb]
health_port = $HEALTH_PORT
interval = "5s"
timeout = "2s"
fall = 3
rise = 2

[apps.web.rolling]
max_surge = 0
max_unavailable = 1

[apps.plain]
listen = "127.0.0.1:$PLAIN_EDGE_PORT"
hosts = ["web-1", "web-2"]
instances = 2
host_port = $PLAIN_HOST_PORT
command = ["{artifact}/baton-demo"]

[apps.plain.rolling]
max_surge = 1
max_unavailable = 0

[apps.plain0]
listen = "127.0.0.1:$PLAIN0_EDGE_PORT"
hosts = ["web-1", "web-2"]
instances = 2
host_port = $PLAIN0_HOST_PORT
command = ["{artifact}/baton-demo"]

[apps.plain0.rolling]
max_surge = 0
max_unavailable = 1
EOF
log "starting baton up with two agents"
bg_start "$dir/baton.log" "$BATON" up --config "$BATON_CONFIG_FILE"
BATON_PID=$LAST_PID
wait_until 30 "the baton API" baton_cli status web --json
host_connected() { baton_cli hosts --json | python3 -c "import json,sys; sys.exit(0 if any(h['name']=='$1' and h['state']=='connected' for h in json.load(sys.stdin)) else 1)"; }
for i in 0 1; do
    token=$(baton_cli host token 2>/dev/null)
    bg_start "$dir/agent-${SERVERS[i]}.log" "$BATON" agent --join "127.0.0.1:$CLUSTER_PORT" --token "$token" \
        --name "${SERVERS[i]}" --address "${ADDRESSES[i]}" --data-dir "$BENCH_TMP/agent-${SERVERS[i]}"
    wait_until 30 "agent ${SERVERS[i]} to connect" host_connected "${SERVERS[i]}"
done
apps=(web)
[[ $PLAIN == 1 ]] && apps+=(plain plain0)
for app in "${apps[@]}"; do
    for v in 1.0.0 1.1.0; do
        baton_cli release create "$app" "$v" --artifact "$BENCH_TMP/artifacts/$v" >/dev/null
    done
    baton_cli deploy "$app" 1.0.0 --wait >"$dir/deploy-$app-1.0.0.log" 2>&1 ||
        die "deploy $app 1.0.0 failed: $(cat "$dir/deploy-$app-1.0.0.log")"
done

# baton_rollout NAME APP BACKEND FRONT LABEL
baton_rollout() {
    local name=$1 app=$2 backend=$3 front=$4 label=$5 rc=0
    wait_until 60 "HAProxy to take both $backend servers in" all_up "$backend"
    start_load "$name" "$front"
    sleep "$SETTLE"
    log "$name: baton deploy $app 1.1.0 --wait"
    local t0 t1
    t0=$(now)
    timeout "$ROLLOUT_TIMEOUT" "$BATON" deploy "$app" 1.1.0 --wait --config "$BATON_CONFIG_FILE" >"$dir/deploy-$app-1.1.0.log" 2>&1 || rc=$?
    ((rc == 0)) || die "deploy $app 1.1.0 exited $rc: $(tail -n 5 "$dir/deploy-$app-1.1.0.log")"
    wait_until "$ROLLOUT_TIMEOUT" "HAProxy to show both $backend servers UP" all_up "$backend"
    t1=$(now)
    sleep "$SETTLE"
    stop_load "$name"
    baton_cli history "$app" --json --limit 1 >"$dir/history-$app.json"
    row "$name" "$label" "$t0" "$t1"
}
baton_rollout handshake web handshake "$HANDSHAKE_FRONT" "Baton, external_lb handshake (max_surge 0)"
if [[ $PLAIN == 1 ]]; then
    baton_rollout plain plain plain "$PLAIN_FRONT" "Baton, host_port only (max_surge 1)"
    baton_rollout plain0 plain0 plain0 "$PLAIN0_FRONT" "Baton, host_port only (max_surge 0)"
fi

# === report ===
echo
echo "rolling update of 2 servers behind HAProxy, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
machine_summary
baton_summary
echo "HAProxy: $(haproxy -v | head -n 1 | cut -d' ' -f1-3); every backend: inter 5s fall 3 rise 2, timeout check 2s, retries 0, round robin"
echo "load: $KEEPALIVE keep-alive + $FRESH new-connection workers at $RATE req/s each ($(((KEEPALIVE + FRESH) * RATE)) req/s), from ${SETTLE}s before to ${SETTLE}s after each rollout"
echo "note: HAProxy, the load, baton, its agents and the instances share the same $(nproc) cores."
echo
python3 - "$ROWS" "$BENCH_TMP" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tmp = sys.argv[2]
print(f"{'way':44} {'rollout':>8} {'sent':>6} {'failed':>7}  failure window (first -> last failed, from the rollout's start)")
for r in rows:
    load = json.load(open(f"{tmp}/load-{r['name']}.json"))
    fails = [t for t, _ in load["failures"]]
    if fails:
        a, b = min(fails) - r["start"], max(fails) - r["start"]
        window = f"{b - a:5.1f} s  ({a:.1f} s -> {b:.1f} s)"
    else:
        window = "    -"
    # Bursts: failures less than 1 s apart belong to the same one.
    bursts, fails = [], sorted(fails)
    for t in fails:
        if bursts and t - bursts[-1][1] < 1.0:
            bursts[-1][1] = t
        else:
            bursts.append([t, t])
    kinds = {}
    for _, what in load["failures"]:
        k = what.split(":")[0]
        kinds[k] = kinds.get(k, 0) + 1
    print(f"{r['label']:44} {r['end'] - r['start']:6.1f} s {load['sent']:6} {load['failed']:7}  {window}")
    print(f"{'':44} served by {load['by_version']}" + (f"; failures: {kinds}" if kinds else ""))
    if bursts:
        print(f"{'':44} {len(bursts)} burst(s) of failures: " + ", ".join(f"{b - a:.1f} s from {a - r['start']:.1f} s" for a, b in bursts))
EOF
