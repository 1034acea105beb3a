# The rouse config every bench script runs (one static upstream "bench"): source it, do not
# run it. lib-proxy.sh sources it for the scripts built on that; ab.sh and idle-rss.sh, which
# keep their own processes, source it alone.
# shellcheck shell=bash

# Idle connections kept per server, by rouse and nginx alike (HAProxy keeps every one): at
# least the load's concurrency (h2load's 16 x 10 streams, wrk's 64), so that no proxy closes
# and reopens connections between two bursts of responses.
BENCH_KEEPALIVE=256

# rouse_conf FILE PORT BACKEND_PORT [PROXY_LINES] : a rouse config listening on 127.0.0.1:PORT
# in front of one static server (127.0.0.1:BACKEND_PORT, or the unix socket BACKEND_PORT names
# when it is a path), access log off. PROXY_LINES follow the listen line: more [proxy] keys,
# then any of its tables such as [[proxy.tls]] ("threads = 1" if none).
rouse_conf() {
    local server="127.0.0.1:$3"
    [[ $3 == /* ]] && server="unix:$3"
    cat >"$1" <<EOF
[proxy]
listen = ["127.0.0.1:$2"]
pool_max_idle_per_server = $BENCH_KEEPALIVE
${4:-threads = 1}

[log]
access_log = false

[[upstream]]
name = "bench"
supervisor = "none"

[[upstream.server]]
address = "$server"
EOF
}
