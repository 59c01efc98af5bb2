#!/usr/bin/env bash
# bench/tls.sh: TLS termination through Baton, nginx and HAProxy, with the same certificate
# (ECDSA P-256), TLS 1.2 + 1.3 on all three and the same instances behind them, in one run:
#
#   keepalive  HTTPS requests on kept-alive TLS connections (wrk): req/s, p50, p99
#   newconn    a new TLS connection per request (wrk, `Connection: close`): req/s, p50, p99.
#              wrk resumes the TLS 1.3 session on each new connection (a PSK handshake,
#              as a returning browser does); `full` below measures full handshakes
#   full       full handshakes (h2load --h1, fresh clients, one request each): connections/s
#              and the mean and max time to the first byte (TCP + TLS handshake + request)
#   h2         HTTP/2 over TLS by ALPN (h2load, kept-alive, concurrent streams): req/s, p50, p99
#
# Clients pick the cipher suite (all three servers honour the client's order): wrk gets
# TLS_AES_256_GCM_SHA384 and h2load TLS_AES_128_GCM_SHA256 from every server, with X25519
# (printed per target below).
#
# Usage: bench/tls.sh     (as root on Debian it installs nginx, haproxy, wrk and
#                          nghttp2-client if missing)
#
# Environment (defaults in brackets):
#   INSTANCES [2]      demo instances behind every proxy
#   THREADS [2]        wrk -t and h2load -t
#   CONNECTIONS [64]   wrk -c (keepalive, newconn)
#   DURATION [10s]     wrk -d of each measured run
#   WARMUP [2s]        wrk -d of the unmeasured warm-up before each run
#   ROUNDS [3]         rounds of every mode, targets interleaved; tables show medians
#   FULL_BATCHES [20]  full: h2load runs of FULL_CLIENTS fresh connections each
#   FULL_CLIENTS [100]
#   H2_REQUESTS [200000]  h2: requests per run, on H2_CLIENTS connections x H2_STREAMS streams
#   H2_CLIENTS [16]
#   H2_STREAMS [10]
#   TARGETS ["baton nginx haproxy"]
#   BUILD [1]          0 skips cargo build --release (uses target/release/baton)
#   BENCH_KEEP_TMP [0] 1 keeps the temp dir (configs, logs, raw output)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTANCES=${INSTANCES:-2}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
FULL_BATCHES=${FULL_BATCHES:-20}
FULL_CLIENTS=${FULL_CLIENTS:-100}
H2_REQUESTS=${H2_REQUESTS:-200000}
H2_CLIENTS=${H2_CLIENTS:-16}
H2_STREAMS=${H2_STREAMS:-10}
TARGETS=${TARGETS:-baton nginx haproxy}

bench_init
build_baton
install_tools
if ! command -v h2load >/dev/null; then
    [[ $(id -u) == 0 ]] || die "h2load missing and not root: run 'apt-get install -y nghttp2-client' first"
    log "installing nghttp2-client (h2load) from the system packages"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nghttp2-client; } >&2 || die "apt-get install nghttp2-client failed"
fi

# === the certificate: ECDSA P-256, for bench.test, used by all three ===
CERT_DIR="$BENCH_TMP/cert"
mkdir -p "$CERT_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
    -keyout "$CERT_DIR/key.pem" -out "$CERT_DIR/cert.pem" 2>/dev/null || die "openssl could not make the certificate"
cat "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem" >"$CERT_DIR/haproxy.pem"

