#!/usr/bin/env bash
# Proxy benchmark: rouse vs nginx vs HAProxy (and the backend direct) on loopback.
#
# Model: shared/reference/rust-stack.md section 5 ("Performance anchors").
#   - backend: one nginx worker answering `return 200 "hello world\n"`, pinned to CPU 0
#   - each proxy: one worker/thread, pinned to CPU 1, in front of that backend
#   - load: wrk -t1 (HTTP/1.1 keep-alive) and h2load -t1 (h2c), pinned to CPU 0
#   - HTTPS: wrk -t1 over TLS 1.3 (keep-alive) against the same three proxies, each serving one
#     self-signed certificate made here by openssl (EC P-256)
# Targets are interleaved within each round so drift hits them all equally.
#
# Knobs (environment): DURATION (s, default 8), ROUNDS (3), CONNECTIONS (64), SKIP_H2=1, SKIP_TLS=1,
#   H2_REQUESTS (200000), H2_CLIENTS (16), H2_STREAMS (10), CARGO_TARGET_DIR,
#   ROUSE_BIN (use this binary instead of building), KEEP_TMP=1 (keep configs and logs).
# See bench/README.md.
set -euo pipefail

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
SKIP_H2=${SKIP_H2:-0}
SKIP_TLS=${SKIP_TLS:-0}
H2_REQUESTS=${H2_REQUESTS:-200000}
H2_CLIENTS=${H2_CLIENTS:-16}
H2_STREAMS=${H2_STREAMS:-10}
KEEP_TMP=${KEEP_TMP:-0}

BACKEND_CPU=0   # backend nginx and the load generators
PROXY_CPU=1     # the proxy under test
EXPECTED_BODY=$'hello world\n'

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_FILE="$OUT_DIR/proxy-$STAMP.md"
COMMAND_LINE="$(for v in DURATION ROUNDS CONNECTIONS SKIP_H2 SKIP_TLS H2_REQUESTS H2_CLIENTS H2_STREAMS CARGO_TARGET_DIR ROUSE_BIN; do
    if [[ -n ${!v:-} ]]; then printf '%s=%q ' "$v" "${!v}"; fi; done)bench/proxy.sh"

log() { printf '[proxy.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for v in DURATION ROUNDS CONNECTIONS H2_REQUESTS H2_CLIENTS H2_STREAMS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $(id -u) -eq 0 ]] || die "run as root (installs packages, runs nginx/haproxy with its own configs)"

# ---------------------------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------------------------
install_tools() {
    local missing=()
    command -v nginx   >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]   || missing+=(nginx)
    command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
    command -v wrk     >/dev/null 2>&1 || missing+=(wrk)
    command -v h2load  >/dev/null 2>&1 || missing+=(nghttp2-client)
    command -v curl    >/dev/null 2>&1 || missing+=(curl)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if ((${#missing[@]})); then
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # The packages may start their system services on the default ports: we run our own.
    service nginx stop >/dev/null 2>&1 || true
    service haproxy stop >/dev/null 2>&1 || true
}
install_tools
export PATH="$PATH:/usr/sbin:/sbin"
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy)

ncpu=$(nproc)
((ncpu >= 2)) || log "WARNING: only $ncpu CPU(s); pinning to CPU 1 will fail"

# ---------------------------------------------------------------------------------------------
# 2. rouse
# ---------------------------------------------------------------------------------------------
if [[ -n ${ROUSE_BIN:-} ]]; then
    ROUSE=$ROUSE_BIN
    log "using ROUSE_BIN=$ROUSE (not building)"
else
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    log "building rouse (cargo build --release -p rouse, target dir $TARGET)"
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p rouse) \
        || die "cargo build --release -p rouse failed"
    ROUSE=$TARGET/release/rouse
fi
[[ -x $ROUSE ]] || die "no rouse binary at $ROUSE"

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything we start is killed on exit, even on failure.
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/rouse-bench.XXXXXX)
declare -A PIDS=()   # name -> pid

