# Shared by bench/proxy.sh, bench/memory.sh, bench/throughput.sh, bench/instructions.sh and
# bench/apachebench.sh:
# source it, do not run it.
#
# Before sourcing, set SCRIPT_NAME (the log prefix). Sourcing defines BENCH_DIR, ROOT, OUT_DIR,
# STAMP and the functions below; nothing is started until the script calls them. The order a
# script follows: require_root, install_tools, build_rouse, init_tmp (the temporary directory
# and the trap that stops everything started with `start`), then configs and processes.
# shellcheck shell=bash
# shellcheck disable=SC2034  # BENCH_DIR, OUT_DIR, STAMP, CLK_TCK, NGINX... are for the sourcing script

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"
STAMP=$(date +%Y%m%d-%H%M%S)
KEEP_TMP=${KEEP_TMP:-0}
CLK_TCK=$(getconf CLK_TCK)
# shellcheck source=bench/lib-rouse.sh
source "$BENCH_DIR/lib-rouse.sh"

log() { printf '[%s %s] %s\n' "$SCRIPT_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# ISSUES is set by init_tmp; before it, an issue is fatal.
issue() {
    [[ -n ${ISSUES:-} ]] || die "$*"
    log "ISSUE: $*"
    printf -- '- %s\n' "$*" >>"$ISSUES"
}

# rouse's own warnings and errors during the run (its stderr, RUST_LOG=warn) are an issue.
rouse_log_issue() {
    if [[ -s $TMP/rouse.log ]]; then
        issue "rouse wrote to stderr during the run (RUST_LOG=warn); last lines: $(tail -5 "$TMP/rouse.log" | tr '\n' ' ')"
    fi
}

# The report's raw results ($RESULTS), folded: raw_results "COLUMNS".
raw_results() {
    echo
    echo "<details><summary>raw results ($1)</summary>"
    echo
    echo '```'
    cat "$RESULTS"
    echo '```'
    echo
    echo "</details>"
}

# Prints the report written to $OUT_FILE; exits 3 when the run found issues.
end_report() {
    cat "$OUT_FILE"
    log "report written to $OUT_FILE"
    if [[ -s $ISSUES ]]; then
        log "finished with $(wc -l <"$ISSUES") issue(s), listed in the report; exit 3"
        exit 3
    fi
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "run as root (installs packages, runs nginx/haproxy with its own configs)"
}

# require_positive VAR... : each must hold a positive integer
require_positive() {
    local v
    for v in "$@"; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
    done
}

# install_tools CMD... : apt-get installs the package of each command that is missing
install_tools() {
    local missing=() cmd pkg
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] && continue
        case $cmd in
            h2load) pkg=nghttp2-client ;;
            ab) pkg=apache2-utils ;;
            taskset) pkg=util-linux ;;
            ss) pkg=iproute2 ;;
            objdump | addr2line) pkg=binutils ;;
            *) pkg=$cmd ;;
        esac
        missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # The packages may start their system services on the default ports: we run our own.
    service nginx stop >/dev/null 2>&1 || true
    service haproxy stop >/dev/null 2>&1 || true
    export PATH="$PATH:/usr/sbin:/sbin"
    NGINX=$(command -v nginx || true)
    HAPROXY=$(command -v haproxy || true)
}

# build_rouse : sets ROUSE. build_rouse_and_backend : also BACKEND (rouse-test-backend). Both
# build with cargo unless ROUSE_BIN (and BACKEND_BIN) are set; PGO=1 builds rouse as the
# Debian package's is built (scripts/pgo-build.sh: profile-guided, the `dist` profile).
build_rouse() { build_release ""; }
build_rouse_and_backend() { build_release backend; }
build_release() {
    local want_backend=$1 target=${CARGO_TARGET_DIR:-$ROOT/target} pkgs=(-p rouse)
    if [[ ${PGO:-0} == 1 && -z ${ROUSE_BIN:-} ]]; then
        log "building rouse with profile-guided optimisation (scripts/pgo-build.sh, target dir $target)"
        ROUSE_BIN=$(cd "$ROOT" && CARGO_TARGET_DIR="$target" scripts/pgo-build.sh | tail -n1) \
            || die "scripts/pgo-build.sh failed"
    fi
    [[ -n $want_backend ]] && pkgs+=(-p rouse-e2e --bins)
    if [[ -n ${ROUSE_BIN:-} && ( -z $want_backend || -n ${BACKEND_BIN:-} ) ]]; then
        log "using ROUSE_BIN=$ROUSE_BIN${want_backend:+ BACKEND_BIN=${BACKEND_BIN:-}} (not building)"
    else
        log "building (cargo build --release ${pkgs[*]}, target dir $target)"
        (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build --release "${pkgs[@]}") \
            || die "cargo build --release ${pkgs[*]} failed"
    fi
    ROUSE=${ROUSE_BIN:-$target/release/rouse}
    [[ -x $ROUSE ]] || die "no rouse binary at $ROUSE"
    if [[ -n $want_backend ]]; then
        BACKEND=${BACKEND_BIN:-$target/release/rouse-test-backend}
        [[ -x $BACKEND ]] || die "no rouse-test-backend binary at $BACKEND"
    fi
}

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started with `start` is stopped on exit, even on failure.
# ---------------------------------------------------------------------------------------------
declare -A PIDS=()   # name -> pid

