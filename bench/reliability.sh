#!/usr/bin/env bash
# The reliability benchmark of issue 9: rouse under hostile and broken conditions, side by side
# with nginx where nginx has an answer, every request counted.
#
#   bench/reliability.sh [--quick] [PART...]     PART: a b c d (default: all); --quick ~3 min
#
#   a. slowloris: SLOW_CONNS connections trickle a request head one byte every SLOW_INTERVAL s
#      (SILENT_CONNS of them, a quarter by default, send nothing at all),
#      against rouse and against nginx (client_header_timeout 5s in both), while normal clients
#      send GET / on fresh connections: how many slow connections are still open after the
#      timeout, and the normal requests' count and latency meanwhile.
#   b. BURST_CONNS connections opened at once (python asyncio), each sending one GET /: time
#      until all are connected and answered, connects that stalled over 1 s (a SYN
#      retransmitted: the listen queue overflowed), and the kernel's ListenOverflows,
#      ListenDrops and SyncookiesSent deltas (nstat), rouse vs nginx, BURST_ROUNDS rounds.
#   c. UPLOADS trickling uploads (each body over ~UPLOAD_CHUNKS x UPLOAD_INTERVAL s) to a
#      gunicorn app with 4 sync workers, behind rouse (request_buffering = true), behind nginx
#      (its default buffering), and straight to gunicorn: how many fast requests the app serves
#      meanwhile, and how fast.
#   d. chaos, CHAOS_SECONDS s each: a counting client (16 keep-alive connections) against rouse
#      with embedded backends, then with supervisord-managed ones, while a backend is SIGKILLed
#      every 2 s, `rouse reload` runs every 5 s (alternating two configs: a third server added
#      and removed), and (supervisord run) supervisord is restarted twice.
#
# Every request is counted: sent = answered (by status) + errors (by kind) + timeouts; a
# mismatch is an issue. Every client loop and wait is bounded in time. 127.0.0.1 only.
# Tools: nginx, gunicorn, supervisor via apt-get when missing (root, or sudo -n); rouse and
# rouse-test-backend built with cargo --release (ROUSE_BIN and BACKEND_BIN skip the build).
# Knobs (environment): see the defaults below and bench/README.md. Report: stdout and
# bench/out/reliability-YYYYmmdd-HHMMSS.md. Exit: 0 clean, 3 issues (listed), 1 setup failed.
set -euo pipefail

QUICK=0
PARTS=""
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        a | b | c | d) PARTS="$PARTS $arg" ;;
        -h | --help) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: bench/reliability.sh [--quick] [a] [b] [c] [d]" >&2; exit 1 ;;
    esac
done
PARTS=${PARTS:-" a b c d"}

if ((QUICK)); then
    : "${SLOW_CONNS:=300}" "${SLOW_SECONDS:=12}" "${BURST_CONNS:=1000}" "${BURST_ROUNDS:=1}"
    : "${UPLOADS:=50}" "${UPLOAD_CHUNKS:=5}" "${UPLOAD_INTERVAL:=1}" "${CHAOS_SECONDS:=20}"
else
    : "${SLOW_CONNS:=2000}" "${SLOW_SECONDS:=20}" "${BURST_CONNS:=5000}" "${BURST_ROUNDS:=2}"
    : "${UPLOADS:=200}" "${UPLOAD_CHUNKS:=10}" "${UPLOAD_INTERVAL:=1.5}" "${CHAOS_SECONDS:=60}"
fi
SLOW_INTERVAL=${SLOW_INTERVAL:-2}
SILENT_CONNS=${SILENT_CONNS:-$((SLOW_CONNS / 4))}   # of SLOW_CONNS: these send nothing at all
HEADER_TIMEOUT=${HEADER_TIMEOUT:-5}
CHAOS_WORKERS=${CHAOS_WORKERS:-16}
KILL_EVERY=${KILL_EVERY:-2}
RELOAD_EVERY=${RELOAD_EVERY:-5}
KEEP_TMP=${KEEP_TMP:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"
COMMAND_LINE="$(for v in SLOW_CONNS SILENT_CONNS SLOW_SECONDS SLOW_INTERVAL HEADER_TIMEOUT BURST_CONNS BURST_ROUNDS UPLOADS UPLOAD_CHUNKS UPLOAD_INTERVAL CHAOS_SECONDS CHAOS_WORKERS KILL_EVERY RELOAD_EVERY ROUSE_BIN BACKEND_BIN; do
    if [[ -n ${!v:-} ]]; then printf '%s=%q ' "$v" "${!v}"; fi; done)bench/reliability.sh$( ((QUICK == 0)) || echo ' --quick')${PARTS}"

