#!/usr/bin/env bash
# The wake-up burst of issue 8, measured: wrk -c40 on a cold upstream of three supervisord
# programs that serve 2 requests at a time each (rouse-test-backend --concurrency 2, like gunicorn
# with 2 sync workers) and queue the rest inside themselves. rouse used to release every held
# request to the first server ready, where they queued for seconds; it now releases them by
# capacity (max_conns always, target_in_flight while another server starts) and starts as many
# servers as the burst needs. crates/e2e/tests/capacity.rs is the e2e version of this scenario.
#
# One supervisord (its own, on a free 127.0.0.1 port) runs [program:app0..app2]. For each round
# and each configuration, in turn, a fresh rouse (max_servers = 3, ready = "tcp", a short
# idle_timeout) sits in front of them; the script waits (bounded) until all three programs are
# STOPPED, runs `wrk -t2 -c$CLIENTS -d$DURATION --timeout $WRK_TIMEOUT --latency` through rouse,
# then reads each backend's /stats straight from its port and rouse's /status (admin API), and
# waits until rouse has stopped the programs again for idleness. Configurations:
#   A  max_conns = WORKERS on each server (target_in_flight: the default, 10)
#   B  no max_conns, target_in_flight = WORKERS
#   C  no max_conns, target_in_flight = 1000: every held request goes to the first ready
#      server, as a config with neither did before issue 8 (the old behaviour, for comparison)
#
# Knobs (environment): CLIENTS (40), DURATION (10s), LATENCY_MS (100), ROUNDS (3), WORKERS (2),
#   WRK_TIMEOUT (2s), IDLE_TIMEOUT (1s), POLL_INTERVAL (rouse's [supervisors] poll_interval;
#   unset = rouse's default), CONFIGS ("A B C"), ACCESS_LOG (0; 1 = rouse's access log, with
#   each request's held_ms, in the kept rouse logs), WAIT_IDLE (120 s), ROUSE_BIN, BACKEND_BIN,
#   CARGO_TARGET_DIR, KEEP_TMP=1. See bench/README.md.
set -euo pipefail

CLIENTS=${CLIENTS:-40}
DURATION=${DURATION:-10s}
LATENCY_MS=${LATENCY_MS:-100}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
WRK_TIMEOUT=${WRK_TIMEOUT:-2s}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-1s}
POLL_INTERVAL=${POLL_INTERVAL:-}
CONFIGS=${CONFIGS:-A B C}
ACCESS_LOG=${ACCESS_LOG:-0}
WAIT_IDLE=${WAIT_IDLE:-120}
KEEP_TMP=${KEEP_TMP:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"
COMMAND_LINE="$(for v in CLIENTS DURATION LATENCY_MS ROUNDS WORKERS WRK_TIMEOUT IDLE_TIMEOUT POLL_INTERVAL CONFIGS ACCESS_LOG WAIT_IDLE CARGO_TARGET_DIR ROUSE_BIN BACKEND_BIN; do
    if [[ -n ${!v:-} ]]; then printf '%s=%q ' "$v" "${!v}"; fi; done)bench/burst.sh"
# the defaults are filled in above, so the line above always lists them: the exact settings used

SCRIPT_NAME=burst.sh
# shellcheck source=bench/wake-lib.sh
source "$BENCH_DIR/wake-lib.sh"

