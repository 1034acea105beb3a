#!/usr/bin/env bash
# rouse's resident memory holding N idle keep-alive clients (each sent one request, then
# kept open): bench/idle-rss.sh N BINARY[:ENV=VALUE,...] ...   (threads = 2; needs nginx,
# curl, python3; N + 100 open files for rouse and for the client: `ulimit -n` is raised to
# the hard limit). H2C=1: the clients speak h2c, one stream each.
set -euo pipefail
(($# >= 2)) || { sed -n '2,5p' "$0"; exit 2; }
N=$1; shift
ulimit -n "$(ulimit -Hn)"
export PATH="$PATH:/usr/sbin:/sbin"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib-rouse.sh
source "$HERE/lib-rouse.sh"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
T=$(mktemp -d /tmp/rouse-rss.XXXXXX)
mkdir -p "$T/b"
BACKEND=$(free_port) LISTEN=$(free_port)
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
nginx -c "$T/backend.conf" &
NGINX_PID=$!
trap 'kill $NGINX_PID 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
rouse_conf "$T/rouse.toml" "$LISTEN" "$BACKEND" "threads = 2
max_connections = $((N + 1000))
listen_backlog = 4096"
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
for v in "$@"; do
    bin=${v%%:*} envs=""
    [[ $v == *:* ]] && envs=${v#*:}
    # shellcheck disable=SC2086
    env ${envs//,/ } RUST_LOG=warn "$bin" run -c "$T/rouse.toml" >"$T/rouse.log" 2>&1 &
    R=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$LISTEN/" >/dev/null && break; sleep 0.1; done
    start=$(rss $R)
    mkfifo "$T/hold"
    python3 "$HERE/idle_clients.py" "$LISTEN" "$N" <"$T/hold" >"$T/client.out" 2>&1 &
    P=$!
    exec 3>"$T/hold"
    for _ in $(seq 1200); do [[ -s $T/client.out ]] && break; sleep 0.1; done
    held=$(rss $R)
    echo "$(basename "$bin") $envs: RSS ${start} kB idle, ${held} kB holding $N clients," \
        "$(((held - start) * 1024 / N)) B per connection; client: $(cat "$T/client.out")"
    exec 3>&-
    wait $P || true
    rm -f "$T/hold" "$T/client.out"
    kill $R
    wait $R || true
done