SCRIPT_NAME=reliability.sh
# shellcheck source=bench/wake-lib.sh
source "$BENCH_DIR/wake-lib.sh"

for v in SLOW_CONNS SLOW_SECONDS SLOW_INTERVAL HEADER_TIMEOUT BURST_CONNS BURST_ROUNDS UPLOADS UPLOAD_CHUNKS CHAOS_SECONDS CHAOS_WORKERS KILL_EVERY RELOAD_EVERY; do
    { [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} >= 1)); } || die "$v must be a positive integer (got '${!v}')"
done
[[ $UPLOAD_INTERVAL =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "UPLOAD_INTERVAL must be a number of seconds (got '$UPLOAD_INTERVAL')"
command -v python3 >/dev/null 2>&1 || die "python3 is needed (the clients)"
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
CLIENT=("$PYTHON" "$BENCH_DIR/reliability.py")

# ---------------------------------------------------------------------------------------------
# 0. Tools and binaries
# ---------------------------------------------------------------------------------------------
stop_system_service() {  # NAME : the Debian package starts it; the benchmark runs its own
    if ((EUID == 0)); then service "$1" stop >/dev/null 2>&1 || true
    else sudo -n service "$1" stop >/dev/null 2>&1 || true; fi
}
if [[ $PARTS == *a* || $PARTS == *b* || $PARTS == *c* ]] && ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    apt_install nginx
    stop_system_service nginx
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [[ $PARTS == *c* ]] && ! command -v gunicorn >/dev/null 2>&1; then
    apt_install gunicorn
fi
GUNICORN=$(command -v gunicorn || true)
SUPERVISORD=""
[[ $PARTS != *d* ]] || need_supervisord
command -v nstat >/dev/null 2>&1 || [[ $PARTS != *b* ]] || apt_install iproute2
build_binaries
# The clients hold thousands of sockets, and so do rouse and nginx.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 3 * BURST_CONNS)) || log "WARNING: ulimit -n is $(ulimit -n); $BURST_CONNS connections at once may run out of descriptors"

TMP=$(mktemp -d /tmp/rouse-reliability.XXXXXX)
chmod 755 "$TMP"   # nginx's workers (another user when not root) read and spool there
RESULTS=$TMP/results
mkdir -p "$RESULTS"
ISSUES=$TMP/issues.txt
: >"$ISSUES"
ROUSE_PID=""
SUPD_PID=""
NGINX_PID=""
GUNICORN_PID=""
BACKEND_PID=""
CLIENT_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $CLIENT_PID ]] && kill -0 "$CLIENT_PID" 2>/dev/null; then
        kill -TERM "$CLIENT_PID" 2>/dev/null || true
        wait "$CLIENT_PID" 2>/dev/null || true
    fi
    stop_rouse
    stop_supervisord
    stop_parent nginx "$NGINX_PID" 10
    stop_parent gunicorn "$GUNICORN_PID" 10
    stop_parent "backend nginx" "$BACKEND_PID" 10
    if [[ $rc -eq 0 && $KEEP_TMP != 1 ]]; then
        rm -rf "$TMP"
    else
        log "kept $TMP (configs, logs, raw client results)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_s() { date +%s.%N; }

start_rouse() {  # CONF LOGNAME PORT [ADMIN_PORT] : rouse check, then rouse run (RUST_LOG=warn)
    "$ROUSE" check -c "$1" >"$TMP/$2.check.txt" 2>&1 || {
        sed 's/^/    /' "$TMP/$2.check.txt" >&2; die "rouse check rejected $1 (shown above)"; }
    RUST_LOG=${ROUSE_LOG:-warn} "$ROUSE" run -c "$1" >"$TMP/$2.rouse.log" 2>&1 &
    ROUSE_PID=$!
    wait_listen "$3" || die "rouse ($2) does not listen on 127.0.0.1:$3; log: $(tail -20 "$TMP/$2.rouse.log")"
    [[ -z ${4:-} ]] || wait_listen "$4" || die "rouse ($2) admin API does not listen on 127.0.0.1:$4"
}

