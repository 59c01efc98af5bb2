#!/usr/bin/env bash
# bench/dark.sh: what a dark launch costs the users. The stable path's latency with 100 % of
# requests mirrored to a dark release, against the same load without mirroring, in the same
# run (interleaved: off, on, off, on, ...).
#
# Baton runs INSTANCES demo instances of 1.0.0; 2.0.0 is started dark with fraction = 1.0.
# bench/restart_load.py sends paced GET /greeting requests over keep-alive connections for
# SECONDS per round; rounds alternate between no dark launch and a dark launch (a `baton
# deploy --strategy dark`, then `baton abort`). Prints p50/p99/max and failures for each
# mode and the ratio p99(mirrored) / p99(not mirrored). DARK_FLAGS=--hang measures the same
# with a dark release that hangs (every copy dropped).
#
# Usage: bench/dark.sh
#
# Environment (defaults in brackets):
#   INSTANCES [3]   ROUNDS [3]   SECONDS_PER_ROUND [10]
#   KEEPALIVE [4]   RATE [100] requests/s per worker
#   DARK_FLAGS []   extra `baton demo artifact` flags for the dark release (e.g. --hang)
#   BUILD [1]       0 skips cargo build --release (uses target/release/baton, or BATON_BIN)
#   BATON_BIN       another baton binary, with BUILD=0
#   BENCH_KEEP_TMP [0]  1 keeps the temp dir

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTANCES=${INSTANCES:-3}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_ROUND=${SECONDS_PER_ROUND:-10}
KEEPALIVE=${KEEPALIVE:-4}
RATE=${RATE:-100}
BATON=${BATON_BIN:-$BATON}

bench_init
build_baton
BATON_EXTRA_TOML=$'\n[apps.web.dark]\nfraction = 1.0\n' start_baton "$INSTANCES"
make_release 1.0.0
log "deploying 1.0.0 on $INSTANCES instances"
baton_cli deploy web 1.0.0 --wait >"$BENCH_TMP/deploy.log" 2>&1 || { cat "$BENCH_TMP/deploy.log" >&2; die "deploy 1.0.0 failed"; }

copying() {
    curl -s "http://$BATON_PROXY/greeting" >/dev/null
    baton_cli dark web --json | python3 -c 'import json,sys; v=json.load(sys.stdin); sys.exit(0 if v["copying"] and v["report"]["copied"] > 0 else 1)'
}
idle() {
    baton_cli status web --json | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["deployment"] is None and all(i["release"]=="1.0.0" for i in s["instances"]) else 1)'
}

# round MODE N: one round of load, its samples in $BENCH_TMP/MODE-N.json.
round() {
    local mode=$1 n=$2
    python3 "$BENCH_ROOT/bench/restart_load.py" "http://$BATON_PROXY/greeting" "$BENCH_TMP/never" \
        "$SECONDS_PER_ROUND" "$KEEPALIVE" 0 "$RATE" >"$BENCH_TMP/$mode-$n.json"
}

for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS: no dark launch"
    round off "$r"
    version="2.0.$r"
    # shellcheck disable=SC2086 # DARK_FLAGS is a list of flags
    "$BATON" demo artifact "$BENCH_TMP/artifacts/$version" --version "$version" ${DARK_FLAGS:-} >/dev/null
    baton_cli release create web "$version" --artifact "$BENCH_TMP/artifacts/$version" >/dev/null
    baton_cli deploy web "$version" --strategy dark >/dev/null
    wait_until 60 "the dark launch of $version to copy" copying
    log "round $r/$ROUNDS: 100 % mirrored to $version"
    round on "$r"
    baton_cli dark web --json >"$BENCH_TMP/dark-$r.json"
    baton_cli abort web --wait >/dev/null 2>&1 || true
    wait_until 60 "the dark release to be drained" idle
done

echo
echo "dark launch cost on the stable path, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "GET /greeting, $KEEPALIVE keep-alive workers at $RATE req/s each, $ROUNDS x ${SECONDS_PER_ROUND}s per mode, $INSTANCES stable instances${DARK_FLAGS:+, dark release: $DARK_FLAGS}"
python3 - "$BENCH_TMP" "$ROUNDS" <<'PY'
import json, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])

def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))] if v else float("nan")

rows = {}
for mode in ("off", "on"):
    lat, errors = [], 0
    for n in range(1, rounds + 1):
        for _start, ms, _ka, err in json.load(open(f"{tmp}/{mode}-{n}.json"))["samples"]:
            if err:
                errors += 1
            else:
                lat.append(ms)
    rows[mode] = (len(lat) + errors, errors, pct(lat, 0.5), pct(lat, 0.99), max(lat or [float("nan")]))
copied = dropped = compared = 0
for n in range(1, rounds + 1):
    r = json.load(open(f"{tmp}/dark-{n}.json"))["report"]
    copied += r["copied"]; compared += r["compared"]
    dropped += r["dropped_queue_full"] + r["dropped_failed"]
print(f"{'mode':<14}{'requests':>10}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
for mode, name in (("off", "not mirrored"), ("on", "mirrored")):
    total, err, p50, p99, mx = rows[mode]
    print(f"{name:<14}{total:>10}{err:>8}{p50:>9.2f}{p99:>9.2f}{mx:>9.2f}")
print(f"p99 mirrored / not mirrored: {rows['on'][3] / rows['off'][3]:.2f}")
print(f"copies: {copied} queued, {compared} compared, {dropped} dropped")
PY
