#!/usr/bin/env bash
# Proxy benchmark: rouse vs nginx vs HAProxy (and the backend direct) on loopback.
#
# Model: shared/reference/rust-stack.md section 5 ("Performance anchors").
#   - backend: one nginx worker answering `return 200 "hello world\n"`, pinned to CPU 0
#   - each proxy: one worker/thread, pinned to CPU 1, in front of that backend
#   - load: wrk -t1 (HTTP/1.1 keep-alive) and h2load -t1 (h2c), pinned to CPU 0
#   - HTTPS: wrk -t1 over TLS 1.3 (keep-alive) against the same three proxies, each serving one
#     self-signed certificate made here by openssl (EC P-256); then h2load over TLS (ALPN h2)
#     on the same listeners, unless SKIP_H2=1
#   - WORKERS=2: two workers/threads for every proxy, the backend and the load generators, all
#     on every CPU (on a 2-core machine everything shares both cores)
#   - FLOOR=1: two more h1 targets, the floors of bench/floor/ (a proxy that only moves bytes:
#     epoll, and io_uring), WORKERS processes each: what the kernel alone costs a proxy here
#   - BACKEND=floor: the backend is bench/floor's floor-backend (mio, one read and one write
#     a request, nginx's answer byte for byte) instead of nginx, WORKERS processes: on two
#     cores, nginx as the backend leaves CPU 0 (backend and load) the limit of every proxy's
#     rate; this one leaves the proxy on CPU 1 to be the limit, which is what a comparison of
#     proxies per core needs. The "backend direct" row shows how much room it leaves.
#   - SAME_JOB=1: nginx and HAProxy configured to do what rouse does by default: the client's
#     Host passed on, X-Forwarded-For/-Host/-Proto and an X-Request-Id added (checked at the
#     backend before the load). Without it each proxy runs its own defaults (nginx and HAProxy
#     add none of these).
# Targets are interleaved within each round so drift hits them all equally. Each wrk/h2load run
# also records the proxy's own CPU time (user and system, from /proc/PID/stat) per request.
#
# Knobs (environment): DURATION (s, default 8), ROUNDS (3), CONNECTIONS (64), WORKERS (1),
#   SKIP_H2=1, SKIP_TLS=1, FLOOR=1, BACKEND (nginx; floor), SAME_JOB=1, H2_REQUESTS (200000),
#   H2_CLIENTS (16), H2_STREAMS (10), CARGO_TARGET_DIR, ROUSE_BIN (use this binary instead of
#   building), KEEP_TMP=1 (keep configs and logs). See bench/README.md.
set -euo pipefail

SCRIPT_NAME=proxy.sh
# shellcheck source=bench/lib-proxy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-proxy.sh"

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-1}
SKIP_H2=${SKIP_H2:-0}
SKIP_TLS=${SKIP_TLS:-0}
FLOOR=${FLOOR:-0}
SAME_JOB=${SAME_JOB:-0}
BACKEND=${BACKEND:-nginx}
H2_REQUESTS=${H2_REQUESTS:-200000}
H2_CLIENTS=${H2_CLIENTS:-16}
H2_STREAMS=${H2_STREAMS:-10}

EXPECTED_BODY=$'hello world\n'
OUT_FILE="$OUT_DIR/proxy-$STAMP.md"
COMMAND_LINE=$(command_line bench/proxy.sh DURATION ROUNDS CONNECTIONS WORKERS SKIP_H2 SKIP_TLS FLOOR \
    BACKEND SAME_JOB H2_REQUESTS H2_CLIENTS H2_STREAMS CARGO_TARGET_DIR ROUSE_BIN)

require_positive DURATION ROUNDS CONNECTIONS WORKERS H2_REQUESTS H2_CLIENTS H2_STREAMS
require_root
[[ $BACKEND == nginx || $BACKEND == floor ]] || die "BACKEND must be nginx or floor, not '$BACKEND'"