rouse_done() {  # LOGNAME : rouse must still run; then it is stopped and its warnings counted
    kill -0 "$ROUSE_PID" 2>/dev/null || issue "$1: rouse died; log: $(tail -5 "$TMP/$1.rouse.log" | tr '\n' ' ')"
    stop_rouse
    if grep -E '(WARN|ERROR)' "$TMP/$1.rouse.log" | grep -v 'rouse::child' >"$TMP/$1.warn.txt"; then
        log "$1: rouse logged $(wc -l <"$TMP/$1.warn.txt") WARN/ERROR line(s) (kept in the report's appendix); first: $(head -1 "$TMP/$1.warn.txt" | cut -c1-200)"
    fi
    grep -q 'panicked' "$TMP/$1.rouse.log" && issue "$1: rouse panicked: $(grep -m1 -A2 panicked "$TMP/$1.rouse.log" | tr '\n' ' ' | cut -c1-300)"
    return 0
}

start_nginx() {  # CONF PORT LOGNAME
    "$NGINX" -t -c "$1" -p "$TMP/" >"$TMP/$3.nginx-t.txt" 2>&1 || die "nginx -t rejected $1: $(tail -5 "$TMP/$3.nginx-t.txt")"
    "$NGINX" -c "$1" -p "$TMP/" -g 'daemon off;' >"$TMP/$3.nginx.out" 2>&1 &
    NGINX_PID=$!
    wait_listen "$2" "$NGINX_PID" || die "nginx ($3) does not listen on 127.0.0.1:$2: $(tail -5 "$TMP/$3.nginx.out")"
}

nginx_conf() {  # FILE PORT UPSTREAM_PORT EXTRA_HTTP_LINES
    cat >"$1" <<EOF
$( ((EUID == 0)) && echo "user root;")
worker_processes auto;
worker_rlimit_nofile 65536;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx-body;
    proxy_temp_path $TMP/nginx-proxy;
    fastcgi_temp_path $TMP/nginx-fastcgi;
    uwsgi_temp_path $TMP/nginx-uwsgi;
    scgi_temp_path $TMP/nginx-scgi;
${4:-}
    upstream be {
        server 127.0.0.1:$3;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$2 backlog=511;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

run_client() {  # RESULT_NAME BOUND_S SUBCOMMAND ARGS... : the client, bounded, its JSON kept
    local name=$1 bound=$2 rc=0
    shift 2
    timeout --kill-after=10 "$bound" "${CLIENT[@]}" "$@" >"$RESULTS/$name.json" 2>"$TMP/$name.client.err" &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=""
    if ((rc != 0)); then
        issue "$name: the client exited with status $rc$( ((rc == 124)) && echo " (its ${bound}s bound)"): $(tail -3 "$TMP/$name.client.err" | tr '\n' ' ' | cut -c1-300)"
        rm -f "$RESULTS/$name.json"
        return 1
    fi
}

nstat_now() {  # the listen-queue counters, absolute, without touching nstat's history
    nstat -asz TcpExtListenOverflows TcpExtListenDrops TcpExtSyncookiesSent 2>/dev/null \
        | awk '/^TcpExt/ {print $1, $2}'
}

# One static backend for parts a and b: an nginx that answers by itself, with a listen queue of
# somaxconn, so that the proxy's own listen queue is the one that a burst fills (the kernel's
# overflow counters are the machine's).
read -r P_BACKEND P_ROUSE P_NGINX P_ADMIN P_GUNICORN < <(free_ports 5)
[[ -n ${P_GUNICORN:-} ]] || die "could not pick free ports"

static_rouse_conf() {  # FILE UPSTREAM_PORT EXTRA_PROXY_LINES EXTRA_UPSTREAM_LINES
    cat >"$1" <<EOF
[proxy]
listen = ["127.0.0.1:$P_ROUSE"]
listen_backlog = 511
max_connections = 10000
$3

[log]
access_log = false

[[upstream]]
name = "app"
supervisor = "none"
${4:-}

[[upstream.server]]
address = "127.0.0.1:$2"
EOF
}

wait_idle "${WAIT_IDLE:-60}"
STAMP=$(date +%Y%m%d-%H%M%S)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)

if [[ $PARTS == *a* || $PARTS == *b* ]]; then
    cat >"$TMP/backend.nginx.conf" <<EOF
$( ((EUID == 0)) && echo "user root;")
worker_processes 1;
worker_rlimit_nofile 65536;
pid $TMP/nginx-backend.pid;
error_log $TMP/nginx-backend-error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path $TMP/nginx-backend-body;
    proxy_temp_path $TMP/nginx-backend-proxy;
    fastcgi_temp_path $TMP/nginx-backend-fastcgi;
    uwsgi_temp_path $TMP/nginx-backend-uwsgi;
    scgi_temp_path $TMP/nginx-backend-scgi;
    server {
        listen 127.0.0.1:$P_BACKEND backlog=$(cat /proc/sys/net/core/somaxconn);
        location / { return 200 "bench\n"; }
    }
}
EOF
    "$NGINX" -t -c "$TMP/backend.nginx.conf" -p "$TMP/" >"$TMP/backend.nginx-t.txt" 2>&1 || die "nginx -t rejected the backend's config: $(tail -5 "$TMP/backend.nginx-t.txt")"
    "$NGINX" -c "$TMP/backend.nginx.conf" -p "$TMP/" -g 'daemon off;' >"$TMP/backend.nginx.out" 2>&1 &
    BACKEND_PID=$!
    wait_listen "$P_BACKEND" "$BACKEND_PID" || die "the backend nginx does not listen: $(tail -5 "$TMP/backend.nginx.out")"
    static_rouse_conf "$TMP/ab.toml" "$P_BACKEND" "client_header_timeout = \"${HEADER_TIMEOUT}s\""
    nginx_conf "$TMP/ab.nginx.conf" "$P_NGINX" "$P_BACKEND" "    client_header_timeout ${HEADER_TIMEOUT}s;"