# init_tmp : the temporary directory (TMP), the issues file (ISSUES), the exit trap, and as
# many file descriptors as the hard limit allows (root may raise it).
init_tmp() {
    TMP=$(mktemp -d "/tmp/rouse-$SCRIPT_NAME.XXXXXX")
    ISSUES="$TMP/issues.txt"
    : >"$ISSUES"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
}

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
    local rc=$? name pidfile p
    trap - EXIT INT TERM
    for name in "${!PIDS[@]}"; do stop_one "$name"; done
    # nginx workers are children of their master; make sure none is left behind.
    for pidfile in "$TMP"/*.pid; do
        [[ -f $pidfile ]] || continue
        p=$(cat "$pidfile" 2>/dev/null || true)
        if [[ -n $p ]]; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then
        log "configs and logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}

# start NAME CPUS CMD... : start CMD in the background pinned to CPUS (a taskset list), logs in
# $TMP/NAME.log
start() {
    local name=$1 cpu=$2; shift 2
    taskset -c "$cpu" "$@" >"$TMP/$name.log" 2>&1 &
    PIDS[$name]=$!
}

alive() { kill -0 "${PIDS[$1]:-0}" 2>/dev/null; }

# wait_listen NAME PORT : bounded wait (50 x 0.1 s) until 127.0.0.1:PORT accepts
wait_listen() {
    local name=$1 port=$2
    for _ in $(seq 50); do
        if ! alive "$name"; then
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

# free_ports N : N free 127.0.0.1 ports on one line, picked by binding port 0
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# check_http1 LABEL PORT : one GET must answer 200 with $EXPECTED_BODY
check_http1() {
    local label=$1 port=$2 out code body
    out=$(curl -sS --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$port/" 2>&1) || {
        log "$label: request failed: $out"; return 1; }
    code=${out##*$'\n'}
    body=${out%$'\n'*}
    if [[ $code != 200 || $body != "$EXPECTED_BODY" ]]; then
        log "$label: expected 200 $(printf %q "$EXPECTED_BODY"), got $code: $(printf %q "$body")"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# nginx and HAProxy
# ---------------------------------------------------------------------------------------------
# nginx_conf NAME SERVER_BLOCK [HTTP_EXTRA] : $TMP/NAME.conf with NGINX_WORKERS worker
# processes (1), NGINX_WORKER_CONNECTIONS (8192) and NGINX_MAIN_EXTRA (main-context lines)
nginx_conf() {
    local name=$1 server=$2 extra=${3:-}
    mkdir -p "$TMP/$name"
    cat >"$TMP/$name.conf" <<EOF
worker_processes ${NGINX_WORKERS:-1};
user root root;
pid $TMP/$name.pid;
error_log $TMP/$name.error.log warn;
${NGINX_MAIN_EXTRA:-}
events { worker_connections ${NGINX_WORKER_CONNECTIONS:-8192}; }
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout ${NGINX_KEEPALIVE_TIMEOUT:-65s};
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

# nginx_proxy_server PORT : a server block on 127.0.0.1:PORT passing everything to `backend`
nginx_proxy_server() {
    printf '%s\n' "    server {
        listen 127.0.0.1:$1 backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
}

# nginx_upstream PORT : the upstream block every nginx proxy uses (keep-alive to the backend)
nginx_upstream() {
    printf '%s\n' "    upstream backend {
        server 127.0.0.1:$1;
        keepalive $BENCH_KEEPALIVE;
        keepalive_requests 100000;
    }"
}

# haproxy_conf NAME BIND BACKEND_PORT [GLOBAL_EXTRA] [DEFAULTS_EXTRA] [FRONTEND_EXTRA] :
# $TMP/NAME.cfg with HAPROXY_THREADS threads (1) and HAPROXY_MAXCONN (4096)
haproxy_conf() {
    local name=$1 bind=$2 backend_port=$3 global_extra=${4:-} defaults_extra=${5:-} frontend_extra=${6:-}
    cat >"$TMP/$name.cfg" <<EOF
global
    nbthread ${HAPROXY_THREADS:-1}
    maxconn ${HAPROXY_MAXCONN:-4096}
$global_extra
defaults
    mode http
    timeout connect 5s
    timeout client ${HAPROXY_TIMEOUT:-30s}
    timeout server ${HAPROXY_TIMEOUT:-30s}
    option http-keep-alive
    http-reuse always
$defaults_extra
frontend fe
    bind $bind
$frontend_extra
    default_backend be
backend be
    server s1 127.0.0.1:$backend_port
EOF
}

start_nginx() {  # NAME CPUS
    "$NGINX" -t -q -e "$TMP/$1.error.log" -c "$TMP/$1.conf" >"$TMP/$1.test.log" 2>&1 || {
        log "nginx -t failed for $1:"; sed 's/^/    /' "$TMP/$1.test.log" >&2; return 1; }
    start "$1" "$2" "$NGINX" -e "$TMP/$1.error.log" -c "$TMP/$1.conf" -g 'daemon off;'
}
start_haproxy() {  # NAME CPUS
    "$HAPROXY" -c -q -f "$TMP/$1.cfg" >"$TMP/$1.test.log" 2>&1 || {
        log "haproxy -c failed for $1:"; sed 's/^/    /' "$TMP/$1.test.log" >&2; return 1; }
    start "$1" "$2" "$HAPROXY" -db -f "$TMP/$1.cfg"
}

# ---------------------------------------------------------------------------------------------
# What a proxy costs, from /proc
# ---------------------------------------------------------------------------------------------
# proc_tree NAME : the pid started as NAME and its children (nginx's master and workers;
# HAProxy with -db and rouse are one process)
proc_tree() {
    local pid=${PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    echo "$pid"
    pgrep -P "$pid" 2>/dev/null || true
}

# worker_pids NAME : the processes that do the work: nginx's workers, else the process itself
worker_pids() {
    local pid=${PIDS[$1]:-} kids
    [[ -n $pid ]] || return 0
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    if [[ -n $kids ]]; then echo "$kids"; else echo "$pid"; fi
}

# cpu_ticks PID... : "USER SYSTEM" clock ticks (utime, stime of /proc/PID/stat; all threads)
# summed over the pids
cpu_ticks() {
    local pid stat u=0 s=0 fields
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        # The command name is in parentheses and may hold spaces: count fields after it.
        read -r -a fields <<<"${stat##*) }"
        u=$((u + fields[11])); s=$((s + fields[12]))
    done
    echo "$u $s"
}

# status_kb FIELD PID... : a /proc/PID/status field (VmRSS, VmHWM) in KiB, summed over the pids
status_kb() {
    local field=$1 pid total=0 v; shift
    for pid in "$@"; do
        v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# reset_hwm PID... : start VmHWM again from the current RSS (clear_refs 5; root)
reset_hwm() {
    local pid ok=0
    for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || ok=1; done
    return "$ok"
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
first_line() { "$@" 2>&1 | head -1 || true; }

# machine_lines LOADAVG_BEFORE : the report's machine and busy-warning lines
machine_lines() {
    local before=$1 ncpu cpu_model
    ncpu=$(nproc)
    cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    [[ -n $cpu_model ]] || cpu_model=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ {print $2; exit}')
    echo "- machine: $ncpu CPU(s), ${cpu_model:-unknown CPU}, $(uname -sr); load average before the load: $before, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    if awk -v l="${before%% *}" -v n="$ncpu" 'BEGIN { exit !(l > n / 2) }'; then
        echo "- **WARNING: the machine was busy** (1-min load average ${before%% *} on $ncpu CPUs before the load): other processes competed for the pinned CPUs; treat these numbers as noisy lower bounds"
    fi
}

# command_line SCRIPT VAR... : how the script was run, with the knobs that were set
command_line() {
    local script=$1 v; shift
    for v in "$@"; do
        if [[ -n ${!v:-} ]]; then printf '%s=%q ' "$v" "${!v}"; fi
    done
    printf '%s' "$script"
}
