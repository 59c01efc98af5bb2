#!/usr/bin/env bash
# bench/idle.sh: what an idle controller costs. Baton runs APPS apps of INSTANCES demo
# instances each, every one deployed and healthy, and nothing happens; the script reads the
# CPU time `baton up` used (utime + stime from /proc/PID/stat) over MEASURE seconds and prints
# it as a percentage of one core. Instances are not counted (their own processes).
#
# Usage: bench/idle.sh
#
# Environment (defaults in brackets):
#   APPS [100]  INSTANCES [1]  MEASURE [30] seconds  SETTLE [5] seconds after the last deploy
#   HOSTS [0]   0: every instance on the controller's host; N: N agents on 127.0.0.2 ...
#               127.0.0.(N+1), each app spread over all of them (their CPU is not counted)
#   HEALTH_INTERVAL [1s]  the apps' health.interval (the default of baton.toml)
#   BUILD [1]   0 skips cargo build --release (uses target/release/baton)
#   BENCH_KEEP_TMP [0]  1 keeps the temp dir

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APPS=${APPS:-100}
INSTANCES=${INSTANCES:-1}
MEASURE=${MEASURE:-30}
SETTLE=${SETTLE:-5}
HEALTH_INTERVAL=${HEALTH_INTERVAL:-1s}
HOSTS=${HOSTS:-0}

bench_init
build_baton

dir="$BENCH_TMP/baton"
mkdir -p "$dir"
# APPS + 1 distinct free ports: held open together while the kernel picks them.
mapfile -t ports < <(python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]) + 2)]
for s in socks: s.bind(("127.0.0.1", 0))
for s in socks: print(s.getsockname()[1])' "$APPS")
api_port=${ports[$APPS]}
cluster_port=${ports[$((APPS + 1))]}
host_list=""
for ((h = 1; h <= HOSTS; h++)); do host_list+="${host_list:+, }\"h$h\""; done
BATON_CONFIG_FILE="$dir/baton.toml"
{
    printf '[api]\nlisten = "127.0.0.1:%s"\n' "$api_port"
    if ((HOSTS > 0)); then
        printf '\n[cluster]\nlisten = "127.0.0.1:%s"\n' "$cluster_port"
        for ((h = 1; h <= HOSTS; h++)); do
            printf '[hosts.h%s]\naddress = "127.0.0.%s"\n' "$h" "$((h + 1))"
        done
    fi
    for ((a = 0; a < APPS; a++)); do
        printf '\n[apps.app%s]\nlisten = "127.0.0.1:%s"\ninstances = %s\n' "$a" "${ports[$a]}" "$INSTANCES"
        ((HOSTS > 0)) && printf 'hosts = [%s]\n' "$host_list"
        printf 'command = ["{artifact}/baton-demo"]\n'
        printf '[apps.app%s.health]\ninterval = "%s"\n' "$a" "$HEALTH_INTERVAL"
    done
} >"$BATON_CONFIG_FILE"
log "starting baton up with $APPS apps x $INSTANCES instances"
bg_start "$dir/baton.log" "$BATON" up --config "$BATON_CONFIG_FILE"
BATON_PID=$LAST_PID
wait_until 30 "the baton API" baton_cli status app0 --json
for ((h = 1; h <= HOSTS; h++)); do
    token=$(baton_cli host token 2>/dev/null)
    bg_start "$dir/agent-h$h.log" "$BATON" agent --join "127.0.0.1:$cluster_port" --token "$token" \
        --name "h$h" --address "127.0.0.$((h + 1))" --data-dir "$BENCH_TMP/agent-h$h"
    host_connected() { baton_cli hosts --json | python3 -c "import json,sys; sys.exit(0 if any(h['name']=='h$1' and h['state']=='connected' for h in json.load(sys.stdin)) else 1)"; }
    wait_until 30 "agent h$h to connect" host_connected "$h"
done

"$BATON" demo artifact "$BENCH_TMP/artifact" --version 1.0.0 >/dev/null
for ((a = 0; a < APPS; a++)); do
    baton_cli release create "app$a" 1.0.0 --artifact "$BENCH_TMP/artifact" >/dev/null
    baton_cli deploy "app$a" 1.0.0 >/dev/null
done
all_healthy() {
    baton_cli status --json | python3 -c '
import json, sys
apps = json.load(sys.stdin)
ok = all(a["phase"] in ("idle", "succeeded") and sum(i["state"] == "healthy" for i in a["instances"]) == a["instances_wanted"] for a in apps)
sys.exit(0 if ok else 1)'
}
wait_until 600 "every app deployed and healthy" all_healthy
sleep "$SETTLE"

ticks() { awk '{print $14 + $15}' "/proc/$BATON_PID/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
sleep "$MEASURE"
after=$(ticks)
cpu=$(python3 -c "print(f'{($after - $before) / $hz / $MEASURE * 100:.1f}')")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$BATON_PID/status")
printf '\nidle controller: %s apps x %s instances on %s, health interval %s, %ss measured\n' "$APPS" "$INSTANCES" "$( ((HOSTS > 0)) && echo "$HOSTS hosts" || echo "the local host")" "$HEALTH_INTERVAL" "$MEASURE"
printf '  baton up CPU: %s %% of one core   RSS: %s kB\n' "$cpu" "$rss"