BATON_EXTRA_TOML="
[apps.web.tls]
cert = \"$CERT_DIR/cert.pem\"
key = \"$CERT_DIR/key.pem\"
"
start_baton "$INSTANCES"
make_release 1.0.0
log "deploying 1.0.0 on $INSTANCES instances"
baton_cli deploy web 1.0.0 --wait >"$BENCH_TMP/deploy.log" 2>&1 || { cat "$BENCH_TMP/deploy.log" >&2; die "deploy 1.0.0 failed"; }
mapfile -t BACKENDS < <(instance_addresses)
((${#BACKENDS[@]} == INSTANCES)) || die "expected $INSTANCES healthy instances, status shows: ${BACKENDS[*]:-none}"
log "instances: ${BACKENDS[*]}"

# === nginx: TLS 1.2 + 1.3 (1.22 leaves 1.3 out by default), session cache and tickets, h2 ===
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
    # nginx closes a connection after 1000 requests by default (HTTP/2 too): the clients
    # here keep theirs, as with Baton and HAProxy.
    echo "  keepalive_requests 1000000;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $NGINX_DIR/${t}_temp;"; done
    echo "  upstream demo {"
    for b in "${BACKENDS[@]}"; do echo "    server $b;"; done
    echo "    keepalive 64;"
    echo "  }"
    echo "  server {"
    echo "    listen $NGINX_ADDR ssl http2;"
    echo "    ssl_certificate $CERT_DIR/cert.pem;"
    echo "    ssl_certificate_key $CERT_DIR/key.pem;"
    echo "    ssl_protocols TLSv1.2 TLSv1.3;"
    echo "    ssl_session_cache shared:SSL:1m;"
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
wait_until 10 "nginx over HTTPS" curl -skf -o /dev/null "https://$NGINX_ADDR/"

# === HAProxy: TLS 1.2 + 1.3, ALPN h2 and http/1.1 ===
HAPROXY_DIR="$BENCH_TMP/haproxy"
mkdir -p "$HAPROXY_DIR"
HAPROXY_ADDR="127.0.0.1:$(free_port)"
{
    echo "global"
    echo "  nbthread $(nproc)"
    echo "  maxconn 4096"
    echo "  pidfile $HAPROXY_DIR/haproxy.pid"
    echo "  ssl-default-bind-options ssl-min-ver TLSv1.2"
    echo "defaults"
    echo "  mode http"
    echo "  option http-keep-alive"
    echo "  http-reuse always"
    echo "  timeout connect 5s"
    echo "  timeout client 30s"
    echo "  timeout server 30s"
    echo "frontend fe"
    echo "  bind $HAPROXY_ADDR ssl crt $CERT_DIR/haproxy.pem alpn h2,http/1.1"
    echo "  default_backend demo"
    echo "backend demo"
    echo "  balance roundrobin"
    i=0
    for b in "${BACKENDS[@]}"; do i=$((i + 1)); echo "  server s$i $b"; done
} >"$HAPROXY_DIR/haproxy.cfg"
haproxy -c -q -f "$HAPROXY_DIR/haproxy.cfg" || die "haproxy rejected $HAPROXY_DIR/haproxy.cfg"
bg_start "$HAPROXY_DIR/stdout.log" haproxy -db -f "$HAPROXY_DIR/haproxy.cfg"
wait_until 10 "haproxy over HTTPS" curl -skf -o /dev/null "https://$HAPROXY_ADDR/"

target_addr() {
    case $1 in
    baton) echo "$BATON_PROXY" ;;
    nginx) echo "$NGINX_ADDR" ;;
    haproxy) echo "$HAPROXY_ADDR" ;;
    *) die "unknown target $1" ;;
    esac
}
CURL_TLS=(--cacert "$CERT_DIR/cert.pem")
target_url() {
    echo "https://bench.test:$(target_addr "$1" | cut -d: -f2)/"
}
resolve() { echo "bench.test:$(target_addr "$1" | cut -d: -f2):127.0.0.1"; }
for t in $TARGETS; do
    wait_until 10 "$t over HTTPS" curl -sf -o /dev/null "${CURL_TLS[@]}" --resolve "$(resolve "$t")" "$(target_url "$t")"
    # HTTP/2 by ALPN, verified against the certificate.
    v=$(curl -sf -o /dev/null -w '%{http_version}' --http2 "${CURL_TLS[@]}" --resolve "$(resolve "$t")" "$(target_url "$t")") || die "$t does not answer HTTPS"
    [[ $v == 2 ]] || die "$t did not negotiate HTTP/2 (got $v)"
