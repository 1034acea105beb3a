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
# DURATION (s under load, default 5), CONNECTIONS (16), NGINX=0 to leave nginx out. Under
# valgrind a proxy runs some 50x slower: a few thousand requests are counted, enough for
# figures repeatable to about 1%. Needs nginx, wrk, valgrind, curl, python3 (installed if
# missing; root).
set -euo pipefail
(($# >= 1)) || { sed -n '2,14p' "$0"; exit 2; }
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-16}
WITH_NGINX=${NGINX:-1}
SCRIPT_NAME=instructions.sh
# shellcheck source=bench/lib-proxy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-proxy.sh"
require_root
install_tools nginx wrk valgrind curl python3

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
T=$(mktemp -d /tmp/rouse-instr.XXXXXX)
KIDS=()
cleanup() {
    for p in "${KIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/b" "$T/p"
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
"$NGINX" -c "$T/backend.conf" &
KIDS+=($!)

# measure NAME PORT PID : warm up, then count instructions over one wrk run
measure() {
    local name=$1 port=$2 pid=$3 out reqs ir f
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.2; done
    wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$port/")
    callgrind_control -i off "$pid" >/dev/null
    callgrind_control -d "$pid" >/dev/null
    sleep 1
    reqs=$(awk '/requests in/{print $1}' <<<"$out")
    f=$(ls -S "$T/$name".cg* | head -1)
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
    printf '%-12s %8d requests  %12d instructions  %7d per request\n' "$name" "$reqs" "$ir" $((ir / reqs))
    kill "$pid" 2>/dev/null || true
}

for v in "$@"; do
    name=${v%%=*} bin=${v#*=}
    port=$(free_port)
    cat >"$T/$name.toml" <<CONFIG
[proxy]
listen = ["127.0.0.1:$port"]
threads = 1
[log]
access_log = false
[[upstream]]
name = "bench"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:$BACKEND"
CONFIG
    RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$T/$name.cg" \
        "$bin" run -c "$T/$name.toml" >"$T/$name.log" 2>&1 &
    KIDS+=($!)
    measure "$name" "$port" $!
done

if [[ $WITH_NGINX == 1 ]]; then
    port=$(free_port)
    cat >"$T/proxy.conf" <<NGINX
master_process off; daemon off; worker_processes 1; user root root; pid $T/proxy.pid;
error_log $T/proxy.err warn;
events { worker_connections 8192; }
http {
    access_log off; keepalive_requests 100000; keepalive_timeout 65s;
    client_body_temp_path $T/p/body; proxy_temp_path $T/p/p; fastcgi_temp_path $T/p/f;
    uwsgi_temp_path $T/p/u; scgi_temp_path $T/p/s;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 128; keepalive_requests 100000; }
    server { listen 127.0.0.1:$port backlog=4096;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGINX
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$T/nginx.cg" \
        "$NGINX" -c "$T/proxy.conf" >"$T/nginx.log" 2>&1 &
    KIDS+=($!)
    measure nginx "$port" $!
fi
