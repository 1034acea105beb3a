#!/usr/bin/env bash
# ApacheBench through nginx, HAProxy and rouse binaries side by side: what a user who measures
# with `ab` sees. ab speaks HTTP/1.0: `ab -k` keeps its connections alive (Connection:
# keep-alive, each answer must say it back), plain `ab` opens a connection per request, which
# measures accepting and closing as much as proxying.
#
#   bench/apachebench.sh NAME=BINARY ...     e.g. bench/apachebench.sh new=target/release/rouse old=/tmp/rouse
#
# Pinned as bench/proxy.sh pins one worker: the backend (one nginx worker, `return 200 "hello
# world\n"`) and ab on CPU 0, each proxy (one worker/thread) on CPU 1. Every round runs each
# load against each target in turn. Besides req/s and p99 it prints each proxy's CPU time per
# request, user and system apart (/proc/PID/stat). Knobs: ROUNDS (3), REQUESTS (300000 with
# -k; a fifth of it without), CONCURRENCY (64), LOADS ("keep-alive close"), KEEP_TMP=1.
# Needs ab (apache2-utils), nginx, haproxy, curl, python3, taskset, bc: installed if missing (root).
set -euo pipefail
(($# >= 1)) || { sed -n '2,15p' "$0"; exit 2; }
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-300000}
CONCURRENCY=${CONCURRENCY:-64}
LOADS=${LOADS:-keep-alive close}
SCRIPT_NAME=apachebench.sh
# shellcheck source=bench/lib-proxy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-proxy.sh"
require_root
require_positive ROUNDS REQUESTS CONCURRENCY
install_tools ab nginx haproxy curl python3 taskset bc
init_tmp
EXPECTED_BODY=$'hello world\n'

read -r P_BACKEND P_NGINX P_HAPROXY < <(free_ports 3)
nginx_conf backend "    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        location / { return 200 \"hello world\\n\"; }
    }"
start_nginx backend 0 && wait_listen backend "$P_BACKEND" || die "the backend nginx does not start"
nginx_conf nginx "$(nginx_proxy_server "$P_NGINX")" "$(nginx_upstream "$P_BACKEND")"
start_nginx nginx 1 && wait_listen nginx "$P_NGINX" || die "the nginx proxy does not start"
haproxy_conf haproxy "127.0.0.1:$P_HAPROXY" "$P_BACKEND"
start_haproxy haproxy 1 && wait_listen haproxy "$P_HAPROXY" || die "HAProxy does not start"
declare -A PORT=([nginx]=$P_NGINX [haproxy]=$P_HAPROXY)
TARGETS=(nginx haproxy)
for v in "$@"; do
    name=${v%%=*} bin=${v#*=}
    [[ -x $bin ]] || die "$bin: not an executable"
    read -r PORT[$name] < <(free_ports 1)
    rouse_conf "$TMP/$name.toml" "${PORT[$name]}" "$P_BACKEND"
    RUST_LOG=warn start "$name" 1 "$bin" run -c "$TMP/$name.toml"
    wait_listen "$name" "${PORT[$name]}" || die "$name does not start"
    TARGETS+=("$name")
done
for t in "${TARGETS[@]}"; do
    check_http1 "$t" "${PORT[$t]}" || die "$t does not answer as the backend does"
    taskset -c 0 ab -q -k -c 16 -n 20000 "http://127.0.0.1:${PORT[$t]}/" >/dev/null  # warm-up
done
log "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

# run LOAD TARGET ROUND : one ab run; a line of the results table on stdout
run() {
    local load=$1 t=$2 round=$3 n=$REQUESTS flags=(-q -c "$CONCURRENCY") f out rps p99 failed ka
    [[ $load == keep-alive ]] && flags+=(-k) || n=$((REQUESTS / 5))
    f="$TMP/ab-$load-$t-$round.txt"
    cpu_before=$(cpu_ticks $(worker_pids "$t"))
    taskset -c 0 ab "${flags[@]}" -n "$n" "http://127.0.0.1:${PORT[$t]}/" >"$f" 2>&1 || {
        issue "$load $t round $round: ab failed: $(tail -3 "$f" | tr '\n' ' ')"; return 0; }
    read -r u1 s1 < <(cpu_ticks $(worker_pids "$t"))
    read -r u0 s0 <<<"$cpu_before"
    rps=$(awk '/^Requests per second:/ {print $4}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f")
    failed=$(awk '/^Failed requests:/ {print $3}' "$f")
    ka=$(awk '/^Keep-Alive requests:/ {print $3}' "$f")
    [[ $failed == 0 ]] || issue "$load $t round $round: $failed failed requests"
    if [[ $load == keep-alive && ${ka:-0} != "$n" ]]; then
        issue "$load $t round $round: $ka of $n requests kept the connection alive"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$t" "$round" "$rps" "$p99" \
        "$(echo "scale=2; ($u1 - $u0) * 1000000 / $CLK_TCK / $n" | bc)" \
        "$(echo "scale=2; ($s1 - $s0) * 1000000 / $CLK_TCK / $n" | bc)"
}

RESULTS="$TMP/results.tsv"
for round in $(seq "$ROUNDS"); do
    for load in $LOADS; do
        for t in "${TARGETS[@]}"; do
            run "$load" "$t" "$round" | tee -a "$RESULTS" >&2
        done
    done
done

# Medians per load and target, and each against nginx's.
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for load, t, _, rps, p99, user, sys_ in rows:
    by.setdefault((load, t), []).append((float(rps), float(p99), float(user), float(sys_)))
for load in dict.fromkeys(r[0] for r in rows):
    print(f"\n{load}: ab {'-k ' if load == 'keep-alive' else ''}(HTTP/1.0), medians")
    print("| target | req/s | vs nginx | p99 ms | CPU µs/request (user + sys) | vs nginx |")
    print("|---|---|---|---|---|---|")
    med = {t: [statistics.median(c) for c in zip(*v)] for (l, t), v in by.items() if l == load}
    base = med.get("nginx")
    for t, (rps, p99, user, sys_) in med.items():
        cpu = user + sys_
        vs = lambda a, b: f"{a / b:.2f}x" if b else "-"
        print(f"| {t} | {rps / 1000:.1f}k | {vs(rps, base[0]) if base else '-'} | {p99:.0f} "
              f"| {cpu:.1f} ({user:.1f} + {sys_:.1f}) | {vs(cpu, base[2] + base[3]) if base else '-'} |")
PY
cat "$ISSUES" >&2
