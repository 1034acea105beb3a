#!/usr/bin/env bash
# Memory per idle keep-alive client connection: nginx vs HAProxy vs rouse, one worker each.
#
# For each proxy in turn (pinned to CPU 1, in front of one nginx backend on CPU 0, as in
# bench/proxy.sh): RSS idle, then while bench/memory-client.py (CPU 0) holds CONNS keep-alive
# connections that each sent one request and read its answer, then after they are closed.
# Per-connection KiB = (holding - idle) / connections held. See bench/README.md.
#
# Knobs (environment): CONNS (10000), CONCURRENCY (200 connections being set up at once),
#   ROUNDS (1), TARGETS ("nginx haproxy rouse"), OPEN_TIMEOUT (60 s), CARGO_TARGET_DIR,
#   ROUSE_BIN (skip the build), KEEP_TMP=1.
set -euo pipefail

SCRIPT_NAME=memory.sh
# shellcheck source=bench/lib-proxy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-proxy.sh"

CONNS=${CONNS:-10000}
CONCURRENCY=${CONCURRENCY:-200}
ROUNDS=${ROUNDS:-1}
TARGETS=${TARGETS:-nginx haproxy rouse}
OPEN_TIMEOUT=${OPEN_TIMEOUT:-60}

EXPECTED_BODY=$'hello world\n'
BACKEND_CPU=0
PROXY_CPU=1
OUT_FILE="$OUT_DIR/memory-$STAMP.md"
COMMAND_LINE=$(command_line bench/memory.sh CONNS CONCURRENCY ROUNDS TARGETS OPEN_TIMEOUT CARGO_TARGET_DIR ROUSE_BIN)

require_positive CONNS CONCURRENCY ROUNDS OPEN_TIMEOUT
for t in $TARGETS; do
    [[ $t =~ ^(nginx|haproxy|rouse)$ ]] || die "TARGETS: unknown target '$t' (nginx, haproxy, rouse)"
done
require_root
install_tools nginx haproxy curl taskset python3 ss
build_rouse
init_tmp
FDS=$(ulimit -n)
ROOM=$((CONNS + 1024))   # every client connection, the backend pool and some spare
((FDS > ROOM + 100)) || die "ulimit -n is $FDS (the hard limit here): too few descriptors for $CONNS connections"

# ---------------------------------------------------------------------------------------------
# Configs: every idle timeout far beyond the run, room for every connection
# ---------------------------------------------------------------------------------------------
read -r P_BACKEND P_NGINX P_HAPROXY P_ROUSE < <(free_ports 4)
[[ -n ${P_ROUSE:-} ]] || die "could not pick free ports"
declare -A PORT=([nginx]=$P_NGINX [haproxy]=$P_HAPROXY [rouse]=$P_ROUSE)
IDLE=600s

NGINX_WORKER_CONNECTIONS=$ROOM
NGINX_KEEPALIVE_TIMEOUT=$IDLE
NGINX_MAIN_EXTRA="worker_rlimit_nofile $FDS;"
nginx_conf backend "    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        location / { return 200 \"hello world\\n\"; }
    }"
nginx_conf nginx "$(nginx_proxy_server "$P_NGINX")" "$(nginx_upstream "$P_BACKEND")"

HAPROXY_MAXCONN=$ROOM
HAPROXY_TIMEOUT=$IDLE
# HAProxy wants descriptors for a server connection per client one (2 x maxconn) and refuses
# to start when it cannot raise its limit that far; it needs few server connections here, so
# `no strict-limits` lets it start with the limit there is (it says so in its log).
haproxy_conf haproxy "127.0.0.1:$P_HAPROXY" "$P_BACKEND" "    no strict-limits" "    timeout http-keep-alive $IDLE"

rouse_conf "$TMP/rouse.toml" "$P_ROUSE" "$P_BACKEND" "threads = 1
max_connections = $ROOM
client_idle_timeout = \"$IDLE\""
"$ROUSE" check -c "$TMP/rouse.toml" >&2 || die "rouse check rejected the bench config (shown above)"

start_proxy() {  # TARGET
    case $1 in
        nginx) start_nginx nginx "$PROXY_CPU" ;;
        haproxy) start_haproxy haproxy "$PROXY_CPU" ;;
        rouse) start rouse "$PROXY_CPU" env RUST_LOG=warn "$ROUSE" run -c "$TMP/rouse.toml" ;;
    esac
}