stop_one() {
    local name=$1 pid=${PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM for 5 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for name in "${!PIDS[@]}"; do stop_one "$name"; done
    # nginx workers are children of their master; make sure none is left behind.
    for pidfile in "$TMP"/*.pid; do
        [[ -f $pidfile ]] || continue
        local p; p=$(cat "$pidfile" 2>/dev/null || true)
        [[ -n $p ]] && kill -KILL "$p" 2>/dev/null || true
    done
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then
        log "configs and logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CPU CMD... : start CMD in the background pinned to CPU, logs in $TMP/NAME.log
start() {
    local name=$1 cpu=$2; shift 2
    taskset -c "$cpu" "$@" >"$TMP/$name.log" 2>&1 &
    PIDS[$name]=$!
}

# wait_listen NAME PORT : bounded wait (50 x 0.1 s) until 127.0.0.1:PORT accepts
wait_listen() {
    local name=$1 port=$2
    for _ in $(seq 50); do
        if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            log "$name exited during start-up; its log:"
            sed 's/^/    /' "$TMP/$name.log" >&2 || true
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not accept on 127.0.0.1:$port within 5 s; its log:"
    sed 's/^/    /' "$TMP/$name.log" >&2 || true
    return 1
}

# check_http1 LABEL PORT : one GET must answer 200 "hello world\n"
check_http1() {
    local label=$1 port=$2 out code body
    out=$(curl -sS --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$port/" 2>&1) || {
        log "$label: request failed: $out"; return 1; }
    code=${out##*$'\n'}
    body=${out%$'\n'*}
    if [[ $code != 200 || $body != "$EXPECTED_BODY" ]]; then
        log "$label: expected 200 'hello world', got $code: $(printf %q "$body")"
        return 1
    fi
}

# check_h2c LABEL PORT : one prior-knowledge h2c GET must answer 200 "hello world\n"
check_h2c() {
    local label=$1 port=$2 out code body
    out=$(curl -sS --max-time 5 --http2-prior-knowledge -w '\n%{http_code} %{http_version}' \
        "http://127.0.0.1:$port/" 2>&1) || { log "$label (h2c): request failed: $out"; return 1; }
    code=${out##*$'\n'}
    body=${out%$'\n'*}
    if [[ $code != "200 2" || $body != "$EXPECTED_BODY" ]]; then
        log "$label (h2c): expected '200 2' 'hello world', got '$code': $(printf %q "$body")"
        return 1
    fi
}

# check_https LABEL PORT : one GET over TLS 1.3 (nothing older accepted) must answer 200
check_https() {
    local label=$1 port=$2 out code body
    out=$(curl -sS --max-time 5 --cacert "$CERT" --tlsv1.3 --http1.1 -w '\n%{http_code}' \
        "https://localhost:$port/" --resolve "localhost:$port:127.0.0.1" 2>&1) || {
        log "$label (https): request failed: $out"; return 1; }
    code=${out##*$'\n'}
    body=${out%$'\n'*}
    if [[ $code != 200 || $body != "$EXPECTED_BODY" ]]; then
        log "$label (https): expected 200 'hello world', got $code: $(printf %q "$body")"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# 3/4. Configs and processes
# ---------------------------------------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

read -r P_BACKEND P_NGINX P_HAPROXY P_ROUSE P_NGINX_H2 P_HAPROXY_H2 P_NGINX_TLS P_HAPROXY_TLS P_ROUSE_TLS < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(9):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
[[ -n ${P_ROUSE_TLS:-} ]] || die "could not pick free ports"
log "ports: backend=$P_BACKEND nginx=$P_NGINX haproxy=$P_HAPROXY rouse=$P_ROUSE nginx-h2=$P_NGINX_H2 haproxy-h2=$P_HAPROXY_H2 nginx-tls=$P_NGINX_TLS haproxy-tls=$P_HAPROXY_TLS rouse-tls=$P_ROUSE_TLS"

# One self-signed certificate for every HTTPS target (HAProxy wants it and its key in one file).
CERT=$TMP/bench.pem
KEY=$TMP/bench.key
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$KEY" -out "$CERT" >"$TMP/openssl.log" 2>&1 || die "openssl req failed: $(cat "$TMP/openssl.log")"
cat "$CERT" "$KEY" >"$TMP/bench.combined.pem"

NGINX_VERSION=$("$NGINX" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
# nginx >= 1.25.1 has `http2 on;`; older ones (Debian 12: 1.22.1) take `listen ... http2;`
if [[ $(printf '%s\n' 1.25.1 "$NGINX_VERSION" | sort -V | head -1) == 1.25.1 ]]; then
    NGINX_H2_LISTEN="listen 127.0.0.1:$P_NGINX_H2; http2 on;"
else
    NGINX_H2_LISTEN="listen 127.0.0.1:$P_NGINX_H2 http2;"
fi

# nginx_conf NAME SERVER_BLOCK [HTTP_EXTRA]
nginx_conf() {
    local name=$1 server=$2 extra=${3:-}
    mkdir -p "$TMP/$name"
    cat >"$TMP/$name.conf" <<EOF
worker_processes 1;
user root root;
pid $TMP/$name.pid;
error_log $TMP/$name.error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 65s;
    default_type text/plain;
    client_body_temp_path $TMP/$name/body;
    proxy_temp_path $TMP/$name/proxy;
    fastcgi_temp_path $TMP/$name/fastcgi;
    uwsgi_temp_path $TMP/$name/uwsgi;
    scgi_temp_path $TMP/$name/scgi;
$extra
$server
}
EOF
}

NGINX_UPSTREAM="    upstream backend {
        server 127.0.0.1:$P_BACKEND;
        keepalive 128;
        keepalive_requests 100000;
    }"
NGINX_PROXY_LOCATION="location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }"

nginx_conf backend "    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        location / { return 200 \"hello world\\n\"; }
    }"
nginx_conf nginx "    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        $NGINX_PROXY_LOCATION
    }" "$NGINX_UPSTREAM"
nginx_conf nginx-tls "    server {
        listen 127.0.0.1:$P_NGINX_TLS ssl backlog=4096;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.3;
        $NGINX_PROXY_LOCATION
    }" "$NGINX_UPSTREAM"
nginx_conf nginx-h2 "    server {
        $NGINX_H2_LISTEN
        $NGINX_PROXY_LOCATION
    }" "$NGINX_UPSTREAM"

haproxy_conf() {
    local name=$1 bind=$2
    cat >"$TMP/$name.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend fe
    bind $bind
    default_backend be
backend be
    server s1 127.0.0.1:$P_BACKEND
EOF
}
haproxy_conf haproxy "127.0.0.1:$P_HAPROXY"
haproxy_conf haproxy-h2 "127.0.0.1:$P_HAPROXY_H2 proto h2"
haproxy_conf haproxy-tls "127.0.0.1:$P_HAPROXY_TLS ssl crt $TMP/bench.combined.pem ssl-min-ver TLSv1.3"

cat >"$TMP/rouse.toml" <<EOF
[proxy]
listen = ["127.0.0.1:$P_ROUSE"]
listen_tls = ["127.0.0.1:$P_ROUSE_TLS"]
threads = 1

[[proxy.tls]]
cert = "$CERT"
key = "$KEY"

[log]
access_log = false

[[upstream]]
name = "bench"
supervisor = "none"

[[upstream.server]]
address = "127.0.0.1:$P_BACKEND"
EOF

start_nginx() {  # NAME CPU
    "$NGINX" -t -q -e "$TMP/$1.error.log" -c "$TMP/$1.conf" >"$TMP/$1.test.log" 2>&1 || {
        log "nginx -t failed for $1:"; sed 's/^/    /' "$TMP/$1.test.log" >&2; return 1; }
    start "$1" "$2" "$NGINX" -e "$TMP/$1.error.log" -c "$TMP/$1.conf" -g 'daemon off;'
}
start_haproxy() {  # NAME CPU
    "$HAPROXY" -c -q -f "$TMP/$1.cfg" >"$TMP/$1.test.log" 2>&1 || {
        log "haproxy -c failed for $1:"; sed 's/^/    /' "$TMP/$1.test.log" >&2; return 1; }
    start "$1" "$2" "$HAPROXY" -db -f "$TMP/$1.cfg"
}

log "backend: nginx on 127.0.0.1:$P_BACKEND (CPU $BACKEND_CPU)"
start_nginx backend "$BACKEND_CPU" || die "backend nginx does not start"
wait_listen backend "$P_BACKEND" || die "backend nginx does not listen"
check_http1 backend "$P_BACKEND" || die "backend answers wrongly"

log "rouse check -c $TMP/rouse.toml"
"$ROUSE" check -c "$TMP/rouse.toml" >&2 || die "rouse check rejected the bench config (shown above)"

log "proxies on CPU $PROXY_CPU: nginx :$P_NGINX, haproxy :$P_HAPROXY, rouse :$P_ROUSE"
start_nginx nginx "$PROXY_CPU" || die "nginx proxy does not start"
start_haproxy haproxy "$PROXY_CPU" || die "haproxy does not start"
start rouse "$PROXY_CPU" env RUST_LOG=warn "$ROUSE" run -c "$TMP/rouse.toml"
wait_listen nginx "$P_NGINX" || die "nginx proxy does not listen"
wait_listen haproxy "$P_HAPROXY" || die "haproxy does not listen"
wait_listen rouse "$P_ROUSE" || die "rouse does not listen"

declare -A PORT=([direct]=$P_BACKEND [nginx]=$P_NGINX [haproxy]=$P_HAPROXY [rouse]=$P_ROUSE)
declare -A PROC=([direct]=backend [nginx]=nginx [haproxy]=haproxy [rouse]=rouse)
H1_TARGETS=(direct nginx haproxy rouse)
for t in "${H1_TARGETS[@]}"; do
    check_http1 "$t" "${PORT[$t]}" || die "$t answers wrongly before the load"
done

# ---------------------------------------------------------------------------------------------
# 5. HTTP/1.1 load (wrk)
# ---------------------------------------------------------------------------------------------
RESULTS="$TMP/results.tsv"   # load target round rps p50_ms p99_ms requests errors(text)
: >"$RESULTS"
ISSUES="$TMP/issues.txt"
: >"$ISSUES"
issue() { log "ISSUE: $*"; printf -- '- %s\n' "$*" >>"$ISSUES"; }

# wrk latency string (e.g. 727.00us, 1.08ms, 1.20s, 2.00m) -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) { print "NaN"; exit } printf "%.3f", n * f }'
}

WRK_CMD=(wrk -t1 "-c$CONNECTIONS" "-d${DURATION}s" --latency)
H2_CMD=(h2load -n "$H2_REQUESTS" -c "$H2_CLIENTS" -m "$H2_STREAMS" -t 1)

run_wrk() {  # TARGET ROUND [LOAD: h1 | tls]
    local t=$1 round=$2 load=${3:-h1} port=${PORT[$1]} out f rps p50 p99 reqs errs="" scheme=http
    [[ $load == tls ]] && scheme=https
    f="$TMP/wrk-$load-$t-$round.txt"
    taskset -c "$BACKEND_CPU" "${WRK_CMD[@]}" "$scheme://127.0.0.1:$port/" >"$f" 2>&1 || {
        issue "$load $t round $round: wrk failed: $(tr '\n' ' ' <"$f")"; return 0; }
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p50=$(awk '$1 == "50%" {print $2}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f")
    reqs=$(awk '/requests in/ {print $1}' "$f")
    if [[ -z $rps || -z $p50 || -z $p99 ]]; then
        issue "$load $t round $round: cannot parse wrk output: $(tr '\n' ' ' <"$f")"; return 0
    fi
    if grep -q 'Socket errors' "$f"; then errs+="$(grep 'Socket errors' "$f" | sed 's/^ *//'); "; fi
    if grep -q 'Non-2xx' "$f"; then errs+="$(grep 'Non-2xx' "$f" | sed 's/^ *//'); "; fi
    if [[ -n $errs ]]; then
        issue "$load $t round $round: wrk reported errors: $errs"
    fi
    if ! kill -0 "${PIDS[${PROC[$t]}]}" 2>/dev/null; then
        issue "$load $t round $round: the ${PROC[$t]} process died under load; log: $(tail -20 "$TMP/${PROC[$t]}.log" | tr '\n' ' ')"
    elif [[ $load == h1 ]] && ! check_http1 "$t" "$port"; then
        issue "h1 $t round $round: wrong answer right after the load"
    elif [[ $load == tls ]] && ! check_https "$t" "$port"; then
        issue "tls $t round $round: wrong answer right after the load"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$t" "$round" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" \
        "$reqs" "${errs:-}" >>"$RESULTS"
    log "$load $t round $round: $rps req/s, p50 $p50, p99 $p99${errs:+, ERRORS: $errs}"
}

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "HTTP/1.1: ${WRK_CMD[*]} (pinned to CPU $BACKEND_CPU), $ROUNDS round(s) of ${H1_TARGETS[*]}"
for round in $(seq "$ROUNDS"); do
    for t in "${H1_TARGETS[@]}"; do
        if ! kill -0 "${PIDS[${PROC[$t]}]:-0}" 2>/dev/null; then
            issue "h1 $t round $round: skipped, ${PROC[$t]} is not running"; continue
        fi
        run_wrk "$t" "$round"
    done
done

# ---------------------------------------------------------------------------------------------
# 6. h2c load (h2load, prior knowledge)
# ---------------------------------------------------------------------------------------------
H2_TARGETS=()
if [[ $SKIP_H2 != 1 ]]; then
    # the nginx/haproxy h1 proxies are not needed any more: keep CPU 1 for one proxy at a time
    stop_one nginx
    stop_one haproxy
    PORT[nginx]=$P_NGINX_H2; PROC[nginx]=nginx-h2
    PORT[haproxy]=$P_HAPROXY_H2; PROC[haproxy]=haproxy-h2
    if start_nginx nginx-h2 "$PROXY_CPU" && wait_listen nginx-h2 "$P_NGINX_H2" \
        && check_h2c nginx "$P_NGINX_H2"; then
        H2_TARGETS+=(nginx)
    else
        issue "h2c nginx: skipped, its h2c config ($NGINX_H2_LISTEN) did not start or answer (nginx $NGINX_VERSION)"
        stop_one nginx-h2
    fi
    if start_haproxy haproxy-h2 "$PROXY_CPU" && wait_listen haproxy-h2 "$P_HAPROXY_H2" \
        && check_h2c haproxy "$P_HAPROXY_H2"; then
        H2_TARGETS+=(haproxy)
    else
        issue "h2c haproxy: skipped, 'bind ... proto h2' did not start or answer"
        stop_one haproxy-h2
    fi
    kill -0 "${PIDS[rouse]:-0}" 2>/dev/null || die "rouse is not running any more; log: $(tail -20 "$TMP/rouse.log")"
    check_h2c rouse "$P_ROUSE" || die "rouse does not answer h2c (prior knowledge) correctly"
    H2_TARGETS+=(rouse)

    run_h2load() {  # TARGET ROUND
        local t=$1 round=$2 port=${PORT[$1]} f rps mean succeeded failed errored timeout s2xx bad=""
        f="$TMP/h2load-$t-$round.txt"
        taskset -c "$BACKEND_CPU" "${H2_CMD[@]}" "http://127.0.0.1:$port/" >"$f" 2>&1 || {
            issue "h2c $t round $round: h2load failed: $(tail -5 "$f" | tr '\n' ' ')"; return 0; }
        rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$f")
        read -r succeeded failed errored timeout < <(sed -n \
            's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3 \4/p' "$f")
        s2xx=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$f")
        mean=$(awk '/^time for request:/ {print $6}' "$f")  # min max MEAN sd
        if [[ -z $rps || -z ${succeeded:-} ]]; then
            issue "h2c $t round $round: cannot parse h2load output: $(tr '\n' ' ' <"$f")"; return 0
        fi
        if [[ $succeeded != "$H2_REQUESTS" || $failed != 0 || $errored != 0 || $timeout != 0 \
            || ${s2xx:-0} != "$H2_REQUESTS" ]]; then
            bad="$(grep -E '^(requests|status codes):' "$f" | tr '\n' ';')"
            issue "h2c $t round $round: not all requests succeeded with 2xx: $bad"
        fi
        if ! kill -0 "${PIDS[${PROC[$t]}]}" 2>/dev/null; then
            issue "h2c $t round $round: the ${PROC[$t]} process died under load; log: $(tail -20 "$TMP/${PROC[$t]}.log" | tr '\n' ' ')"
        fi
        printf 'h2c\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$round" "$rps" "$(to_ms "${mean:-NaN}")" "NaN" \
            "$succeeded" "$bad" >>"$RESULTS"
        log "h2c $t round $round: $rps req/s, mean $mean, $succeeded/$H2_REQUESTS succeeded"
    }

    log "h2c: ${H2_CMD[*]} (prior knowledge, pinned to CPU $BACKEND_CPU), $ROUNDS round(s) of ${H2_TARGETS[*]}"
    for round in $(seq "$ROUNDS"); do
        for t in "${H2_TARGETS[@]}"; do
            if ! kill -0 "${PIDS[${PROC[$t]}]:-0}" 2>/dev/null; then
                issue "h2c $t round $round: skipped, ${PROC[$t]} is not running"; continue
            fi
            run_h2load "$t" "$round"
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# 6b. HTTPS load (wrk over TLS 1.3, keep-alive)
# ---------------------------------------------------------------------------------------------
TLS_TARGETS=()
if [[ $SKIP_TLS != 1 ]]; then
    # One proxy process at a time besides rouse on CPU 1, as for h2c.
    for p in nginx haproxy nginx-h2 haproxy-h2; do stop_one "$p"; done
    PORT[nginx]=$P_NGINX_TLS; PROC[nginx]=nginx-tls
    PORT[haproxy]=$P_HAPROXY_TLS; PROC[haproxy]=haproxy-tls
    PORT[rouse]=$P_ROUSE_TLS
    if start_nginx nginx-tls "$PROXY_CPU" && wait_listen nginx-tls "$P_NGINX_TLS" \
        && check_https nginx "$P_NGINX_TLS"; then
        TLS_TARGETS+=(nginx)
    else
        issue "tls nginx: skipped, it did not start or answer over TLS 1.3"
        stop_one nginx-tls
    fi
    if start_haproxy haproxy-tls "$PROXY_CPU" && wait_listen haproxy-tls "$P_HAPROXY_TLS" \
        && check_https haproxy "$P_HAPROXY_TLS"; then
        TLS_TARGETS+=(haproxy)
    else
        issue "tls haproxy: skipped, 'bind ... ssl crt' did not start or answer over TLS 1.3"
        stop_one haproxy-tls
    fi
    kill -0 "${PIDS[rouse]:-0}" 2>/dev/null || die "rouse is not running any more; log: $(tail -20 "$TMP/rouse.log")"
    check_https rouse "$P_ROUSE_TLS" || die "rouse does not answer HTTPS (TLS 1.3) correctly"
    TLS_TARGETS+=(rouse)
    log "HTTPS: ${WRK_CMD[*]} https://... (pinned to CPU $BACKEND_CPU), $ROUNDS round(s) of ${TLS_TARGETS[*]}"
    for round in $(seq "$ROUNDS"); do
        for t in "${TLS_TARGETS[@]}"; do
            if ! kill -0 "${PIDS[${PROC[$t]}]:-0}" 2>/dev/null; then
                issue "tls $t round $round: skipped, ${PROC[$t]} is not running"; continue
            fi
            run_wrk "$t" "$round" tls
        done
    done
fi

# rouse's own warnings/errors during the run, if any
if [[ -s $TMP/rouse.log ]]; then
    issue "rouse wrote to stderr during the run (RUST_LOG=warn); last lines: $(tail -5 "$TMP/rouse.log" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------------------------------------
# 7. Report
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
first_line() { "$@" 2>&1 | head -1 || true; }
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[[ -n $CPU_MODEL ]] || CPU_MODEL=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ {print $2; exit}')

{
    echo "# rouse proxy benchmark, $STAMP"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    echo "- machine: $ncpu CPU(s), ${CPU_MODEL:-unknown CPU}, $(uname -sr); load average before the load: $LOADAVG_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    if awk -v l="${LOADAVG_START%% *}" -v n="$ncpu" 'BEGIN { exit !(l > n / 2) }'; then
        echo "- **WARNING: the machine was busy** (1-min load average ${LOADAVG_START%% *} on $ncpu CPUs before the load): other processes competed for the pinned CPUs; treat these numbers as noisy lower bounds"
    fi
    echo "- versions: $(first_line "$NGINX" -v); $(first_line "$HAPROXY" -v); $(first_line wrk -v); $(first_line h2load --version); $(first_line "$ROUSE" --version); $(first_line rustc --version)"
    echo "- backend: nginx, 1 worker, \`return 200 \"hello world\\n\"\` (12 bytes), CPU $BACKEND_CPU"
    echo "- proxies: 1 worker/thread each, CPU $PROXY_CPU; load generator on CPU $BACKEND_CPU"
    echo "- h1 load: \`taskset -c $BACKEND_CPU ${WRK_CMD[*]} http://127.0.0.1:PORT/\`, $ROUNDS round(s), targets interleaved"
    if [[ $SKIP_H2 != 1 ]]; then
        echo "- h2c load: \`taskset -c $BACKEND_CPU ${H2_CMD[*]} http://127.0.0.1:PORT/\` (prior knowledge), $ROUNDS round(s); nginx h2c: \`$NGINX_H2_LISTEN\`"
    fi
    if [[ $SKIP_TLS != 1 ]]; then
        echo "- https load: \`taskset -c $BACKEND_CPU ${WRK_CMD[*]} https://127.0.0.1:PORT/\`, $ROUNDS round(s); one self-signed EC P-256 certificate (openssl) for all; TLS 1.3 (nginx \`ssl_protocols TLSv1.3\`, HAProxy \`ssl-min-ver TLSv1.3\`, rouse: rustls/ring, which negotiates 1.3 with wrk's OpenSSL); $(first_line openssl version)"
    fi
    echo
    python3 - "$RESULTS" "$SKIP_H2" "$SKIP_TLS" <<'EOF'
import math, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def f(x):
    try:
        v = float(x)
        return None if math.isnan(v) else v
    except ValueError:
        return None
def k(v):  # req/s
    return f"{v/1000:.1f}k"
def ms(v):
    return f"{v:.2f}"
def cell(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(vals))}–{fmt(max(vals))})"
loads = [("h1", "HTTP/1.1 keep-alive (wrk)")]
if sys.argv[2] != "1":
    loads.append(("h2c", "h2c prior knowledge (h2load)"))