fi

# ---------------------------------------------------------------------------------------------
# a. slowloris
# ---------------------------------------------------------------------------------------------
if [[ $PARTS == *a* ]]; then
    probes=(--probe 2 --probe $((HEADER_TIMEOUT + 2)) --probe $((HEADER_TIMEOUT + 5)) --probe $((SLOW_SECONDS - 1)))
    for target in rouse nginx; do
        if [[ $target == rouse ]]; then start_rouse "$TMP/ab.toml" a-rouse "$P_ROUSE"; port=$P_ROUSE
        else start_nginx "$TMP/ab.nginx.conf" "$P_NGINX" a-nginx; port=$P_NGINX; fi
        log "a. slowloris against $target: $SLOW_CONNS connections, a byte every ${SLOW_INTERVAL}s, ${SLOW_SECONDS}s"
        run_client "a-$target" $((SLOW_SECONDS + 120)) slowloris --port "$port" --target "$target" \
            --conns "$SLOW_CONNS" --silent "$SILENT_CONNS" --interval "$SLOW_INTERVAL" --duration "$SLOW_SECONDS" "${probes[@]}" || true
        if [[ $target == rouse ]]; then rouse_done a-rouse
        else stop_parent nginx "$NGINX_PID" 10; NGINX_PID=""; fi
    done
fi

# ---------------------------------------------------------------------------------------------
# b. connections opened at once
# ---------------------------------------------------------------------------------------------
if [[ $PARTS == *b* ]]; then
    for round in $(seq "$BURST_ROUNDS"); do
        for target in rouse nginx; do
            if [[ $target == rouse ]]; then start_rouse "$TMP/ab.toml" "b-rouse-$round" "$P_ROUSE"; port=$P_ROUSE
            else start_nginx "$TMP/ab.nginx.conf" "$P_NGINX" "b-nginx-$round"; port=$P_NGINX; fi
            before=$(nstat_now)
            log "b. $BURST_CONNS connections at once against $target (round $round/$BURST_ROUNDS)"
            if run_client "b-$target-$round" 120 burst --port "$port" --target "$target" --round "$round" --conns "$BURST_CONNS"; then
                after=$(nstat_now)
                # the kernel's counters as deltas, into the result
                "$PYTHON" - "$RESULTS/b-$target-$round.json" "$before" "$after" <<'EOF'
import json, sys
path, before, after = sys.argv[1:4]
parse = lambda s: {l.split()[0]: int(l.split()[1]) for l in s.splitlines() if l.strip()}
b, a = parse(before), parse(after)
r = json.load(open(path))
r["nstat"] = {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b)}
json.dump(r, open(path, "w"))
EOF
            fi
            if [[ $target == rouse ]]; then rouse_done "b-rouse-$round"
            else stop_parent nginx "$NGINX_PID" 10; NGINX_PID=""; fi
            sleep 2   # the previous burst's sockets leave TIME_WAIT for the server side only
        done
    done