# established PORT : open TCP connections whose local port is PORT (the proxy's side)
established() {
    ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l
}

# rss TARGET : "TOTAL WORKER" KiB (nginx: master + workers, and the workers alone)
rss() {
    local total worker
    # shellcheck disable=SC2046  # one pid per word
    total=$(status_kb VmRSS $(proc_tree "$1"))
    # shellcheck disable=SC2046
    worker=$(status_kb VmRSS $(worker_pids "$1"))
    echo "$total $worker"
}

# wait_for FILE PATTERN SECONDS NAME : bounded wait until a line of FILE matches PATTERN while
# NAME (a started process) runs
wait_for() {
    local file=$1 pattern=$2 secs=$3 name=$4
    for _ in $(seq $((secs * 10))); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        alive "$name" || { grep -q "$pattern" "$file" 2>/dev/null; return; }
        sleep 0.1
    done
    return 1
}

log "backend: nginx on 127.0.0.1:$P_BACKEND (CPU $BACKEND_CPU)"
start_nginx backend "$BACKEND_CPU" || die "backend nginx does not start"
wait_listen backend "$P_BACKEND" || die "backend nginx does not listen"
check_http1 backend "$P_BACKEND" || die "backend answers wrongly"

# target round idle_total idle_worker hold_total hold_worker after_total after_worker held
#   server_established open_at_release client_errors
RESULTS="$TMP/results.tsv"
: >"$RESULTS"