if sys.argv[3] != "1":
    loads.append(("tls", "HTTPS, TLS 1.3 keep-alive (wrk)"))
names = {"direct": "backend direct (nginx)", "nginx": "nginx proxy", "haproxy": "HAProxy", "rouse": "rouse"}
for load, title in loads:
    sel = [r for r in rows if r[0] == load]
    print(f"## {title}: median (min–max) over rounds")
    print()
    if load != "h2c":
        print("| target | rounds | req/s | p50 ms | p99 ms | errors |")
        print("|---|---|---|---|---|---|")
    else:
        print("| target | rounds | req/s | mean ms/request | errors |")
        print("|---|---|---|---|---|")
    order = [t for t in ["direct", "nginx", "haproxy", "rouse"] if any(r[1] == t for r in sel)]
    for t in order:
        rs = [r for r in sel if r[1] == t]
        err = sum(1 for r in rs if len(r) > 7 and r[7].strip())
        errs = f"{err} round(s)" if err else "none"
        rps = cell([f(r[3]) for r in rs], k)
        if load != "h2c":
            print(f"| {names[t]} | {len(rs)} | {rps} | {cell([f(r[4]) for r in rs], ms)} | {cell([f(r[5]) for r in rs], ms)} | {errs} |")
        else:
            print(f"| {names[t]} | {len(rs)} | {rps} | {cell([f(r[4]) for r in rs], ms)} | {errs} |")
    if not order:
        print("| (no results) | | | | | |")
    print()
EOF
    echo "## Issues"
    echo
    if [[ -s $ISSUES ]]; then cat "$ISSUES"; else echo "none"; fi
    echo
    echo "<details><summary>raw results (load, target, round, req/s, p50 ms or mean ms, p99 ms, requests, errors)</summary>"
    echo
    echo '```'
    cat "$RESULTS"
    echo '```'
    echo
    echo "</details>"
} >"$OUT_FILE"

cat "$OUT_FILE"
log "report written to $OUT_FILE"
if [[ -s $ISSUES ]]; then
    log "finished with $(wc -l <"$ISSUES") issue(s), listed in the report; exit 3"
    exit 3
fi