ncpu=$(nproc)
if ((WORKERS == 1)); then
    BACKEND_CPU=0   # backend nginx and the load generators
    PROXY_CPU=1     # the proxy under test
    ((ncpu >= 2)) || log "WARNING: only $ncpu CPU(s); pinning to CPU 1 will fail"
else
    # Several workers each: nobody is pinned apart, everything shares every CPU.
    BACKEND_CPU="0-$((ncpu - 1))"
    PROXY_CPU=$BACKEND_CPU
fi
# Same count for the backend and the load generators, so neither caps a proxy's second worker.
NGINX_WORKERS=$WORKERS
HAPROXY_THREADS=$WORKERS

# ---------------------------------------------------------------------------------------------
# 1/2. Tools and rouse
# ---------------------------------------------------------------------------------------------
install_tools nginx haproxy wrk h2load curl openssl taskset python3
build_rouse
if [[ $FLOOR == 1 || $BACKEND == floor ]]; then
    FLOOR_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/floor
    log "building the floors (cargo build --release --manifest-path bench/floor/Cargo.toml)"
    cargo build --release --quiet --manifest-path "$BENCH_DIR/floor/Cargo.toml" \
        --target-dir "$FLOOR_TARGET" || die "the floors do not build"
fi
init_tmp

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
read -r P_BACKEND P_NGINX P_HAPROXY P_ROUSE P_NGINX_H2 P_HAPROXY_H2 P_NGINX_TLS P_HAPROXY_TLS P_ROUSE_TLS \
    < <(free_ports 9)
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
    NGINX_TLS_LISTEN="listen 127.0.0.1:$P_NGINX_TLS ssl backlog=4096; http2 on;"
else
    NGINX_H2_LISTEN="listen 127.0.0.1:$P_NGINX_H2 http2;"
    NGINX_TLS_LISTEN="listen 127.0.0.1:$P_NGINX_TLS ssl http2 backlog=4096;"
fi

NGINX_UPSTREAM=$(nginx_upstream "$P_BACKEND")
NGINX_SAME_JOB=
HAPROXY_SAME_JOB=
if [[ $SAME_JOB == 1 ]]; then
    # rouse's defaults, said in each one's terms: the client's Host to the server, the three
    # forwarding fields, and a request id made per request (rouse keeps a client's sane one,
    # nginx's $request_id and HAProxy's unique-id are always new: they do no less work).
    # shellcheck disable=SC2016 # nginx's variables, for nginx to expand
    NGINX_SAME_JOB='proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;'
    HAPROXY_SAME_JOB='    option forwardfor
    unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]
    http-request set-header X-Request-Id %[unique-id]'
fi
NGINX_PROXY_LOCATION="location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            $NGINX_SAME_JOB
        }"

# /forwarded says what the server was told: SAME_JOB's check.
nginx_conf backend "    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        location / { return 200 \"hello world\\n\"; }
        location = /forwarded {
            return 200 \"host=\$http_host for=\$http_x_forwarded_for fhost=\$http_x_forwarded_host proto=\$http_x_forwarded_proto id=\$http_x_request_id\\n\";
        }
    }"
nginx_conf nginx "    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        $NGINX_PROXY_LOCATION
    }" "$NGINX_UPSTREAM"
nginx_conf nginx-tls "    server {
        $NGINX_TLS_LISTEN
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.3;
        $NGINX_PROXY_LOCATION
    }" "$NGINX_UPSTREAM"
nginx_conf nginx-h2 "    server {
        $NGINX_H2_LISTEN
        $NGINX_PROXY_LOCATION
    }" "$NGINX_UPSTREAM"

haproxy_conf haproxy "127.0.0.1:$P_HAPROXY" "$P_BACKEND" "" "" "$HAPROXY_SAME_JOB"
haproxy_conf haproxy-h2 "127.0.0.1:$P_HAPROXY_H2 proto h2" "$P_BACKEND" "" "" "$HAPROXY_SAME_JOB"
haproxy_conf haproxy-tls "127.0.0.1:$P_HAPROXY_TLS ssl crt $TMP/bench.combined.pem ssl-min-ver TLSv1.3 alpn h2,http/1.1" "$P_BACKEND" "" "" "$HAPROXY_SAME_JOB"