done
# What each target negotiates with an OpenSSL client (wrk's and h2load's library).
negotiated() {
    openssl s_client -connect "$(target_addr "$1")" -servername bench.test -brief </dev/null 2>&1 |
        awk -F': ' '/^Protocol version/{p=$2} /^Ciphersuite/{c=$2} /^(Server|Peer) Temp Key/{k=$2} END{print p, c, k}'
}

# The clients connect to the addresses; SNI and Host are the addresses (the certificate is
# not verified by wrk and h2load, as they do not verify).
url_of() { echo "https://$(target_addr "$1")/"; }

# === keepalive and newconn: wrk ===
for mode in keepalive newconn; do
    : >"$BENCH_TMP/$mode.jsonl"
done
WRK=(wrk "-t$THREADS" "-c$CONNECTIONS" --latency)
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in keepalive newconn; do
        extra=()
        [[ $mode == newconn ]] && extra=(-H "Connection: close")
        for t in $TARGETS; do
            url=$(url_of "$t")
            log "round $round/$ROUNDS: $mode $t ($url): warm-up $WARMUP, then $DURATION"
            timeout 120 "${WRK[@]}" "${extra[@]}" "-d$WARMUP" "$url" >/dev/null 2>&1 || die "wrk warm-up against $t failed"
            out="$BENCH_TMP/wrk-$mode-$t-$round.txt"
            timeout 300 "${WRK[@]}" "${extra[@]}" "-d$DURATION" "$url" >"$out" 2>&1 || die "wrk against $t failed: $(cat "$out")"
            python3 "$BENCH_ROOT/bench/wrkstats.py" parse "$t" "$round" "$out" >>"$BENCH_TMP/$mode.jsonl"
        done
    done
done

# === full handshakes: h2load, fresh clients of one request each ===
: >"$BENCH_TMP/full.txt"
for ((round = 1; round <= ROUNDS; round++)); do
    for t in $TARGETS; do
        log "round $round/$ROUNDS: full handshakes $t: $FULL_BATCHES x $FULL_CLIENTS connections"
        start=$(date +%s.%N)
        for ((b = 0; b < FULL_BATCHES; b++)); do
            timeout 60 h2load --h1 "-t$THREADS" "-c$FULL_CLIENTS" "-n$FULL_CLIENTS" "$(url_of "$t")" >>"$BENCH_TMP/full-$t-$round.txt" 2>&1 || die "h2load against $t failed"
        done
        end=$(date +%s.%N)
        echo "$t $round $start $end" >>"$BENCH_TMP/full.txt"
    done
done

# === h2: h2load, HTTP/2 over TLS ===
: >"$BENCH_TMP/h2.txt"
for ((round = 1; round <= ROUNDS; round++)); do
    for t in $TARGETS; do
        log "round $round/$ROUNDS: h2 $t: $H2_REQUESTS requests on $H2_CLIENTS connections x $H2_STREAMS streams"
        out="$BENCH_TMP/h2-$t-$round.txt"
        timeout 300 h2load "-t$THREADS" "-c$H2_CLIENTS" "-m$H2_STREAMS" "-n$H2_REQUESTS" --log-file "$BENCH_TMP/h2-$t-$round.log" "$(url_of "$t")" >"$out" 2>&1 || die "h2load against $t failed: $(cat "$out")"
        echo "$t $round $out $BENCH_TMP/h2-$t-$round.log" >>"$BENCH_TMP/h2.txt"
    done
done

