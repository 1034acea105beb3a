#!/usr/bin/env bash
# Interleaved A/B of rouse binaries (threads, allocator, build profile): each binary serves
# on its own port in front of one nginx backend; every round runs wrk against each in turn,
# so drift on a shared machine hits them all alike. Everything (rouse, wrk, nginx) runs on
# CPUs 0,1. Besides req/s it prints rouse's CPU time (utime+stime from /proc) per request,
# which swings less than req/s when other work shares the machine, and its user and system
# parts apart (a change to rouse's own code moves the user part).
#
#   bench/ab.sh ROUNDS DURATION THREADS NAME=BINARY[:ENV=VALUE,...] ...
#   e.g. bench/ab.sh 10 3 2 new=target/release/rouse old=/tmp/rouse-before
#
# CONNECTIONS (64) wrk connections. H2C=1: h2load over h2c (prior knowledge) instead of wrk,
# 16 clients x 10 streams for DURATION, as bench/proxy.sh's h2c runs. SCRIPT=FILE.lua: wrk
# runs that script (bench/mixed.lua: one request in EVERY a chunked upload). Needs nginx, wrk,
# h2load, curl, bc, taskset (bench/proxy.sh installs them). Ports: free ones, picked by
# binding port 0.
set -euo pipefail
(($# >= 4)) || { sed -n '2,14p' "$0"; exit 2; }
ROUNDS=$1 DUR=$2 THREADS=$3; shift 3
CONN=${CONNECTIONS:-64}
# shellcheck source=bench/lib-rouse.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-rouse.sh"
H2C=${H2C:-0}
# One run against PORT for DUR seconds; prints "REQ_PER_S REQUESTS".
load() {
    if [[ $H2C == 1 ]]; then
        taskset -c 0,1 h2load -D "$2" -c16 -m10 -t1 "http://127.0.0.1:$1/" |
            awk '/^finished in/{rps=$4} /^requests:/{done=$8} END{print rps, done}'
    else
        taskset -c 0,1 wrk -t2 -c"$CONN" -d"${2}s" ${SCRIPT:+-s "$SCRIPT"} "http://127.0.0.1:$1/" |
            awk '/Requests\/sec/{rps=$2} /requests in/{n=$1} END{print rps, n}'
    fi
}
export PATH="$PATH:/usr/sbin:/sbin"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
T=$(mktemp -d /tmp/rouse-ab.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/b"
BACKEND=$(free_port)
cat >"$T/backend.conf" <<NGINX
worker_processes 1; user root root; pid $T/backend.pid; error_log $T/backend.err warn; daemon off;
events { worker_connections 8192; }
http {
    access_log off; keepalive_requests 1000000; keepalive_timeout 65s;
    client_body_temp_path $T/b/body; proxy_temp_path $T/b/p; fastcgi_temp_path $T/b/f;
    uwsgi_temp_path $T/b/u; scgi_temp_path $T/b/s;
    server { listen 127.0.0.1:$BACKEND backlog=4096; location / { return 200 "hello world\n"; } }
}
NGINX
taskset -c 0,1 nginx -c "$T/backend.conf" &
PIDS+=($!)
declare -A PORT RPID SUM CPU USR
names=()
for v in "$@"; do
    name=${v%%=*} rest=${v#*=}
    bin=${rest%%:*} envs=""
    [[ $rest == *:* ]] && envs=${rest#*:}
    PORT[$name]=$(free_port)
    names+=("$name")
    rouse_conf "$T/$name.toml" "${PORT[$name]}" "$BACKEND" "threads = $THREADS"
    # shellcheck disable=SC2086
    env ${envs//,/ } RUST_LOG=warn taskset -c 0,1 "$bin" run -c "$T/$name.toml" >"$T/$name.log" 2>&1 &
    PIDS+=($!)
    RPID[$name]=$!
done
for n in "${names[@]}"; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:${PORT[$n]}/" >/dev/null && break; sleep 0.1; done
    load "${PORT[$n]}" 1 >/dev/null   # warm-up
done
ticks=$(getconf CLK_TCK)
# utime and stime, in ticks
cpu() { awk '{print $14, $15}' "/proc/$1/stat"; }
for r in $(seq "$ROUNDS"); do
    line="round $r:"
    for n in "${names[@]}"; do
        read -r u0 s0 < <(cpu "${RPID[$n]}")
        read -r rps reqs < <(load "${PORT[$n]}" "$DUR")
        read -r u1 s1 < <(cpu "${RPID[$n]}")
        us=$(echo "scale=2; ($u1 + $s1 - $u0 - $s0) * 1000000 / $ticks / $reqs" | bc)
        usr=$(echo "scale=2; ($u1 - $u0) * 1000000 / $ticks / $reqs" | bc)
        line+=" $n=${rps}/s,${us}us(user ${usr})"
        SUM[$n]=$(echo "${SUM[$n]:-0} + $rps" | bc)
        CPU[$n]=$(echo "${CPU[$n]:-0} + $us" | bc)
        USR[$n]=$(echo "${USR[$n]:-0} + $usr" | bc)
    done
    echo "$line"
done
for n in "${names[@]}"; do
    echo "mean $n: $(echo "scale=0; ${SUM[$n]} / $ROUNDS" | bc) req/s," \
        "$(echo "scale=2; ${CPU[$n]} / $ROUNDS" | bc) us CPU/request" \
        "(user $(echo "scale=2; ${USR[$n]} / $ROUNDS" | bc))"
done