rouse_conf "$TMP/rouse.toml" "$P_ROUSE" "$P_BACKEND" "listen_tls = [\"127.0.0.1:$P_ROUSE_TLS\"]
threads = $WORKERS

[[proxy.tls]]
cert = \"$CERT\"
key = \"$KEY\""

# start_copies NAME CPUS COMMAND ARG... : WORKERS copies of COMMAND on one SO_REUSEPORT
# address, children of one shell (as nginx's workers are of their master: worker_pids counts
# them), which stops them on TERM
start_copies() {
    local name=$1 cpus=$2
    shift 2
    # shellcheck disable=SC2016 # expanded by that shell
    start "$name" "$cpus" bash -c 'trap "kill \$(jobs -p) 2>/dev/null; exit 0" TERM
        n=$1; shift; for _ in $(seq "$n"); do "$@" & done; wait' _ "$WORKERS" "$@"
}

if [[ $BACKEND == floor ]]; then
    log "backend: floor-backend, $WORKERS process(es), on 127.0.0.1:$P_BACKEND (CPU $BACKEND_CPU)"
    start_copies backend "$BACKEND_CPU" "$FLOOR_TARGET/release/floor-backend" "127.0.0.1:$P_BACKEND"
else
    log "backend: nginx on 127.0.0.1:$P_BACKEND (CPU $BACKEND_CPU)"
    start_nginx backend "$BACKEND_CPU" || die "backend nginx does not start"
fi
wait_listen backend "$P_BACKEND" || die "the backend ($BACKEND) does not listen"
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
if [[ $FLOOR == 1 ]]; then
    read -r 'PORT[floor-epoll]' 'PORT[floor-uring]' < <(free_ports 2)
    for t in floor-epoll floor-uring; do
        start_copies "$t" "$PROXY_CPU" "$FLOOR_TARGET/release/$t" "127.0.0.1:${PORT[$t]}" "127.0.0.1:$P_BACKEND"
        PROC[$t]=$t
        wait_listen "$t" "${PORT[$t]}" || die "$t does not listen"
        H1_TARGETS+=("$t")
    done
fi
for t in "${H1_TARGETS[@]}"; do
    check_http1 "$t" "${PORT[$t]}" || die "$t answers wrongly before the load"
done
if [[ $SAME_JOB == 1 ]]; then
    # Each proxy must pass on every field rouse does, or the comparison is not of one job.
    for t in nginx haproxy rouse; do
        told=$(curl -sS --max-time 5 -H 'Host: bench.example' "http://127.0.0.1:${PORT[$t]}/forwarded") \
            || die "$t: GET /forwarded failed"
        log "SAME_JOB: $t told the server: $told"
        [[ $told =~ ^host=bench\.example\ for=127\.0\.0\.1\ fhost=bench\.example\ proto=http\ id=[^[:space:]]+$ ]] \
            || die "$t does not do rouse's job (SAME_JOB): $told"
    done
fi

# ---------------------------------------------------------------------------------------------
# 5. HTTP/1.1 load (wrk)
# ---------------------------------------------------------------------------------------------
# load target round rps p50_ms p99_ms requests errors(text) user_ticks sys_ticks
RESULTS="$TMP/results.tsv"
: >"$RESULTS"

# wrk latency string (e.g. 727.00us, 1.08ms, 1.20s, 2.00m) -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) { print "NaN"; exit } printf "%.3f", n * f }'
}

WRK_CMD=(wrk "-t$WORKERS" "-c$CONNECTIONS" "-d${DURATION}s" --latency)
H2_CMD=(h2load -n "$H2_REQUESTS" -c "$H2_CLIENTS" -m "$H2_STREAMS" -t "$WORKERS")