echo
echo "baton TLS benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
machine_summary
baton_summary
echo "tools: $(nginx -v 2>&1 | sed 's/.*: //'), haproxy $(haproxy -v | awk 'NR==1{print $3}'), wrk $(wrk -v 2>&1 | awk 'NR==1{print $2}'), $(h2load --version | head -1), $(openssl version)"
echo "backends: $INSTANCES baton-demo instances (${BACKENDS[*]}); certificate: ECDSA P-256, self-signed"
for t in $TARGETS; do echo "negotiated with $t (openssl s_client): $(negotiated "$t")"; done
echo "note: the clients, the proxy under test and the instances share the same $(nproc) cores."
echo
echo "== keepalive: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, GET / on kept-alive TLS connections =="
python3 "$BENCH_ROOT/bench/wrkstats.py" proxy-table "$BENCH_TMP/keepalive.jsonl"
echo "== newconn: the same with 'Connection: close': a new TLS connection per request (resumed, PSK) =="
python3 "$BENCH_ROOT/bench/wrkstats.py" proxy-table "$BENCH_TMP/newconn.jsonl"
echo "== full: $FULL_BATCHES h2load --h1 runs of $FULL_CLIENTS fresh connections (1 request each), per round =="
python3 - "$BENCH_TMP" <<'EOF'
import re, statistics, sys, collections
tmp = sys.argv[1]
rate, ttfb_mean, ttfb_max, failed = (collections.defaultdict(list) for _ in range(4))
for line in open(f"{tmp}/full.txt"):
    t, rnd, start, end = line.split()
    text = open(f"{tmp}/full-{t}-{rnd}.txt").read()
    ok = sum(int(x) for x in re.findall(r"(\d+) succeeded", text))
    failed[t].append(sum(int(x) for x in re.findall(r"succeeded, (\d+) failed", text)))
    rate[t].append(ok / (float(end) - float(start)))
    ms = lambda v, u: float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
    firsts = re.findall(r"time to 1st byte:\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)", text)
    ttfb_mean[t].append(statistics.mean(ms(f[4], f[5]) for f in firsts))
    ttfb_max[t].append(max(ms(f[2], f[3]) for f in firsts))
print(f"  {'target':<10} {'conn/s':>10} {'ttfb mean':>10} {'ttfb max':>10} {'failed':>7}   (median of rounds; conn/s includes h2load's start-up)")
for t in rate:
    print(f"  {t:<10} {statistics.median(rate[t]):>10.0f} {statistics.median(ttfb_mean[t]):>7.2f} ms {statistics.median(ttfb_max[t]):>7.2f} ms {sum(failed[t]):>7}")
if "baton" in rate:
    for ref in ("nginx", "haproxy"):
        if ref in rate:
            print(f"  baton/{ref:<8} conn/s {statistics.median(rate['baton']) / statistics.median(rate[ref]):.2f}x")
EOF
echo
echo "== h2: h2load -t$THREADS -c$H2_CLIENTS -m$H2_STREAMS -n$H2_REQUESTS, HTTP/2 over TLS by ALPN =="
python3 - "$BENCH_TMP" <<'EOF'
import re, statistics, sys, collections
tmp = sys.argv[1]
rps, p50, p99, failed = (collections.defaultdict(list) for _ in range(4))
for line in open(f"{tmp}/h2.txt"):
    t, rnd, out, log = line.split()
    text = open(out).read()
    rps[t].append(float(re.search(r"finished in \S+, ([0-9.]+) req/s", text).group(1)))
    failed[t].append(int(re.search(r"succeeded, (\d+) failed", text).group(1)))
    assert "Application protocol: h2" in text, f"{t} did not negotiate h2"
    d = sorted(int(l.split()[2]) for l in open(log) if l.strip())
    p50[t].append(d[len(d) // 2] / 1000)
    p99[t].append(d[int(len(d) * 0.99)] / 1000)
print(f"  {'target':<10} {'req/s':>10} {'p50':>10} {'p99':>10} {'failed':>7}   (median of rounds)")
for t in rps:
    print(f"  {t:<10} {statistics.median(rps[t]):>10.0f} {statistics.median(p50[t]):>7.2f} ms {statistics.median(p99[t]):>7.2f} ms {sum(failed[t]):>7}")
if "baton" in rps:
    b = rps["baton"]
    for ref in ("nginx", "haproxy"):
        if ref in rps:
            print(f"  baton/{ref:<8} req/s {statistics.median(b) / statistics.median(rps[ref]):.2f}x   p99 {statistics.median(p99['baton']) / statistics.median(p99[ref]):.2f}x")
EOF