fi
if [[ -n $BACKEND_PID ]]; then stop_parent "backend nginx" "$BACKEND_PID" 10; BACKEND_PID=""; fi

# ---------------------------------------------------------------------------------------------
# c. trickling uploads to gunicorn with 4 sync workers
# ---------------------------------------------------------------------------------------------
if [[ $PARTS == *c* ]]; then
    [[ -n $GUNICORN ]] || die "gunicorn is missing after apt-get install gunicorn"
    PYTHONDONTWRITEBYTECODE=1 "$GUNICORN" --workers 4 --worker-class sync --bind "127.0.0.1:$P_GUNICORN" \
        --chdir "$BENCH_DIR" --access-logfile - --log-level warning reliability_app:app >"$TMP/gunicorn.log" 2>&1 &
    GUNICORN_PID=$!
    wait_listen "$P_GUNICORN" "$GUNICORN_PID" || die "gunicorn does not listen: $(tail -5 "$TMP/gunicorn.log")"
    static_rouse_conf "$TMP/c.toml" "$P_GUNICORN" "" "request_buffering = true"
    nginx_conf "$TMP/c.nginx.conf" "$P_NGINX" "$P_GUNICORN" "    # proxy_request_buffering on (the default)"
    upload_args=(--uploads "$UPLOADS" --chunks "$UPLOAD_CHUNKS" --interval "$UPLOAD_INTERVAL")
    for target in rouse nginx direct; do
        case $target in
            rouse) start_rouse "$TMP/c.toml" c-rouse "$P_ROUSE"; port=$P_ROUSE ;;
            nginx) start_nginx "$TMP/c.nginx.conf" "$P_NGINX" c-nginx; port=$P_NGINX ;;
            direct) port=$P_GUNICORN ;;
        esac
        log "c. $UPLOADS trickling uploads via $target"
        run_client "c-$target" 300 uploads --port "$port" --target "$target" "${upload_args[@]}" || true
        case $target in
            rouse) rouse_done c-rouse ;;
            nginx) stop_parent nginx "$NGINX_PID" 10; NGINX_PID="" ;;
        esac
        kill -0 "$GUNICORN_PID" 2>/dev/null || issue "c: gunicorn died during the $target run"
    done
    # A worker killed for its timeout (30 s) is an issue; the first four boots are not.
    { grep -E 'WORKER TIMEOUT|Booting worker' "$TMP/gunicorn.log" || true; } | tail -n +5 | head -3 \
        | while read -r l; do issue "c: gunicorn: $l"; done
    stop_parent gunicorn "$GUNICORN_PID" 10
    GUNICORN_PID=""
fi