# The CPU time a target's worker processes spent during one load run: cpu_begin before it,
# cpu_end after it sets CPU_USER and CPU_SYS (clock ticks). nginx's master only reaps and
# signals, so only its workers are counted; HAProxy and rouse are one process each.
cpu_begin() {
    CPU_PIDS=$(worker_pids "$1" | tr '\n' ' ')
    # shellcheck disable=SC2086  # one pid per word
    read -r CPU_U0 CPU_S0 < <(cpu_ticks $CPU_PIDS)
}
cpu_end() {
    local u1 s1 now
    now=$(worker_pids "$1" | tr '\n' ' ')
    # shellcheck disable=SC2086
    read -r u1 s1 < <(cpu_ticks $CPU_PIDS)
    CPU_USER=$((u1 - CPU_U0)); CPU_SYS=$((s1 - CPU_S0))
    if [[ $now != "$CPU_PIDS" ]]; then
        issue "$1: its worker processes changed during the run ($CPU_PIDS -> $now): its CPU time is incomplete"
    fi
}

run_wrk() {  # TARGET ROUND [LOAD: h1 | tls]
    local t=$1 round=$2 load=${3:-h1} port=${PORT[$1]} out f rps p50 p99 reqs errs="" scheme=http
    [[ $load == tls ]] && scheme=https
    f="$TMP/wrk-$load-$t-$round.txt"
    cpu_begin "${PROC[$t]}"
    taskset -c "$BACKEND_CPU" "${WRK_CMD[@]}" "$scheme://127.0.0.1:$port/" >"$f" 2>&1 || {
        issue "$load $t round $round: wrk failed: $(tr '\n' ' ' <"$f")"; return 0; }
    cpu_end "${PROC[$t]}"
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
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$t" "$round" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" \
        "$reqs" "${errs:-}" "$CPU_USER" "$CPU_SYS" >>"$RESULTS"
    log "$load $t round $round: $rps req/s, p50 $p50, p99 $p99, ${PROC[$t]} CPU $CPU_USER user + $CPU_SYS sys ticks for $reqs requests${errs:+, ERRORS: $errs}"
}

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "HTTP/1.1: ${WRK_CMD[*]} (pinned to CPU $BACKEND_CPU), $ROUNDS round(s) of ${H1_TARGETS[*]}"
# run_rounds LOAD RUNNER TARGET... : ROUNDS rounds of `RUNNER TARGET ROUND LOAD`, the targets
# in turn within each round (a target whose process died is skipped, as an issue)
run_rounds() {
    local load=$1 runner=$2 round t
    shift 2
    for round in $(seq "$ROUNDS"); do
        for t in "$@"; do
            if ! kill -0 "${PIDS[${PROC[$t]}]:-0}" 2>/dev/null; then
                issue "$load $t round $round: skipped, ${PROC[$t]} is not running"; continue
            fi
            "$runner" "$t" "$round" "$load"
        done
    done
}
run_rounds h1 run_wrk "${H1_TARGETS[@]}"

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

    # run_h2load TARGET ROUND [LOAD: h2c | h2tls (HTTP/2 over TLS, by ALPN)]
    run_h2load() {
        local t=$1 round=$2 load=${3:-h2c} port=${PORT[$1]} f rps mean succeeded failed errored timeout s2xx bad="" scheme=http
        [[ $load == h2tls ]] && scheme=https
        f="$TMP/h2load-$load-$t-$round.txt"
        cpu_begin "${PROC[$t]}"
        taskset -c "$BACKEND_CPU" "${H2_CMD[@]}" "$scheme://127.0.0.1:$port/" >"$f" 2>&1 || {
            issue "$load $t round $round: h2load failed: $(tail -5 "$f" | tr '\n' ' ')"; return 0; }
        cpu_end "${PROC[$t]}"
        if [[ $load == h2tls ]] && ! grep -q '^Application protocol: h2$' "$f"; then
            issue "h2tls $t round $round: ALPN did not give h2: $(grep -i 'protocol' "$f" | tr '\n' ' ')"; return 0
        fi
        rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$f")
        read -r succeeded failed errored timeout < <(sed -n \
            's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3 \4/p' "$f")
        s2xx=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$f")
        mean=$(awk '/^time for request:/ {print $6}' "$f")  # min max MEAN sd
        if [[ -z $rps || -z ${succeeded:-} ]]; then
            issue "$load $t round $round: cannot parse h2load output: $(tr '\n' ' ' <"$f")"; return 0
        fi
        if [[ $succeeded != "$H2_REQUESTS" || $failed != 0 || $errored != 0 || $timeout != 0 \
            || ${s2xx:-0} != "$H2_REQUESTS" ]]; then
            bad="$(grep -E '^(requests|status codes):' "$f" | tr '\n' ';')"
            issue "$load $t round $round: not all requests succeeded with 2xx: $bad"
        fi
        if ! kill -0 "${PIDS[${PROC[$t]}]}" 2>/dev/null; then
            issue "$load $t round $round: the ${PROC[$t]} process died under load; log: $(tail -20 "$TMP/${PROC[$t]}.log" | tr '\n' ' ')"
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$t" "$round" "$rps" "$(to_ms "${mean:-NaN}")" "NaN" \
            "$succeeded" "$bad" "$CPU_USER" "$CPU_SYS" >>"$RESULTS"
        log "$load $t round $round: $rps req/s, mean $mean, $succeeded/$H2_REQUESTS succeeded, ${PROC[$t]} CPU $CPU_USER user + $CPU_SYS sys ticks"
    }

    log "h2c: ${H2_CMD[*]} (prior knowledge, pinned to CPU $BACKEND_CPU), $ROUNDS round(s) of ${H2_TARGETS[*]}"
    run_rounds h2c run_h2load "${H2_TARGETS[@]}"
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
    run_rounds tls run_wrk "${TLS_TARGETS[@]}"
    if [[ $SKIP_H2 != 1 ]]; then
        log "HTTP/2 over TLS: ${H2_CMD[*]} https://... (ALPN h2, pinned to CPU $BACKEND_CPU), $ROUNDS round(s) of ${TLS_TARGETS[*]}"
        run_rounds h2tls run_h2load "${TLS_TARGETS[@]}"
    fi