measure() {  # TARGET ROUND
    local t=$1 round=$2 port=${PORT[$1]} idle hold after held est open errs n client=client-$1-$2
    local release="$TMP/release-$t-$round" out="$TMP/client-$t-$round.json"
    start_proxy "$t" || { issue "$t round $round: did not start"; return 0; }
    wait_listen "$t" "$port" || { issue "$t round $round: does not listen"; stop_one "$t"; return 0; }
    check_http1 "$t" "$port" || { issue "$t round $round: answers wrongly"; stop_one "$t"; return 0; }
    idle=$(rss "$t")

    start "$client" "$BACKEND_CPU" python3 "$BENCH_DIR/memory-client.py" --port "$port" \
        --conns "$CONNS" --concurrency "$CONCURRENCY" --open-timeout "$OPEN_TIMEOUT" \
        --hold-max $((OPEN_TIMEOUT + 60)) --release-file "$release" --out "$out"
    if ! wait_for "$TMP/$client.log" '^HOLDING' $((OPEN_TIMEOUT + 15)) "$client"; then
        issue "$t round $round: the client never reported holding its connections; log: $(tail -5 "$TMP/$client.log" | tr '\n' ' ')"
        stop_one "$client"; stop_one "$t"; return 0
    fi
    held=$(awk '/^HOLDING/ {print $2}' "$TMP/$client.log")
    est=$(established "$port")
    hold=$(rss "$t")
    log "$t round $round: holding $held connections ($est established on the proxy's port); RSS idle $idle KiB, holding $hold KiB"

    touch "$release"
    wait_for "$TMP/$client.log" '^DONE' 60 "$client" || issue "$t round $round: the client did not finish within 60 s"
    stop_one "$client"
    # After the close: once the proxy has let every client connection go (bounded, 30 s).
    for _ in $(seq 300); do
        n=$(established "$port")
        ((n == 0)) && break
        sleep 0.1
    done
    ((n == 0)) || issue "$t round $round: $n client connections still established 30 s after the client closed them"
    after=$(rss "$t")
    alive "$t" || issue "$t round $round: $t died; log: $(tail -5 "$TMP/$t.log" | tr '\n' ' ')"
    stop_one "$t"

    open=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["open_at_release"])' "$out" 2>/dev/null || echo NaN)
    errs=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); e=dict(d["errors"]); e.update({"timed out": d["timed_out"]} if d["timed_out"] else {}); print(json.dumps(e) if e else "")' "$out" 2>/dev/null || echo "no client summary")
    [[ $held == "$CONNS" ]] || issue "$t round $round: only $held of $CONNS connections answered and held (${errs:-no errors})"
    [[ $open == "$held" ]] || issue "$t round $round: the proxy closed $((held - ${open/NaN/0})) of the $held held connections before the release"
    # shellcheck disable=SC2086  # "TOTAL WORKER" pairs
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$round" $idle $hold $after "$held" "$est" "$open" "$errs" >>"$RESULTS"
    log "$t round $round: after close $after KiB"
}

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    for t in $TARGETS; do measure "$t" "$round"; done
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
{
    echo "# rouse memory per idle connection, $STAMP"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    machine_lines "$LOADAVG_START"
    echo "- versions: $(first_line "$NGINX" -v); $(first_line "$HAPROXY" -v); $(first_line "$ROUSE" --version); $(first_line python3 --version)"
    echo "- backend: nginx, 1 worker, \`return 200 \"hello world\\n\"\`, CPU $BACKEND_CPU; each proxy alone, 1 worker/thread, CPU $PROXY_CPU, started fresh for its measurement and stopped after"
    echo "- proxies: nginx \`worker_processes 1\`, \`keepalive_timeout $IDLE\`, \`worker_connections $ROOM\`, upstream \`keepalive $BENCH_KEEPALIVE\`; HAProxy \`nbthread 1\`, \`maxconn $ROOM\`, \`no strict-limits\` (descriptor limit $FDS), \`timeout client $IDLE\`, \`timeout http-keep-alive $IDLE\`; rouse \`threads = 1\`, \`max_connections = $ROOM\`, \`client_idle_timeout = \"$IDLE\"\`; no access logs"
    echo "- clients: \`bench/memory-client.py\` on CPU $BACKEND_CPU opens $CONNS connections ($CONCURRENCY being set up at once), sends one \`GET /\` on each and reads the answer, then holds them all silent; RSS is read (VmRSS of /proc/PID/status) idle (after one request), while they are held, and after they are closed and the proxy has none left established"
    echo
    python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
names = {"nginx": "nginx (master + worker)", "haproxy": "HAProxy", "rouse": "rouse"}
def mib(kib):
    return f"{kib / 1024:.1f}"
def med(rs, col):
    return statistics.median(float(r[col]) for r in rs)
print("## RSS: median over rounds")
print()
print("| proxy | rounds | idle MiB | holding MiB | holding vs nginx | after close MiB | per connection KiB | per connection vs nginx | connections held | still open at release | client errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
per = {}
for t in ["nginx", "haproxy", "rouse"]:
    rs = [r for r in rows if r[0] == t]
    if rs:
        per[t] = statistics.median((float(r[4]) - float(r[2])) / max(int(r[8]), 1) for r in rs)
for t in ["nginx", "haproxy", "rouse"]:
    rs = [r for r in rows if r[0] == t]
    if not rs:
        continue
    ratio = f"{per[t] / per['nginx']:.2f}x" if per.get("nginx") else "n/a"
    nginx_rs = [r for r in rows if r[0] == "nginx"]
    hold_ratio = f"{med(rs, 4) / med(nginx_rs, 4):.2f}x" if nginx_rs else "n/a"
    idle = f"{mib(med(rs, 2))}" + (f" (worker {mib(med(rs, 3))})" if t == "nginx" else "")
    hold = f"{mib(med(rs, 4))}" + (f" (worker {mib(med(rs, 5))})" if t == "nginx" else "")
    after = f"{mib(med(rs, 6))}" + (f" (worker {mib(med(rs, 7))})" if t == "nginx" else "")
    errs = "; ".join(r[11] for r in rs if len(r) > 11 and r[11]) or "none"
    held = "/".join(r[8] for r in rs)
    opened = "/".join(r[10] for r in rs)
    print(f"| {names[t]} | {len(rs)} | {idle} | {hold} | {hold_ratio} | {after} | {per[t]:.2f} | {ratio} | {held} | {opened} | {errs} |")
if not rows:
    print("| (no results) | | | | | | | | | | |")
print()
EOF
    echo "## Issues"
    echo
    if [[ -s $ISSUES ]]; then cat "$ISSUES"; else echo "none"; fi
    raw_results "target, round, idle KiB total/worker, holding KiB total/worker, after KiB total/worker, held, established on the proxy's port, open at release, client errors"
} >"$OUT_FILE"

end_report