# ---------------------------------------------------------------------------------------------
# d. chaos: SIGKILLed backends, reloads, supervisord restarts, under a counting load
# ---------------------------------------------------------------------------------------------
if [[ $PARTS == *d* ]]; then
    read -r P_S0 P_S1 P_S2 P_SD < <(free_ports 4)
    P_SERVERS=("$P_S0" "$P_S1" "$P_S2")
    SD_USER=bench
    SD_PASS=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(8))')

    chaos_conf() {  # FILE MODE(embedded|supervisord) SERVERS(2|3)
        local i
        {
            cat <<EOF
[proxy]
listen = ["127.0.0.1:$P_ROUSE"]

[admin]
listen = "127.0.0.1:$P_ADMIN"

[log]
access_log = false
EOF
            if [[ $2 == supervisord ]]; then cat <<EOF

[supervisors.bench]
url = "http://127.0.0.1:$P_SD/RPC2"
username = "$SD_USER"
password = "$SD_PASS"
poll_interval = "500ms"
timeout = "5s"
EOF
            fi
            cat <<EOF

[[upstream]]
name = "app"
$([[ $2 == supervisord ]] && echo 'supervisor = "bench"')
min_servers = 2
max_servers = $3
idle_timeout = "10m"
start_timeout = "10s"
ready = "tcp"
fail_timeout = "500ms"
EOF
            for ((i = 0; i < $3; i++)); do
                echo
                echo "[[upstream.server]]"
                echo "address = \"127.0.0.1:${P_SERVERS[$i]}\""
                if [[ $2 == embedded ]]; then
                    echo "command = [\"$BACKEND\", \"--listen\", \"127.0.0.1:${P_SERVERS[$i]}\", \"--id\", \"s$i\"]"
                fi
            done
        } >"$1"
    }

    sd_conf() {
        local i
        supervisord_conf_head "$P_SD" "$TMP/"
        for i in 0 1 2; do
            cat <<EOF

[program:app$i]
command = $BACKEND --listen 127.0.0.1:${P_SERVERS[$i]} --id s$i
autostart = false
startsecs = 1
autorestart = false
stopasgroup = true
killasgroup = true
redirect_stderr = true
stdout_logfile = $TMP/app$i.log
EOF
        done
    }

    start_supervisord() {
        "$SUPERVISORD" -c "$TMP/supervisord.conf" -n >>"$TMP/supervisord.out" 2>&1 &
        SUPD_PID=$!
        wait_listen "$P_SD" "$SUPD_PID" || die "supervisord does not listen on 127.0.0.1:$P_SD: $(tail -5 "$TMP/supervisord.out")"
    }

    backend_pids() {  # the backends running now: children of rouse (embedded) or of supervisord
        if [[ $1 == embedded ]]; then pgrep -P "$ROUSE_PID" || true
        else pgrep -P "$SUPD_PID" || true; fi
    }

    # Both configs are valid; reloading from one to the other adds or removes server 2.
    for mode in embedded supervisord; do
        name="d-$mode"
        chaos_conf "$TMP/$name.3.toml" "$mode" 3
        chaos_conf "$TMP/$name.2.toml" "$mode" 2
        cp "$TMP/$name.3.toml" "$TMP/$name.toml"
        if [[ $mode == supervisord ]]; then
            sd_conf >"$TMP/supervisord.conf"
            start_supervisord
        fi
        start_rouse "$TMP/$name.toml" "$name" "$P_ROUSE" "$P_ADMIN"
        # min_servers: both servers up before the load
        for _ in $(seq 100); do
            port_accepts "${P_SERVERS[0]}" && port_accepts "${P_SERVERS[1]}" && break
            sleep 0.1
        done
        log "d. chaos, $mode backends: ${CHAOS_SECONDS}s of load, a SIGKILL every ${KILL_EVERY}s, a reload every ${RELOAD_EVERY}s$([[ $mode == supervisord ]] && echo ', supervisord restarted twice')"
        timeout --kill-after=10 $((CHAOS_SECONDS + 60)) "${CLIENT[@]}" load --port "$P_ROUSE" --target "$name" \
            --workers "$CHAOS_WORKERS" --duration "$CHAOS_SECONDS" >"$RESULTS/$name.json" 2>"$TMP/$name.client.err" &
        CLIENT_PID=$!
        kills=0 reloads_ok=0 reloads_failed=0 restarts=0 flip=2
        t0=$(date +%s)
        next_kill=$((t0 + KILL_EVERY))
        next_reload=$((t0 + RELOAD_EVERY))
        restart_at=("$((t0 + CHAOS_SECONDS / 3))" "$((t0 + 2 * CHAOS_SECONDS / 3))")
        while kill -0 "$CLIENT_PID" 2>/dev/null && (($(date +%s) < t0 + CHAOS_SECONDS)); do
            now=$(date +%s)
            if ((now >= next_kill)); then
                mapfile -t pids < <(backend_pids "$mode")
                if ((${#pids[@]} > 0)); then
                    victim=${pids[RANDOM % ${#pids[@]}]}
                    kill -KILL "$victim" 2>/dev/null && kills=$((kills + 1))
                fi
                next_kill=$((now + KILL_EVERY))
            fi
            if ((now >= next_reload)); then
                cp "$TMP/$name.$flip.toml" "$TMP/$name.toml"
                flip=$((5 - flip))
                if timeout 20 "$ROUSE" reload --admin "127.0.0.1:$P_ADMIN" >>"$TMP/$name.reloads.txt" 2>&1; then
                    reloads_ok=$((reloads_ok + 1))
                else
                    reloads_failed=$((reloads_failed + 1))
                fi
                next_reload=$((now + RELOAD_EVERY))
            fi
            if [[ $mode == supervisord ]] && ((${#restart_at[@]} > 0 && now >= restart_at[0])); then
                log "d. restarting supervisord (SIGTERM: it stops its programs; then a new one)"
                stop_supervisord
                start_supervisord
                restarts=$((restarts + 1))
                restart_at=("${restart_at[@]:1}")
            fi
            sleep 0.2
        done
        rc=0
        wait "$CLIENT_PID" || rc=$?
        CLIENT_PID=""
        chaos="$kills SIGKILLs, $reloads_ok reloads ($reloads_failed failed)"
        [[ $mode != supervisord ]] || chaos="$chaos, $restarts supervisord restarts"
        if ((rc == 0)); then
            "$PYTHON" -c 'import json,sys; p=sys.argv[1]; r=json.load(open(p)); r["chaos"]=sys.argv[2]; json.dump(r, open(p,"w"))' \
                "$RESULTS/$name.json" "$chaos"
        else
            issue "$name: the client exited with status $rc: $(tail -3 "$TMP/$name.client.err" | tr '\n' ' ' | cut -c1-300)"
            rm -f "$RESULTS/$name.json"
        fi
        ((reloads_failed == 0)) || issue "$name: $reloads_failed reload(s) failed: $(grep -v '^upstream\|^applied\|^no changes' "$TMP/$name.reloads.txt" | head -2 | tr '\n' ' ' | cut -c1-300)"
        log "$name: $chaos"
        # after the chaos, rouse must still serve (bounded: servers come back within start_timeout)
        ok=0
        for _ in $(seq 30); do
            if "$PYTHON" -c 'import sys,urllib.request; sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=5).status == 200 else 1)' \
                "http://127.0.0.1:$P_ROUSE/" 2>/dev/null; then ok=1; break; fi
            sleep 0.5
        done
        ((ok)) || issue "$name: rouse did not answer 200 within 15 s after the chaos"
        rouse_done "$name"
        if [[ $mode == supervisord ]]; then stop_supervisord; fi
        for p in "${P_SERVERS[@]}"; do
            port_accepts "$p" && issue "$name: 127.0.0.1:$p still accepts after rouse$([[ $mode == supervisord ]] && echo ' and supervisord') stopped"
        done
    done
fi

LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T_START))

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
OUT_FILE="$OUT_DIR/reliability-$STAMP.md"
"${CLIENT[@]}" report --dir "$RESULTS" >"$TMP/tables.md" 2>"$TMP/report.err" || issue "the report failed: $(tail -3 "$TMP/report.err")"
sed -n 's/^ISSUE //p' "$TMP/report.err" | while read -r l; do issue "$l"; done
{
    echo "# rouse reliability benchmark (issue 9), $STAMP"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    echo "- machine: $NCPU CPU(s), $(cpu_model), $(uname -sr); load average at start: $LOADAVG_START, at end: $LOADAVG_END; run took ${ELAPSED}s; somaxconn $(cat /proc/sys/net/core/somaxconn), tcp_max_syn_backlog $(cat /proc/sys/net/ipv4/tcp_max_syn_backlog), syncookies $(cat /proc/sys/net/ipv4/tcp_syncookies), ulimit -n $(ulimit -n)"
    busy_warning "$LOADAVG_START" "$LOADAVG_END"
    echo "- versions: $(first_line "$ROUSE" --version) (git $(git_rev)); $(first_line "$NGINX" -v)${GUNICORN:+; $(first_line "$GUNICORN" --version)}${SUPERVISORD:+; supervisord $(first_line "$SUPERVISORD" --version)}; $(first_line "$PYTHON" --version)"
    echo "- rouse: release build, \`threads = 0\` (one per core), \`RUST_LOG=warn\`, access log off; nginx: \`worker_processes auto\`, access log off, \`proxy_http_version 1.1\` with upstream keepalive; both on 127.0.0.1 with \`backlog 511\`"
    echo
    cat "$TMP/tables.md"
    echo "## Issues"
    echo
    if [[ -s $ISSUES ]]; then cat "$ISSUES"; else echo "none"; fi
    echo
    echo "<details><summary>configs (the supervisord password is random per run)</summary>"
    echo
    for f in "$TMP"/*.toml "$TMP"/*.nginx.conf; do
        [[ -e $f ]] || continue
        echo "\`$(basename "$f")\`:"
        echo
        echo '```'
        cat "$f"
        echo '```'
        echo
    done
    echo "</details>"
    echo
    echo "<details><summary>rouse WARN/ERROR lines (first 5 of each run)</summary>"
    echo
    echo '```'
    for f in "$TMP"/*.warn.txt; do
        [[ -s $f ]] || continue
        echo "== $(basename "$f" .warn.txt): $(wc -l <"$f") line(s)"
        head -5 "$f" | cut -c1-300
    done
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