fi

# rouse's own warnings/errors during the run, if any
rouse_log_issue

# ---------------------------------------------------------------------------------------------
# 7. Report
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"

{
    echo "# rouse proxy benchmark, $STAMP"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    machine_lines "$LOADAVG_START"
    echo "- versions: $(first_line "$NGINX" -v); $(first_line "$HAPROXY" -v); $(first_line wrk -v); $(first_line h2load --version); $(first_line "$ROUSE" --version); $(first_line rustc --version)"
    if [[ $BACKEND == floor ]]; then
        echo "- **backend: floor-backend** (\`BACKEND=floor\`, bench/floor/src/bin/floor-backend.rs: mio, one read and one write a request, nginx's answer to \`return 200 \"hello world\\n\"\` byte for byte), $WORKERS process(es), CPUs $BACKEND_CPU: cheaper than nginx, so that the proxy, not CPU $BACKEND_CPU, limits the rate"
    fi
    if [[ $SAME_JOB == 1 ]]; then
        echo "- **one job** (\`SAME_JOB=1\`): nginx and HAProxy pass the client's Host on and add X-Forwarded-For, -Host, -Proto and X-Request-Id, as rouse does by default (checked at the backend before the load)"
    fi
    if ((WORKERS == 1)); then
        [[ $BACKEND == floor ]] || echo "- backend: nginx, 1 worker, \`return 200 \"hello world\\n\"\` (12 bytes), CPU $BACKEND_CPU"
        echo "- proxies: 1 worker/thread each, CPU $PROXY_CPU; load generator on CPU $BACKEND_CPU"
    else
        echo "- **$WORKERS workers each, nothing pinned apart**: the backend ($BACKEND, $WORKERS processes, \`return 200 \"hello world\\n\"\`), each proxy (nginx \`worker_processes $WORKERS\`, HAProxy \`nbthread $WORKERS\`, rouse \`threads = $WORKERS\`) and the load generators (\`-t $WORKERS\`) all run on CPUs $PROXY_CPU: on a $ncpu-core machine they share every core, so a proxy's req/s also depends on how much CPU the backend and the client leave it"
    fi
    echo "- CPU per request: the target's own user and system time (utime, stime of /proc/PID/stat, summed over nginx's workers; HAProxy's and rouse's one process) over each run, divided by the requests the run completed; for \"backend direct\" it is the backend's; clock tick $((1000000 / CLK_TCK)) µs"
    echo "- h1 load: \`taskset -c $BACKEND_CPU ${WRK_CMD[*]} http://127.0.0.1:PORT/\`, $ROUNDS round(s), targets interleaved"
    if [[ $FLOOR == 1 ]]; then
        echo "- floors (\`FLOOR=1\`, bench/floor/): $WORKERS process(es) each on CPUs $PROXY_CPU, one upstream connection per client connection, four system calls per request and no other work: not proxies (no parsing, rewriting, timers, balancing), the cost of the kernel's part alone, by epoll (mio) and by io_uring (single issuer, deferred task running)"
    fi
    if [[ $SKIP_H2 != 1 ]]; then
        echo "- h2c load: \`taskset -c $BACKEND_CPU ${H2_CMD[*]} http://127.0.0.1:PORT/\` (prior knowledge), $ROUNDS round(s); nginx h2c: \`$NGINX_H2_LISTEN\`"
    fi
    if [[ $SKIP_TLS != 1 ]]; then
        echo "- https load: \`taskset -c $BACKEND_CPU ${WRK_CMD[*]} https://127.0.0.1:PORT/\`, $ROUNDS round(s); one self-signed EC P-256 certificate (openssl) for all; TLS 1.3 (nginx \`ssl_protocols TLSv1.3\`, HAProxy \`ssl-min-ver TLSv1.3\`, rouse: rustls/ring, which negotiates 1.3 with wrk's OpenSSL); $(first_line openssl version)"
        if [[ $SKIP_H2 != 1 ]]; then
            echo "- HTTP/2 over TLS load: \`taskset -c $BACKEND_CPU ${H2_CMD[*]} https://127.0.0.1:PORT/\` on the same listeners, ALPN h2 (nginx \`$NGINX_TLS_LISTEN\`, HAProxy \`alpn h2,http/1.1\`, rouse's ALPN h2), checked on h2load's \`Application protocol\` line; $ROUNDS round(s)"
        fi
    fi
    echo
    python3 - "$RESULTS" "$SKIP_H2" "$SKIP_TLS" "$CLK_TCK" "$BACKEND" <<'EOF'
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
if sys.argv[2] != "1" and sys.argv[3] != "1":
    loads.append(("h2tls", "HTTP/2 over TLS 1.3, ALPN h2 (h2load)"))
names = {"direct": f"backend direct ({'floor-backend' if sys.argv[5] == 'floor' else 'nginx'})", "nginx": "nginx proxy", "haproxy": "HAProxy", "rouse": "rouse",
         "floor-epoll": "floor: epoll, no work", "floor-uring": "floor: io_uring, no work"}
tick_us = 1e6 / float(sys.argv[4])
def per_req(r, col):  # µs of CPU per request of one run, from clock ticks
    try:
        reqs = float(r[6])
        return float(r[col]) * tick_us / reqs if reqs > 0 else None
    except (IndexError, ValueError):
        return None
def us(v):
    return f"{v:.1f}"
def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
def ratio(v, ref):
    return f"{v / ref:.2f}x" if v is not None and ref else "n/a"
for load, title in loads:
    sel = [r for r in rows if r[0] == load]
    print(f"## {title}: median (min–max) over rounds")
    print()
    cpu_head = "user µs/req | sys µs/req | total µs/req | total vs nginx"
    if load not in ("h2c", "h2tls"):
        print(f"| target | rounds | req/s | req/s vs nginx | p50 ms | p99 ms | {cpu_head} | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        print(f"| target | rounds | req/s | req/s vs nginx | mean ms/request | {cpu_head} | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    order = [t for t in names if any(r[1] == t for r in sel)]
    ref_rps = median([f(r[3]) for r in sel if r[1] == "nginx"])
    ref_cpu = median([(per_req(r, 8) or 0) + (per_req(r, 9) or 0) if per_req(r, 8) is not None else None
                      for r in sel if r[1] == "nginx"])
    for t in order:
        rs = [r for r in sel if r[1] == t]
        err = sum(1 for r in rs if len(r) > 7 and r[7].strip())
        errs = f"{err} round(s)" if err else "none"
        rps = cell([f(r[3]) for r in rs], k)
        user = [per_req(r, 8) for r in rs]
        system = [per_req(r, 9) for r in rs]
        total = [u + s if u is not None and s is not None else None for u, s in zip(user, system)]
        cpu = f"{cell(user, us)} | {cell(system, us)} | {cell(total, us)} | {ratio(median(total), ref_cpu)}"
        vs = ratio(median([f(r[3]) for r in rs]), ref_rps)
        if load not in ("h2c", "h2tls"):
            print(f"| {names[t]} | {len(rs)} | {rps} | {vs} | {cell([f(r[4]) for r in rs], ms)} | {cell([f(r[5]) for r in rs], ms)} | {cpu} | {errs} |")
        else:
            print(f"| {names[t]} | {len(rs)} | {rps} | {vs} | {cell([f(r[4]) for r in rs], ms)} | {cpu} | {errs} |")
    if not order:
        print("| (no results) | | | | | |")
    print()
    # Targets run one after another within a round, so a round's ratios pair runs made under
    # nearly the same conditions: the median of the per-round ratios, and how many rounds
    # pass the issue's lines, say more on a noisy machine than a ratio of two medians.
    refs = [t for t in ("nginx", "haproxy") if t in order]
    if "rouse" in order and refs:
        def by_round(t):
            return {r[2]: r for r in sel if r[1] == t}
        mine = by_round("rouse")
        print("rouse against each, round by round (paired: ratio of the two runs in one round):")
        print()
        print("| against | rounds | req/s ratio: median (min–max) | rounds ≥ 1.10x | CPU/request ratio: median (min–max) | rounds ≤ 0.90x |")
        print("|---|---|---|---|---|---|")
        for ref in refs:
            theirs = by_round(ref)
            rps_r, cpu_r = [], []
            for rnd, r in mine.items():
                o = theirs.get(rnd)
                if o is None:
                    continue
                a, b = f(r[3]), f(o[3])
                if a is not None and b:
                    rps_r.append(a / b)
                mu, ms_ = per_req(r, 8), per_req(r, 9)
                ou, os_ = per_req(o, 8), per_req(o, 9)
                if None not in (mu, ms_, ou, os_) and ou + os_ > 0:
                    cpu_r.append((mu + ms_) / (ou + os_))
            x = lambda v: f"{v:.3f}x"
            print(f"| {names[ref]} | {len(rps_r)} | {cell(rps_r, x)} | {sum(v >= 1.10 for v in rps_r)} of {len(rps_r)} "
                  f"| {cell(cpu_r, x)} | {sum(v <= 0.90 for v in cpu_r)} of {len(cpu_r)} |")
        print()
EOF
    echo "## Issues"
    echo
    if [[ -s $ISSUES ]]; then cat "$ISSUES"; else echo "none"; fi
    raw_results "load, target, round, req/s, p50 ms or mean ms, p99 ms, requests, errors, user ticks, system ticks"
} >"$OUT_FILE"

end_report