for v in CLIENTS LATENCY_MS ROUNDS WORKERS WAIT_IDLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((ROUNDS >= 1 && CLIENTS >= 1 && WORKERS >= 1)) || die "ROUNDS, CLIENTS and WORKERS must be at least 1"
[[ $DURATION =~ ^[0-9]+[smh]?$ ]] || die "DURATION must look like 10s (got '$DURATION')"
[[ $WRK_TIMEOUT =~ ^[0-9]+(ms|s)?$ ]] || die "WRK_TIMEOUT must look like 2s (got '$WRK_TIMEOUT')"
[[ $IDLE_TIMEOUT =~ ^[0-9]+(ms|s)$ ]] || die "IDLE_TIMEOUT must look like 1s or 500ms (got '$IDLE_TIMEOUT')"
[[ -z $POLL_INTERVAL || $POLL_INTERVAL =~ ^[0-9]+(ms|s)$ ]] || die "POLL_INTERVAL must look like 500ms or 1s (got '$POLL_INTERVAL')"
[[ $ACCESS_LOG == [01] ]] || die "ACCESS_LOG must be 0 or 1 (got '$ACCESS_LOG')"
for c in $CONFIGS; do [[ $c == [ABC] ]] || die "CONFIGS lists A, B and/or C (got '$CONFIGS')"; done
[[ -n ${CONFIGS// /} ]] || die "CONFIGS is empty"
command -v python3 >/dev/null 2>&1 || die "python3 is needed (free ports, /stats and /status, the report)"
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
[[ -x $PYTHON ]] || die "cannot find python3's interpreter (sys.executable = '$PYTHON')"

# ---------------------------------------------------------------------------------------------
# 0. Tools: wrk and supervisord (Debian packages `wrk` and `supervisor`); never the system
#    supervisord
# ---------------------------------------------------------------------------------------------
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v wrk >/dev/null 2>&1 || die "wrk still missing after apt-get install"
need_supervisord
WRK=$(command -v wrk)

# ---------------------------------------------------------------------------------------------
# 1. Binaries: rouse and rouse-test-backend, release build
# ---------------------------------------------------------------------------------------------
build_binaries

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started here is stopped on exit, even on failure.
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/rouse-burst.XXXXXX)
ISSUES=$TMP/issues.txt
RUNS=$TMP/runs.txt   # one line per measured run: NAME CONFIG ROUND
: >"$ISSUES"
: >"$RUNS"
ROUSE_PID=""
SUPD_PID=""
WRK_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $WRK_PID ]] && kill -0 "$WRK_PID" 2>/dev/null; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
    fi
    stop_rouse
    stop_supervisord
    if [[ $rc -eq 0 && $KEEP_TMP != 1 ]]; then
        rm -rf "$TMP"
    else
        log "kept $TMP (configs, rouse, supervisord and backend logs, raw wrk, /stats and /status outputs)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 2. supervisord with app0..app2
# ---------------------------------------------------------------------------------------------
read -r P_SD P_APP0 P_APP1 P_APP2 < <(free_ports 4)
[[ -n ${P_APP2:-} ]] || die "could not pick free ports"
P_APPS=("$P_APP0" "$P_APP1" "$P_APP2")
SD_USER=bench
SD_PASS=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(8))')
SDCONF=$TMP/supervisord.conf
{
    supervisord_conf_head "$P_SD" "$TMP/"
    for i in 0 1 2; do
        cat <<EOF

[program:app$i]
command = $BACKEND --listen 127.0.0.1:${P_APPS[$i]} --id app$i --concurrency $WORKERS --latency-ms $LATENCY_MS
directory = $TMP
autostart = false
startsecs = 1
autorestart = false
stopasgroup = true
killasgroup = true
redirect_stderr = true
stdout_logfile = $TMP/app$i.log
EOF
    done
} >"$SDCONF"

sdctl() {  # ARGS... : supervisorctl against this supervisord (exits 3 when a program is not running)
    timeout 10 "$SUPERVISORCTL" -c "$SDCONF" "$@" 2>&1
}

# wait_all_stopped SECONDS : bounded wait until `supervisorctl status` says STOPPED for app0..app2
# (or EXITED: supervisord's word for a process that exited by itself, which rouse would see as
# a failure, not a stop) and their ports refuse connections
wait_all_stopped() {
    local bound=$1 out="" n
    for _ in $(seq $((bound * 5))); do
        out=$(sdctl status app0 app1 app2 || true)
        n=$(grep -cE '^app[012] +STOPPED ' <<<"$out" || true)
        if ((n == 3)) && ! port_accepts "$P_APP0" && ! port_accepts "$P_APP1" && ! port_accepts "$P_APP2"; then
            return 0
        fi
        kill -0 "$SUPD_PID" 2>/dev/null || break
        sleep 0.2
    done
    log "supervisorctl status: $(tr '\n' ';' <<<"$out")"
    return 1
}

log "supervisord on 127.0.0.1:$P_SD: app0..app2 = rouse-test-backend --concurrency $WORKERS --latency-ms $LATENCY_MS on :$P_APP0 :$P_APP1 :$P_APP2"
"$SUPERVISORD" -c "$SDCONF" -n >"$TMP/supervisord.out" 2>&1 &
SUPD_PID=$!
wait_listen "$P_SD" "$SUPD_PID" || die "supervisord does not listen on 127.0.0.1:$P_SD; output: $(tail -20 "$TMP/supervisord.out")"
wait_all_stopped 10 || die "supervisord: app0..app2 are not STOPPED at start"

