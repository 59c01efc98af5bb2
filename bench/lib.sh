# shellcheck shell=bash
# bench/lib.sh: what both benchmark scripts share: the build, the reference tools, a Baton
# daemon on a temporary data dir, bounded waits, and the cleanup of every process they start.
#
# Sourced, not run. Sets BENCH_TMP, BATON, BATON_CONFIG_FILE, BATON_PROXY, BATON_PID.

set -euo pipefail

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BATON="$BENCH_ROOT/target/release/baton"
BENCH_TMP=""
BATON_PID=""
# Processes this script started, killed in reverse order on exit.
BENCH_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A free loopback port (the kernel picks it; a small race with other programs is accepted).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s until it succeeds;
# fails the script after SECONDS.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local tries=$((limit * 10)) i
    for ((i = 0; i < tries; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "timed out after ${limit}s waiting for $what"
}

# wait_http PID URL NAME LOGFILE: waits (up to 10 s) until URL answers 2xx, failing at once
# with the log if the process PID has exited.
wait_http() {
    local pid=$1 url=$2 name=$3 logfile=$4 i
    for ((i = 0; i < 100; i++)); do
        is_running "$pid" || die "$name exited at startup: $(cat "$logfile")"
        curl -sf -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    die "$name does not answer $url after 10s: $(cat "$logfile")"
}

# True while PID runs (an exited child we have not reaped is a zombie: not running).
is_running() {
    local state
    state=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# Stops a process we started: SIGTERM, up to 10 s of grace, then SIGKILL.
stop_pid() {
    local pid=$1 i
    is_running "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        is_running "$pid" || return 0
        sleep 0.1
    done
    log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local i
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${BENCH_PIDS[i]}"
    done
    # Baton stops its instances on SIGTERM; if it could not, kill the instance process groups its
    # pid files name (and those of agents, whose instances outlive them by design), but only
    # those running from this benchmark's temporary directory.
    if [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" ]]; then
        local f pid
        for f in "$BENCH_TMP"/baton/.baton/run/* "$BENCH_TMP"/agent-*/run/*; do
            [[ -f "$f" ]] || continue
            read -r pid _ <"$f" || continue
            if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$BENCH_TMP"; then
                log "killing leftover instance pid $pid"
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            fi
        done
    fi
    if [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" ]]; then
        if [[ "${BENCH_KEEP_TMP:-0}" == 1 || $rc -ne 0 ]]; then
            log "kept $BENCH_TMP (logs and configs)"
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
    exit "$rc"
}

bench_init() {
    BENCH_TMP="$(mktemp -d /tmp/baton-bench.XXXXXX)"
    trap bench_cleanup EXIT
    trap 'log "interrupted"; exit 130' INT TERM
}

# Starts a background process and records its pid for cleanup: bg_start LOGFILE COMMAND...
bg_start() {
    local logfile=$1
    shift
    "$@" >"$logfile" 2>&1 &
    LAST_PID=$!
    BENCH_PIDS+=("$LAST_PID")
}

# BUILD=0 skips the build and uses the binary already in target/release.
build_baton() {
    if [[ "${BUILD:-1}" == 0 ]]; then
        [[ -x "$BATON" ]] || die "BUILD=0 but there is no binary at $BATON"
        log "BUILD=0: using the existing $BATON"
        return 0
    fi
    log "building baton (cargo build --release)"
    (cd "$BENCH_ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
    [[ -x "$BATON" ]] || die "no binary at $BATON after the build"
}

# Installs the reference tools from the system packages if any is missing (we are root on Debian).
install_tools() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v wrk >/dev/null || missing+=(wrk)
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]} from the system packages"
    [[ $(id -u) == 0 ]] || die "${missing[*]} missing and not root: run 'apt-get install -y nginx haproxy wrk' first"
    # The packages' service scripts would start the system nginx/haproxy on the default ports;
    # policy-rc.d 101 tells them not to, for the length of the install.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    local rc=0
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx haproxy wrk; } >&2 || rc=$?
    ((created_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install failed"
}

baton_cli() { "$BATON" "$@" --config "$BATON_CONFIG_FILE"; }

# start_baton INSTANCES: writes a config in $BENCH_TMP/baton, starts `baton up` and waits for
# its API. Extra TOML for [apps.web] can be passed in BATON_EXTRA_TOML. Knobs for a slow
# Baton (under valgrind): BATON_WRAPPER (a command line put before `baton up`, e.g.
# "valgrind --tool=callgrind ..."), BATON_HEALTH_INTERVAL [250ms], BATON_HEALTH_TIMEOUT [1s],
# BATON_START_WAIT [30] seconds for the API to answer.
start_baton() {
    local instances=$1
    local dir="$BENCH_TMP/baton"
    mkdir -p "$dir"
    local api_port proxy_port
    api_port=$(free_port)
    proxy_port=$(free_port)
    BATON_PROXY="127.0.0.1:$proxy_port"
    BATON_CONFIG_FILE="$dir/baton.toml"
    cat >"$BATON_CONFIG_FILE" <<EOF
[api]
listen = "127.0.0.1:$api_port"

[apps.web]
listen = "$BATON_PROXY"
instances = $instances
command = ["{artifact}/baton-demo", "--port", "{port}"]
${BATON_EXTRA_TOML:-}

[apps.web.health]
interval = "${BATON_HEALTH_INTERVAL:-250ms}"
timeout = "${BATON_HEALTH_TIMEOUT:-1s}"
EOF
    local wrapper=()
    read -r -a wrapper <<<"${BATON_WRAPPER:-}"
    log "starting ${wrapper[*]:+${wrapper[*]} }baton up (API 127.0.0.1:$api_port, proxy $BATON_PROXY, $instances instances)"
    bg_start "$dir/baton.log" "${wrapper[@]}" "$BATON" up --config "$BATON_CONFIG_FILE"
    BATON_PID=$LAST_PID
    wait_until "${BATON_START_WAIT:-30}" "the baton API" baton_cli status web --json
}

# make_release VERSION: writes a demo artifact and stores it as a release of `web`.
make_release() {
    local version=$1 out="$BENCH_TMP/artifacts/$1"
    "$BATON" demo artifact "$out" --version "$version" >/dev/null
    baton_cli release create web "$version" --artifact "$out" >/dev/null
}

# Instance addresses (host:port), one a line, of the instances in the split.
instance_addresses() {
    baton_cli status web --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
for i in s["instances"]:
    if i.get("in_split") and i.get("state") == "healthy":
        print(i["address"])'
}

baton_summary() {
    local rev dirty=""
    rev=$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$BENCH_ROOT" diff --quiet HEAD -- crates 2>/dev/null || dirty=" (with uncommitted changes under crates/)"
    echo "baton: $("$BATON" --version) at commit $rev$dirty, binary built $(date -u -r "$BATON" +%Y-%m-%dT%H:%M:%SZ)"
}

machine_summary() {
    local cpu
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    echo "machine: $(nproc) cores, ${cpu:-unknown CPU}, Linux $(uname -r)"
}
