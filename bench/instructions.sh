#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: rouse binaries (and nginx
# as a proxy, for reference) each in front of one nginx backend, driven by wrk over h1
# keep-alive. Instruction counts do not swing with what else the machine runs, as req/s and
# CPU time do, so this is how a small change to the hot path is judged on a shared machine.
# The kernel's share (system calls, the TCP stack: three quarters of a proxied request's CPU
# on loopback) is not counted: bench/proxy.sh measures that side by side.
#
#   bench/instructions.sh NAME=BINARY ...     e.g. bench/instructions.sh old=/tmp/rouse new=target/release/rouse
#
# DURATION (s under load, default 5), CONNECTIONS (16), NGINX=0 to leave nginx out, H2C=1 for
# h2load over h2c (prior knowledge, 16 clients x 10 streams, rouse binaries alone) instead of
# wrk, UNIX=1 for rouse's server on a unix socket (the backend nginx listens on both), LOCKS=1
# to also count the locked (atomic) instructions per request and show where the most are
# (bench/locked-ops.py; LOCKS_TOP sites, default 15). Under valgrind a proxy runs some 50x slower: a few thousand requests are counted, enough
# for figures repeatable to about 1%. Needs nginx, wrk, h2load, valgrind, curl, python3
# (installed if missing; root).
set -euo pipefail
(($# >= 1)) || { sed -n '2,15p' "$0"; exit 2; }
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-16}
WITH_NGINX=${NGINX:-1}
H2C=${H2C:-0}
UNIX=${UNIX:-0}
LOCKS=${LOCKS:-0}
# Per instruction, for bench/locked-ops.py.
DUMP_INSTR=()
[[ $LOCKS == 1 ]] && DUMP_INSTR=(--dump-instr=yes)
SCRIPT_NAME=instructions.sh
# shellcheck source=bench/lib-proxy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-proxy.sh"
require_root
install_tools nginx wrk h2load valgrind curl python3 taskset
[[ $LOCKS == 1 ]] && install_tools objdump addr2line
init_tmp
CPUS="0-$(($(nproc) - 1))"

read -r P_BACKEND P_NGINX < <(free_ports 2)
nginx_conf backend "    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        listen unix:$TMP/backend.sock backlog=4096;
        location / { return 200 \"hello world\\n\"; }
    }"
start_nginx backend "$CPUS" || die "backend nginx does not start"
wait_listen backend "$P_BACKEND" || die "backend nginx does not listen"

# load SECONDS PORT : the load for SECONDS against PORT, its report on stdout
load() {
    if [[ $H2C == 1 ]]; then
        h2load -c 16 -m 10 -t 1 -D "$1" "http://127.0.0.1:$2/"
    else
        wrk -t1 -c"$CONNECTIONS" -d"$1s" "http://127.0.0.1:$2/"
    fi
}

# measure NAME PORT BINARY : warm NAME (started under callgrind) up, then count its
# instructions over one run of the load, and stop it
measure() {
    local name=$1 port=$2 bin=$3 pid=${PIDS[$1]} out reqs ir f
    # Under valgrind a start takes seconds: up to 60 s (or until it exits), then its log.
    local up=0
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null && { up=1; break; }
        alive "$name" || break
        sleep 0.2
    done
    ((up)) || { sed 's/^/    /' "$TMP/$name.log" >&2; die "$name does not answer on 127.0.0.1:$port within 60 s (or it exited)"; }
    load 2 "$port" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    out=$(load "$DURATION" "$port")
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    if [[ $H2C == 1 ]]; then
        reqs=$(awk '/^requests:/{print $8}' <<<"$out")
    else
        reqs=$(awk '/requests in/{print $1}' <<<"$out")
    fi
    f=$(ls -S "$TMP/$name".cg* | head -1)
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
    printf '%-12s %8d requests  %12d instructions  %7d per request\n' "$name" "$reqs" "$ir" $((ir / reqs))
    if [[ $LOCKS == 1 ]]; then
        python3 "$(dirname "${BASH_SOURCE[0]}")/locked-ops.py" "$f" "$bin" "$reqs" "${LOCKS_TOP:-15}" | sed 's/^/    /'
    fi
    stop_one "$name"
}

for v in "$@"; do
    name=${v%%=*} bin=${v#*=}
    read -r port < <(free_ports 1)
    if [[ $UNIX == 1 ]]; then
        rouse_conf "$TMP/$name.toml" "$port" "$TMP/backend.sock"
    else
        rouse_conf "$TMP/$name.toml" "$port" "$P_BACKEND"
    fi
    RUST_LOG=warn start "$name" "$CPUS" valgrind --tool=callgrind --instr-atstart=no "${DUMP_INSTR[@]}" \
        --callgrind-out-file="$TMP/$name.cg" "$bin" run -c "$TMP/$name.toml"
    measure "$name" "$port" "$bin"
done

# nginx's proxy config here is HTTP/1.1 only: over h2c, rouse binaries alone are counted.
if [[ $WITH_NGINX == 1 && $H2C != 1 ]]; then
    NGINX_MAIN_EXTRA="master_process off;" \
        nginx_conf nginx "$(nginx_proxy_server "$P_NGINX")" "$(nginx_upstream "$P_BACKEND")"
    start nginx "$CPUS" valgrind --tool=callgrind --instr-atstart=no "${DUMP_INSTR[@]}" \
        --callgrind-out-file="$TMP/nginx.cg" "$NGINX" -c "$TMP/nginx.conf" -g 'daemon off;'
    measure nginx "$P_NGINX" "$NGINX"
fi