# ---------------------------------------------------------------------------------------------
# 3. One run: a fresh rouse with configuration A, B or C, on a cold upstream, one wrk
# ---------------------------------------------------------------------------------------------
config_keys() {  # CONFIG : "UPSTREAM_KEYS|SERVER_KEYS" (TOML lines)
    case $1 in
        A) echo "# target_in_flight: the default (10)|max_conns = $WORKERS" ;;
        B) echo "target_in_flight = $WORKERS|# no max_conns" ;;
        C) echo "target_in_flight = 1000|# no max_conns" ;;
    esac
}
declare -A DESCR=(
    [A]="max_conns = $WORKERS on each server"
    [B]="no max_conns, target_in_flight = $WORKERS"
    [C]="no max_conns, target_in_flight = 1000 (old behaviour)"
)

write_rouse_conf() {  # CONFIG FILE P_ROUSE P_ADMIN
    local keys up sv i
    keys=$(config_keys "$1")
    up=${keys%%|*}
    sv=${keys#*|}
    {
        cat <<EOF
[proxy]
listen = ["127.0.0.1:$3"]

[admin]
listen = "127.0.0.1:$4"

[log]
access_log = $([[ $ACCESS_LOG == 1 ]] && echo true || echo false)

[supervisors.bench]
url = "http://127.0.0.1:$P_SD/RPC2"
username = "$SD_USER"
password = "$SD_PASS"
$([[ -n $POLL_INTERVAL ]] && echo "poll_interval = \"$POLL_INTERVAL\"" || echo "# poll_interval: rouse's default")

[[upstream]]
name = "app"
supervisor = "bench"
min_servers = 0
max_servers = 3
idle_timeout = "$IDLE_TIMEOUT"
ready = "tcp"
$up
EOF
        for i in 0 1 2; do
            cat <<EOF

[[upstream.server]]
address = "127.0.0.1:${P_APPS[$i]}"   # program app$i (the default name)
$sv
EOF
        done
    } >"$2"
}

http_get() {  # URL OUTFILE : GET, bounded (2 s); writes the body, or nothing when it fails
    "$PYTHON" - "$1" "$2" <<'EOF' || true
import sys, urllib.request
try:
    body = urllib.request.urlopen(sys.argv[1], timeout=2).read()
except Exception as e:  # a backend that was never started refuses: recorded as absent
    sys.stderr.write(f"[burst.sh] GET {sys.argv[1]}: {e} (recorded as absent; a server rouse did not start refuses)\n")
    sys.exit(0)
open(sys.argv[2], "wb").write(body)
EOF
}

run_one() {  # CONFIG ROUND
    local cfg=$1 round=$2 name="$1-r$2" conf p_rouse p_admin i t0 t1 rc=0
    conf=$TMP/$name.toml
    read -r p_rouse p_admin < <(free_ports 2)
    [[ -n ${p_admin:-} ]] || die "could not pick free ports"
    write_rouse_conf "$cfg" "$conf" "$p_rouse" "$p_admin"
    [[ -f $TMP/config-$cfg.toml ]] || cp "$conf" "$TMP/config-$cfg.toml"
    "$ROUSE" check -c "$conf" >"$TMP/$name.check.txt" 2>&1 || {
        sed 's/^/    /' "$TMP/$name.check.txt" >&2; die "rouse check rejected $conf (shown above)"; }

    wait_all_stopped 60 || die "$name: app0..app2 not STOPPED 60 s before the run"
    RUST_LOG=info "$ROUSE" run -c "$conf" >"$TMP/$name.rouse.log" 2>&1 &
    ROUSE_PID=$!
    wait_listen "$p_rouse" || die "rouse ($name) does not listen on 127.0.0.1:$p_rouse; log: $(tail -20 "$TMP/$name.rouse.log")"
    wait_listen "$p_admin" || die "rouse ($name) admin API does not listen on 127.0.0.1:$p_admin"
    # cold: every program STOPPED (checked again now that rouse runs), nothing held
    wait_all_stopped 10 || die "$name: app0..app2 not STOPPED after rouse started"

    log "round $round/$ROUNDS, config $cfg (${DESCR[$cfg]}): $WRK -t2 -c$CLIENTS -d$DURATION --timeout $WRK_TIMEOUT --latency http://127.0.0.1:$p_rouse/"
    t0=$("$PYTHON" -c 'import time; print(int(time.time() * 1000))')
    "$WRK" -t2 "-c$CLIENTS" "-d$DURATION" --timeout "$WRK_TIMEOUT" --latency "http://127.0.0.1:$p_rouse/" \
        >"$TMP/$name.wrk.txt" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    t1=$("$PYTHON" -c 'import time; print(int(time.time() * 1000))')
    # Right away, before rouse stops them for idleness: each backend's own counters, straight
    # from its port (not through rouse), then rouse's table and journal.
    for i in 0 1 2; do http_get "http://127.0.0.1:${P_APPS[$i]}/stats" "$TMP/$name.stats$i.json"; done
    http_get "http://127.0.0.1:$p_admin/status?events=200" "$TMP/$name.status.json"
    echo "$t0 $t1" >"$TMP/$name.t"
    ((rc == 0)) || issue "$name: wrk exited with status $rc: $(tail -3 "$TMP/$name.wrk.txt" | tr '\n' ' ')"
    [[ -s $TMP/$name.status.json ]] || issue "$name: rouse's /status did not answer after the run"
    kill -0 "$ROUSE_PID" 2>/dev/null || issue "$name: rouse was not running any more after wrk; log: $(tail -5 "$TMP/$name.rouse.log" | tr '\n' ' ')"
    echo "$name $cfg $round" >>"$RUNS"

    # The upstream goes cold again: rouse stops every program for idleness, through supervisord.
    wait_all_stopped 60 || issue "$name: app0..app2 not all STOPPED 60 s after wrk (rouse did not stop them for idleness)"
    stop_rouse
    if grep -E '^[^ ]+ +(WARN|ERROR) ' "$TMP/$name.rouse.log" >"$TMP/$name.warn.txt"; then
        issue "$name: rouse logged $(wc -l <"$TMP/$name.warn.txt") WARN/ERROR line(s); first: $(head -1 "$TMP/$name.warn.txt" | cut -c1-300)"
    fi
    grep -q 'Socket errors' "$TMP/$name.wrk.txt" && log "$name: $(grep 'Socket errors' "$TMP/$name.wrk.txt" | sed 's/^ *//')"
    grep -q 'Non-2xx' "$TMP/$name.wrk.txt" && log "$name: $(grep 'Non-2xx' "$TMP/$name.wrk.txt" | sed 's/^ *//')"
    log "$name: $(grep 'Requests/sec' "$TMP/$name.wrk.txt" | sed 's/  */ /g')"
}

# e.g. right after the build: give the 1-min load average a bounded chance to fall
wait_idle "$WAIT_IDLE"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_FILE="$OUT_DIR/burst-$STAMP.md"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
if load_busy "${LOADAVG_START%% *}"; then
    log "WARNING: the machine is busy (load average $LOADAVG_START on $NCPU CPUs); numbers will be noisy"
fi
T_START=$(date +%s)
for round in $(seq "$ROUNDS"); do
    for cfg in $CONFIGS; do run_one "$cfg" "$round"; done
done
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T_START))
kill -0 "$SUPD_PID" 2>/dev/null || issue "supervisord was not running any more at the end; output: $(tail -5 "$TMP/supervisord.out" | tr '\n' ' ')"
stop_supervisord
for p in "${P_APPS[@]}"; do
    port_accepts "$p" && issue "127.0.0.1:$p still accepts after supervisord exited"
done
# supervisord: an unexpected exit, a retry, a give-up, a CRIT other than "running as root"
if grep -E 'not expected|gave up|BACKOFF|FATAL|spawnerr|CRIT|ERRO' "$TMP/supervisord.log" \
    | grep -v 'Supervisor is running as root' >"$TMP/sdwarn.txt"; then
    issue "supervisord logged $(wc -l <"$TMP/sdwarn.txt") unexpected line(s); first: $(head -1 "$TMP/sdwarn.txt" | cut -c1-300)"
fi

# ---------------------------------------------------------------------------------------------
# 4. Report
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
{
    echo "# rouse cold-burst benchmark (issue 8), $STAMP"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    echo "- machine: $NCPU CPU(s), $(cpu_model), $(uname -sr); load average at start: $LOADAVG_START, at end: $LOADAVG_END; run took ${ELAPSED}s"
    busy_warning "$LOADAVG_START" "$LOADAVG_END"
    SD_PY=$(head -1 "$SUPERVISORD" | sed -n 's/^#! *\([^ ]*\).*/\1/p')
    echo "- versions: $(first_line "$ROUSE" --version) (git $(git_rev)); supervisord $(first_line "$SUPERVISORD" --version)${SD_PY:+ (on $(first_line "$SD_PY" --version))}; $(first_line "$BACKEND" --version); $(first_line "$WRK" -v); $(first_line rustc --version)"
    echo "- supervisord: its own instance, \`[program:app0..app2]\` = \`rouse-test-backend --listen 127.0.0.1:PORT --id appN --concurrency $WORKERS --latency-ms $LATENCY_MS\` (serves $WORKERS requests at a time, each taking $LATENCY_MS ms, and queues the rest inside itself in arrival order, like gunicorn with $WORKERS sync workers), \`autostart=false\`, \`startsecs=1\`, \`autorestart=false\`, \`stopasgroup=true\`, \`killasgroup=true\`"
    echo "- rouse (release build), a fresh one per run: \`[supervisors.bench]\`$([[ -n $POLL_INTERVAL ]] && echo " with \`poll_interval = \"$POLL_INTERVAL\"\`"; [[ -z $POLL_INTERVAL ]] && echo " (default poll_interval)"), one upstream with three servers, \`max_servers = 3\`, \`min_servers = 0\`, \`idle_timeout = \"$IDLE_TIMEOUT\"\`, \`ready = \"tcp\"\`, \`[admin] listen\`, \`[log] access_log = $([[ $ACCESS_LOG == 1 ]] && echo true || echo false)\`, \`RUST_LOG=info\`; configurations:"
    for c in $CONFIGS; do echo "  - **$c**: ${DESCR[$c]}"; done
    echo "- per run, on a cold upstream (before it, all three programs STOPPED in \`supervisorctl status\` and their ports refusing): \`wrk -t2 -c$CLIENTS -d$DURATION --timeout $WRK_TIMEOUT --latency http://127.0.0.1:PORT/\`; right after it, each backend's \`GET /stats\` straight from its port, and rouse's \`GET /status?events=200\`; then a bounded wait until rouse has stopped all three for idleness. Rounds run A, B, C in turn, so that drift hits all of them."
    echo "- wrk: a response slower than \`--timeout\` is counted as a timeout and left out of the latency percentiles (so p99 is at most $WRK_TIMEOUT, and when most requests time out the percentiles describe the fast few); wrk also counts requests still open past the timeout at its checks every 2 s, so the count is approximate. Requests still open when wrk stops are in neither."
    echo "- backend queue: \`max_queued_us\` of \`/stats\`, the longest a request waited inside a backend for a worker (counted when it gets one); the maximum over the three backends is shown."
    echo "- servers ready: from rouse's journal (\`/status\` events, millisecond times): from the first \`start\` event of the run to the \`ready\` event of the last server to become ready (all three when three were started); \`t0\` is the moment wrk was launched."
    echo
    "$PYTHON" - "$TMP" "$RUNS" "$CONFIGS" "$ROUNDS" <<'EOF'
import json, os, re, statistics, sys
tmp, runs_file, configs, rounds = sys.argv[1], sys.argv[2], sys.argv[3].split(), int(sys.argv[4])

def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

def parse_wrk(text):
    r = {"rps": None, "requests": None, "timeouts": 0, "connect": 0, "read": 0, "write": 0, "non2xx": 0,
         "p50": None, "p99": None}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m: r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m: r["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m: r["connect"], r["read"], r["write"], r["timeouts"] = map(int, m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m: r["non2xx"] = int(m.group(1))
    for p in ("50", "99"):
        m = re.search(rf"^\s+{p}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if m: r["p" + p] = ms(*m.groups())
    return r

def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

rows = []
for line in open(runs_file):
    name, cfg, rnd = line.split()
    w = parse_wrk(open(os.path.join(tmp, name + ".wrk.txt"), errors="replace").read())
    t0, t1 = map(int, open(os.path.join(tmp, name + ".t")).read().split())
    stats = [load_json(os.path.join(tmp, f"{name}.stats{i}.json")) for i in range(3)]
    status = load_json(os.path.join(tmp, name + ".status.json")) or {}
    ev = [e for e in status.get("events", []) if e.get("at_unix_ms", 0) >= t0 - 5]
    ev.sort(key=lambda e: e["at_unix_ms"])
    starts = [e for e in ev if e["what"] == "start"]
    ready = {}
    for e in ev:
        if e["what"] == "ready" and e["server"] not in ready:
            ready[e["server"]] = e["at_unix_ms"]
    ups = (status.get("upstreams") or [{}])[0]
    routed = [s.get("requests", 0) for s in ups.get("servers", [])]
    first_start = starts[0]["at_unix_ms"] if starts else None
    row = dict(name=name, cfg=cfg, round=int(rnd), **w,
               queued_ms=[(s["max_queued_us"] / 1000 if s else None) for s in stats],
               max_in_flight=[(s["max_in_flight"] if s else None) for s in stats],
               backend_requests=[(s["requests"] if s else None) for s in stats],
               routed=routed, started=len({e["server"] for e in starts}),
               start_reasons=sorted({e["detail"] for e in starts}),
               t0_to_start=(first_start - t0) if first_start else None,
               ready_after=sorted(v - first_start for v in ready.values()) if first_start else [],
               held_timeouts=ups.get("held_timeouts"), other_events=[f'{e["what"]} {e["server"]} {e["detail"]}'
                   for e in ev if e["what"] not in ("start", "ready", "drain", "stop", "stopped")])
    row["maxq"] = max([q for q in row["queued_ms"] if q is not None], default=None)
    row["all_ready"] = row["ready_after"][-1] if row["ready_after"] else None
    rows.append(row)

def med(vals, fmt="{:.0f}"):
    v = [x for x in vals if x is not None]
    if not v:
        return "n/a"
    m = statistics.median(v)
    if len(v) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(v))}–{fmt.format(max(v))})"

descr = {"A": "A: max_conns = W", "B": "B: target_in_flight = W", "C": "C: target_in_flight = 1000 (old)"}
print(f"## Results: median (min–max) over {rounds} round(s)")
print()
print("| config | req/s | timeouts | non-2xx | p50 ms | p99 ms | max queue in a backend, ms | servers started | first start → last server ready, ms |")
print("|---|---|---|---|---|---|---|---|---|")
for c in configs:
    rs = [r for r in rows if r["cfg"] == c]
    if not rs:
        continue
    print(f"| {descr[c]} | {med([r['rps'] for r in rs], '{:.1f}')} | {med([r['timeouts'] for r in rs])} | "
          f"{med([r['non2xx'] for r in rs])} | {med([r['p50'] for r in rs])} | {med([r['p99'] for r in rs])} | "
          f"{med([r['maxq'] for r in rs])} | {med([r['started'] for r in rs])} | "
          f"{med([r['all_ready'] for r in rs])} |")
print()
print("W is the backends' concurrency (`--concurrency`).")
print()
print("## Per run")
print()
print("| run | req/s | requests | timeouts | non-2xx | socket errors c/r/w | p50 ms | p99 ms | max queue per backend, ms | max in flight per backend | requests per backend | rouse: routed per server | wrk start → first start, ms | first start → each ready, ms | start reasons |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
fmt = lambda v, f="{:.0f}": "–" if v is None else f.format(v)
for r in rows:
    print(f"| {r['name']} | {fmt(r['rps'], '{:.1f}')} | {fmt(r['requests'])} | {r['timeouts']} | {r['non2xx']} | "
          f"{r['connect']}/{r['read']}/{r['write']} | {fmt(r['p50'], '{:.1f}')} | {fmt(r['p99'], '{:.1f}')} | "
          f"{' / '.join(fmt(q) for q in r['queued_ms'])} | {' / '.join(fmt(q) for q in r['max_in_flight'])} | "
          f"{' / '.join(fmt(q) for q in r['backend_requests'])} | {' / '.join(map(str, r['routed']))} | "
          f"{fmt(r['t0_to_start'])} | {', '.join(map(str, r['ready_after'])) or '–'} | "
          f"{'; '.join(r['start_reasons']) or '–'} |")
others = [(r["name"], e) for r in rows for e in r["other_events"]]
if others:
    print()
    print("Other journal events during the runs: " + "; ".join(f"{n}: {e}" for n, e in others))
print()
EOF
    echo "## Issues"
    echo
    if [[ -s $ISSUES ]]; then cat "$ISSUES"; else echo "none"; fi
    echo
    echo "<details><summary>configs (the supervisord password is random per run)</summary>"
    echo
    echo '```ini'
    cat "$SDCONF"
    echo '```'
    for c in $CONFIGS; do
        echo
        echo "Configuration $c:"
        echo
        echo '```toml'
        cat "$TMP/config-$c.toml"
        echo '```'
    done
    echo
    echo "</details>"
    echo
    echo "<details><summary>raw wrk outputs</summary>"
    echo
    echo '```'
    while read -r name _ _; do
        echo "== $name"
        cat "$TMP/$name.wrk.txt"
    done <"$RUNS"
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
