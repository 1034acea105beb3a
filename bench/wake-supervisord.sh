#!/usr/bin/env bash
# Wake-latency benchmark through a real supervisord (issue 4, "Must show": wake latency through
# supervisord, compared with the backend's own time to listen and with what waiting out startsecs
# would cost). The supervisord counterpart of bench/wake.sh, sharing its helpers
# (bench/wake-lib.sh) and its timing probe (bench/wake-probe.py).
#
# Per backend (rouse-test-backend, python3 -m http.server), each run with its own supervisord
# (`supervisord -c TMP/… -n` on a free 127.0.0.1 port, [program:app0], autostart=false,
# startsecs=1) and its own rouse (upstream "app", supervisor = "bench", program app0 by default),
# and per cycle:
#   (a) the backend's own time to listen: exec -> its port accepts a TCP connection
#   (b) cold first request through rouse -> supervisord (startProcess(app0, wait=false), then
#       rouse's TCP readiness probe), ready = "tcp"
#   (c) (b) - median(a): rouse + supervisord overhead
#   (d) the same cold request with ready = "supervisor" (rouse waits for supervisord's RUNNING,
#       i.e. out startsecs): what waiting out startsecs costs
#   (e) a warm request through rouse
# Between cycles rouse stops app0 through supervisord after idle_timeout; the probe waits
# (bounded) until `supervisorctl status app0` says STOPPED and the port refuses.
#
# Knobs (environment): CYCLES (20), SUP_CYCLES (5), WARMUP (1), IDLE_TIMEOUT (100ms),
#   STARTSECS (1, supervisord's integer seconds), SETTLE_MS (100), WAIT_IDLE (120 s),
#   POLL_INTERVAL (rouse's [supervisors] poll_interval; unset = rouse's default), ROUSE_BIN,
#   BACKEND_BIN, CARGO_TARGET_DIR, KEEP_TMP=1. See bench/README.md.
set -euo pipefail

CYCLES=${CYCLES:-20}
SUP_CYCLES=${SUP_CYCLES:-5}
WARMUP=${WARMUP:-1}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-100ms}
STARTSECS=${STARTSECS:-1}
SETTLE_MS=${SETTLE_MS:-100}
WAIT_IDLE=${WAIT_IDLE:-120}
POLL_INTERVAL=${POLL_INTERVAL:-}
KEEP_TMP=${KEEP_TMP:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"
COMMAND_LINE="$(for v in CYCLES SUP_CYCLES WARMUP IDLE_TIMEOUT STARTSECS SETTLE_MS WAIT_IDLE POLL_INTERVAL CARGO_TARGET_DIR ROUSE_BIN BACKEND_BIN; do
    if [[ -n ${!v:-} ]]; then printf '%s=%q ' "$v" "${!v}"; fi; done)bench/wake-supervisord.sh"
# the defaults are filled in above, so the line above always lists them: the exact settings used

SCRIPT_NAME=wake-supervisord.sh
# shellcheck source=bench/wake-lib.sh
source "$BENCH_DIR/wake-lib.sh"

for v in CYCLES WARMUP SETTLE_MS SUP_CYCLES WAIT_IDLE STARTSECS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((CYCLES >= 1)) || die "CYCLES must be at least 1"
[[ $IDLE_TIMEOUT =~ ^[0-9]+(ms|s)$ ]] || die "IDLE_TIMEOUT must look like 100ms or 1s (got '$IDLE_TIMEOUT')"
[[ -z $POLL_INTERVAL || $POLL_INTERVAL =~ ^[0-9]+(ms|s)$ ]] || die "POLL_INTERVAL must look like 500ms or 1s (got '$POLL_INTERVAL')"
command -v python3 >/dev/null 2>&1 || die "python3 is needed (the probe and the second backend)"
# The interpreter itself, not a wrapper such as a pyenv shim (a shell script that adds ~150 ms
# and its own noise to every start of http.server)
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
[[ -x $PYTHON ]] || die "cannot find python3's interpreter (sys.executable = '$PYTHON')"

# ---------------------------------------------------------------------------------------------
# 0. supervisord (Debian package `supervisor`); never the system service
# ---------------------------------------------------------------------------------------------
need_supervisord

# ---------------------------------------------------------------------------------------------
# 1. Binaries
# ---------------------------------------------------------------------------------------------
build_binaries

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started here is stopped on exit, even on failure.
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/rouse-wake-sd.XXXXXX)
RESULTS=$TMP/results.tsv
ISSUES=$TMP/issues.txt
: >"$RESULTS"
: >"$ISSUES"
ROUSE_PID=""
PROBE_PID=""
SUPD_PID=""
DIRECT_PIDFILE=$TMP/direct.pid   # the backend the probe is timing, if any (own process group)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $PROBE_PID ]] && kill -0 "$PROBE_PID" 2>/dev/null; then
        kill -TERM "$PROBE_PID" 2>/dev/null || true
        wait "$PROBE_PID" 2>/dev/null || true
    fi
    if [[ -s $DIRECT_PIDFILE ]]; then kill_group "$(cat "$DIRECT_PIDFILE")"; fi
    stop_rouse
    stop_supervisord
    if [[ $rc -eq 0 && $KEEP_TMP != 1 ]]; then
        rm -rf "$TMP"
    else
        log "kept $TMP (configs, rouse and supervisord logs, raw results)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PROBE=$BENCH_DIR/wake-probe.py
[[ -f $PROBE ]] || die "no probe at $PROBE"

# ---------------------------------------------------------------------------------------------
# 2. One supervisord + one rouse per (backend, readiness); the probe runs its cycles against them.
# ---------------------------------------------------------------------------------------------
mkdir -p "$TMP/www"
echo "wake bench" >"$TMP/www/index.txt"
SD_USER=bench
SD_PASS=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(8))')
FIRST_CONFIGS=()

backend_argv() {  # KIND PORT : JSON argv (the probe's direct start)
    case $1 in
        test) "$PYTHON" -c 'import json,sys; print(json.dumps([sys.argv[1], "--listen", "127.0.0.1:" + sys.argv[2], "--id", "wake-test"]))' "$BACKEND" "$2" ;;
        http.server) "$PYTHON" -c 'import json,sys; print(json.dumps([sys.argv[1], "-m", "http.server", sys.argv[2], "--bind", "127.0.0.1", "--directory", sys.argv[3]]))' "$PYTHON" "$2" "$TMP/www" ;;
    esac
}
backend_command() {  # KIND PORT : the same, as supervisord's command= line (paths have no spaces)
    case $1 in
        test) echo "$BACKEND --listen 127.0.0.1:$2 --id wake-test" ;;
        http.server) echo "$PYTHON -m http.server $2 --bind 127.0.0.1 --directory $TMP/www" ;;
    esac
}
declare -A EXPECT=([test]="wake-test" [http.server]="Directory listing")

sdctl() {  # CONF ARGS... : supervisorctl against this run's supervisord (exits 3 when not running)
    local conf=$1
    shift
    timeout 10 "$SUPERVISORCTL" -c "$conf" "$@" 2>&1
}

# wait_sd_state CONF STATE SECONDS : bounded wait until `supervisorctl status app0` says STATE
wait_sd_state() {
    local conf=$1 state=$2 bound=$3 out=""
    for _ in $(seq $((bound * 5))); do
        out=$(sdctl "$conf" status app0 || true)
        [[ " $out " == *" $state "* ]] && return 0
        [[ -n $SUPD_PID ]] && ! kill -0 "$SUPD_PID" 2>/dev/null && break
        sleep 0.2
    done
    log "supervisorctl status app0: $out"
    return 1
}

run_config() {  # KIND READY CYCLES
    local kind=$1 ready=$2 cycles=$3 name="$1-$2" p_rouse p_backend p_direct p_sd p_sdd conf sdconf rc=0
    read -r p_rouse p_backend p_direct p_sd p_sdd < <(free_ports 5)
    [[ -n ${p_sdd:-} ]] || die "could not pick free ports"
    sdconf=$TMP/$name.supervisord.conf
    conf=$TMP/$name.toml
    {
        supervisord_conf_head "$p_sd" "$TMP/$name."
        cat <<EOF

[program:app0]
command = $(backend_command "$kind" "$p_backend")
directory = $TMP/www
autostart = false
startsecs = $STARTSECS
autorestart = false
stopasgroup = true
killasgroup = true
redirect_stderr = true
stdout_logfile = $TMP/$name.app0.log

; (f): the same backend started by the probe through XML-RPC, without rouse (rouse ignores it)
[program:direct0]
command = $(backend_command "$kind" "$p_sdd")
directory = $TMP/www
autostart = false
startsecs = $STARTSECS
autorestart = false
stopasgroup = true
killasgroup = true
redirect_stderr = true
stdout_logfile = $TMP/$name.direct0.log
EOF
    } >"$sdconf"
    cat >"$conf" <<EOF
[proxy]
listen = ["127.0.0.1:$p_rouse"]

[log]
access_log = false

[supervisors.bench]
url = "http://127.0.0.1:$p_sd/RPC2"
username = "$SD_USER"
password = "$SD_PASS"
$([[ -n $POLL_INTERVAL ]] && echo "poll_interval = \"$POLL_INTERVAL\"" || echo "# poll_interval: rouse's default")

[[upstream]]
name = "app"
supervisor = "bench"
min_servers = 0
idle_timeout = "$IDLE_TIMEOUT"
ready = "$ready"

[[upstream.server]]
address = "127.0.0.1:$p_backend"
# program: the default, "<upstream name><index>" = "app0"
EOF
    ((${#FIRST_CONFIGS[@]})) || FIRST_CONFIGS=("$sdconf" "$conf")
    "$ROUSE" check -c "$conf" >"$TMP/$name.check.txt" 2>&1 || {
        sed 's/^/    /' "$TMP/$name.check.txt" >&2; die "rouse check rejected $conf (shown above)"; }

    log "$name: supervisord :$p_sd, rouse :$p_rouse -> app0 :$p_backend (ready=$ready), direct timing on :$p_direct, $cycles cycle(s) + $WARMUP warm-up"
    "$SUPERVISORD" -c "$sdconf" -n >"$TMP/$name.supervisord.out" 2>&1 &
    SUPD_PID=$!
    wait_listen "$p_sd" "$SUPD_PID" || die "supervisord ($name) does not listen on 127.0.0.1:$p_sd; output: $(tail -20 "$TMP/$name.supervisord.out")"
    wait_sd_state "$sdconf" STOPPED 10 || die "supervisord ($name): app0 is not STOPPED at start"

    RUST_LOG=info "$ROUSE" run -c "$conf" >"$TMP/$name.rouse.log" 2>&1 &
    ROUSE_PID=$!
    wait_listen "$p_rouse" || die "rouse ($name) does not listen on 127.0.0.1:$p_rouse; log: $(tail -20 "$TMP/$name.rouse.log")"

    "$PYTHON" "$PROBE" --backend "$kind" --ready "$ready" \
        --rouse-port "$p_rouse" --rouse-pid "$ROUSE_PID" --backend-port "$p_backend" \
        --direct-cmd "$(backend_argv "$kind" "$p_direct")" --direct-port "$p_direct" --direct-cwd "$TMP/www" \
        --direct-log "$TMP/$name.direct.log" --pidfile "$DIRECT_PIDFILE" --expect "${EXPECT[$kind]}" \
        --cycles "$cycles" --warmup "$WARMUP" --settle-ms "$SETTLE_MS" \
        --cold-cmd "$("$PYTHON" -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$SUPERVISORCTL" -c "$sdconf" status app0)" \
        --cold-word STOPPED --watch-pid "supervisord=$SUPD_PID" \
        --sd-url "http://$SD_USER:$SD_PASS@127.0.0.1:$p_sd/RPC2" --sd-program direct0 --sd-port "$p_sdd" \
        >"$TMP/$name.probe.tsv" &
    PROBE_PID=$!
    wait "$PROBE_PID" || rc=$?
    PROBE_PID=""
    grep '^ROW' "$TMP/$name.probe.tsv" | cut -f2- >>"$RESULTS" || true
    grep '^ISSUE' "$TMP/$name.probe.tsv" | cut -f2- | while IFS= read -r l; do issue "$l"; done || true
    ((rc == 0)) || issue "$name: the probe exited with status $rc"

    # The last cycle's server goes idle too: let rouse stop it (rouse leaves supervisord's
    # programs as they are when it exits), then stop rouse and check that app0 stays STOPPED.
    kill -0 "$ROUSE_PID" 2>/dev/null || issue "$name: rouse was not running any more at the end; log: $(tail -5 "$TMP/$name.rouse.log" | tr '\n' ' ')"
    wait_sd_state "$sdconf" STOPPED 30 || issue "$name: app0 not STOPPED 30 s after the last request (rouse did not stop it for idleness)"
    stop_rouse
    wait_sd_state "$sdconf" STOPPED 2 || issue "$name: app0 not STOPPED after rouse exited"
    kill -0 "$SUPD_PID" 2>/dev/null || issue "$name: supervisord was not running any more at the end; output: $(tail -5 "$TMP/$name.supervisord.out" | tr '\n' ' ')"
    stop_supervisord
    port_accepts "$p_backend" && issue "$name: 127.0.0.1:$p_backend still accepts after supervisord exited"
    port_accepts "$p_sdd" && issue "$name: 127.0.0.1:$p_sdd (direct0) still accepts after supervisord exited"

    # rouse's and supervisord's views: one start/spawn per cycle, start -> ready, warnings
    local starts spawns expected=$((cycles + WARMUP)) measured
    measured=$(grep -c "^ROW" "$TMP/$name.probe.tsv" || true)
    starts=$(grep -c 'starting server' "$TMP/$name.rouse.log" || true)
    spawns=$(grep -c "spawned: 'app0'" "$TMP/$name.supervisord.log" || true)
    if ((starts == 0)); then
        issue "$name: no 'starting server' line in rouse's log; cannot check that one start was issued per cycle"
    elif ((starts != expected && measured == cycles)); then
        issue "$name: rouse logged $starts start(s) for $expected cold request(s) (expected one each)"
    fi
    if ((spawns != expected && measured == cycles)); then
        issue "$name: supervisord spawned app0 $spawns time(s) for $expected cold request(s) (expected one each)"
    fi
    grep 'server ready' "$TMP/$name.rouse.log" | sed -n 's/.* ms=\([0-9.]*\).*/\1/p' \
        | awk -v k="$kind" -v r="$ready" -v w="$WARMUP" 'NR > w { printf "READY\t%s\t%s\t%s\n", k, r, $1 }' >>"$TMP/ready.tsv"
    # From the logs: rouse's "starting server" (UTC, microseconds) -> supervisord's "spawned"
    # (local time, milliseconds), paired in order when both logged one per cycle; and
    # supervisord's own spawned -> RUNNING.
    "$PYTHON" - "$TMP/$name.rouse.log" "$TMP/$name.supervisord.log" "$kind" "$ready" "$WARMUP" >>"$TMP/running.tsv" <<'EOF'
import datetime, sys
rlog, slog, kind, ready, warmup = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
starts = []
for line in open(rlog, errors="replace"):
    if "starting server" in line:
        try:
            starts.append(datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
                          .replace(tzinfo=datetime.timezone.utc).timestamp())
        except ValueError:
            pass
spawns, spawned, n = [], None, 0
for line in open(slog, errors="replace"):
    try:
        t = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time
    except ValueError:
        continue
    if "spawned: 'app0'" in line:
        spawned = t
        spawns.append(t)
    elif "success: app0 entered RUNNING" in line and spawned is not None:
        n += 1
        if n > warmup:
            print(f"RUNNING\t{kind}\t{ready}\t{(t - spawned) * 1000:.1f}")
        spawned = None
if len(starts) == len(spawns):
    for a, b in list(zip(starts, spawns))[warmup:]:
        print(f"SPAWN\t{kind}\t{ready}\t{(b - a) * 1000:.1f}")
EOF
    if grep -E '^[^ ]+ +(WARN|ERROR) ' "$TMP/$name.rouse.log" >"$TMP/$name.warn.txt"; then
        issue "$name: rouse logged $(wc -l <"$TMP/$name.warn.txt") WARN/ERROR line(s); first: $(head -1 "$TMP/$name.warn.txt" | cut -c1-300)"
    fi
    # supervisord: an unexpected exit, a retry, a give-up, a CRIT other than "running as root"
    if grep -E 'not expected|gave up|BACKOFF|FATAL|spawnerr|CRIT|ERRO' "$TMP/$name.supervisord.log" \
        | grep -v 'Supervisor is running as root' >"$TMP/$name.sdwarn.txt"; then
        issue "$name: supervisord logged $(wc -l <"$TMP/$name.sdwarn.txt") unexpected line(s); first: $(head -1 "$TMP/$name.sdwarn.txt" | cut -c1-300)"
    fi
}

: >"$TMP/ready.tsv"
: >"$TMP/running.tsv"
# e.g. right after the build: give the 1-min load average a bounded chance to fall
wait_idle "$WAIT_IDLE"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_FILE="$OUT_DIR/wake-supervisord-$STAMP.md"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
if load_busy "${LOADAVG_START%% *}"; then
    log "WARNING: the machine is busy (load average $LOADAVG_START on $NCPU CPUs); numbers will be noisy"
fi
T_START=$(date +%s)
run_config test tcp "$CYCLES"
run_config http.server tcp "$CYCLES"
if ((SUP_CYCLES > 0)); then
    run_config test supervisor "$SUP_CYCLES"
    run_config http.server supervisor "$SUP_CYCLES"
fi
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T_START))

# ---------------------------------------------------------------------------------------------
# 3. Report
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
{
    echo "# rouse wake-latency benchmark through supervisord, $STAMP"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    echo "- machine: $NCPU CPU(s), $(cpu_model), $(uname -sr); load average at start: $LOADAVG_START, at end: $LOADAVG_END; run took ${ELAPSED}s"
    busy_warning "$LOADAVG_START" "$LOADAVG_END"
    SD_PY=$(head -1 "$SUPERVISORD" | sed -n 's/^#! *\([^ ]*\).*/\1/p')
    echo "- versions: $(first_line "$ROUSE" --version) (git $(git_rev)); supervisord $(first_line "$SUPERVISORD" --version)${SD_PY:+ (on $(first_line "$SD_PY" --version))}; $(first_line "$BACKEND" --version); $(first_line "$PYTHON" --version) (\`$PYTHON\`: http.server, probe); $(first_line rustc --version)"
    echo "- binaries: \`$ROUSE\`, \`$BACKEND\`, \`$SUPERVISORD\`"
    echo "- supervisord: one instance per run, \`supervisord -c TMP/….conf -n\`, \`[inet_http_server]\` on a free 127.0.0.1 port with a username and password, \`[program:app0]\` = the backend with \`autostart=false\`, \`startsecs=$STARTSECS\`, \`autorestart=false\`, \`stopasgroup=true\`, \`killasgroup=true\`"
    echo "- rouse: \`[supervisors.bench]\` (url, username, password$([[ -n $POLL_INTERVAL ]] && echo ", \`poll_interval = \"$POLL_INTERVAL\"\`"; [[ -z $POLL_INTERVAL ]] && echo ", default poll_interval")), one upstream \`app\` with \`supervisor = \"bench\"\`, one server (program: the default \`app0\`), \`min_servers = 0\`, \`idle_timeout = \"$IDLE_TIMEOUT\"\`, \`[log] access_log = false\`, \`RUST_LOG=info\`"
    echo "- per cycle: wait (bounded, 30 s) until \`supervisorctl status app0\` says STOPPED (rouse stopped it through supervisord for idleness) and its port refuses connections; (a) exec the same backend on another port and poll \`connect()\` every 0.5 ms until it accepts, then stop it; (f) the same backend as \`[program:direct0]\` on a fifth port: XML-RPC \`startProcess(\"direct0\", false)\` from the probe (python3 \`xmlrpc.client\`, fresh connection), poll \`connect()\` every 0.5 ms until it accepts, \`stopProcess(\"direct0\", true)\`; sleep ${SETTLE_MS} ms; (b)/(d) one \`GET /\` through rouse on a fresh connection until the whole body is read (python3 \`http.client\`, \`time.monotonic()\`); (e) one more \`GET /\` through rouse, fresh connection; then the same straight to the backend. $WARMUP warm-up cycle(s) per run are not counted."
    echo "- (c) = (b) − median of (a) over the same run. rouse's start→ready is read from its log (\`server ready … ms=\`, from the start being issued, i.e. before \`startProcess\`); supervisord's spawned and spawned→RUNNING from its log (millisecond timestamps; rouse's log is UTC, supervisord's local time, both converted)."
    echo
    "$PYTHON" - "$RESULTS" "$TMP/ready.tsv" "$TMP/running.tsv" "$STARTSECS" <<'EOF'
import math, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
ready_rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
sd_rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[3]) if l.strip()]
startsecs_ms = float(sys.argv[4]) * 1000

def p90(v):  # nearest rank
    s = sorted(v)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]

def stats(v):
    if not v:
        return "| 0 | n/a | n/a | n/a | n/a |"
    return f"| {len(v)} | {statistics.median(v):.2f} | {p90(v):.2f} | {min(v):.2f} | {max(v):.2f} |"

def med(v):
    return statistics.median(v) if v else float("nan")

names = {"test": "rouse-test-backend", "http.server": "python3 -m http.server"}
runs = {}
for k in ["test", "http.server"]:
    for r in ["tcp", "supervisor"]:
        sel = [x for x in rows if x[0] == k and x[1] == r]
        rdy = [float(x[3]) for x in ready_rows if x[1] == k and x[2] == r]
        run = [float(x[3]) for x in sd_rows if x[0] == "RUNNING" and x[1] == k and x[2] == r]
        spawn = [float(x[3]) for x in sd_rows if x[0] == "SPAWN" and x[1] == k and x[2] == r]
        if sel or rdy:
            runs[(k, r)] = dict(a=[float(x[3]) for x in sel], cold=[float(x[4]) for x in sel],
                                warm=[float(x[5]) for x in sel], direct=[float(x[6]) for x in sel],
                                sd=[float(x[8]) for x in sel if len(x) > 8],
                                ready=rdy, running=run, spawn=spawn)

print("## Results, ms: median, p90, min, max over the measured cycles")
print()
print("| backend | ready | measure | n | median | p90 | min | max |")
print("|---|---|---|---|---|---|---|---|")
for (k, r), m in runs.items():
    n = names[k]
    ma = med(m["a"])
    print(f"| {n} | {r} | (a) own time to listen {stats(m['a'])}")
    print(f"| {n} | {r} | (f) supervisord alone: startProcess(wait=false) → listening, no rouse {stats(m['sd'])}")
    if r == "tcp":
        print(f"| {n} | {r} | (b) cold first request through rouse → supervisord {stats(m['cold'])}")
        print(f"| {n} | {r} | **(c) rouse + supervisord overhead = (b) − median(a)** {stats([x - ma for x in m['cold']])}")
    else:
        print(f"| {n} | {r} | **(d) cold first request, waiting for RUNNING** {stats(m['cold'])}")
        print(f"| {n} | {r} | (d) − median(a) {stats([x - ma for x in m['cold']])}")
        print(f"| {n} | {r} | (d) − startsecs {stats([x - startsecs_ms for x in m['cold']])}")
    print(f"| {n} | {r} | (e) warm request through rouse {stats(m['warm'])}")
    print(f"| {n} | {r} | warm request straight to the backend {stats(m['direct'])}")
    print(f"| {n} | {r} | rouse's log: start issued → ready {stats(m['ready'])}")
    print(f"| {n} | {r} | logs: rouse's start issued → supervisord's spawned (±1 ms) {stats(m['spawn'])}")
    if r == "supervisor" or m["running"]:
        print(f"| {n} | {r} | supervisord's log: spawned → RUNNING (±1 ms) {stats(m['running'])}")
print()
print("## Summary")
print()
for k in ["test", "http.server"]:
    t, s = runs.get((k, "tcp")), runs.get((k, "supervisor"))
    if t:
        if not t["cold"]:
            print(f"- {names[k]}, ready = \"tcp\": no successful cycle")
        else:
            ma, mb = med(t["a"]), med(t["cold"])
            c = [x - ma for x in t["cold"]]
            print(f"- {names[k]}, ready = \"tcp\": cold first request {mb:.2f} ms vs. own listen {ma:.2f} ms: "
                  f"rouse + supervisord overhead median {med(c):.2f} ms, p90 {p90(c):.2f} ms")
            if t["sd"]:
                mf = med(t["sd"])
                print(f"  - supervisord alone (f): {mf:.2f} ms from startProcess to listening, i.e. {mf - ma:.2f} ms "
                      f"over the backend's own start; rouse's share of the cold request: (b) − median(f) = "
                      f"{mb - mf:.2f} ms (request handling, startProcess from rouse, its probe, forwarding)")
            if t["ready"]:
                mr = med(t["ready"])
                print(f"  - split by medians: rouse's start→ready {mr:.2f} ms − own listen {ma:.2f} ms = "
                      f"{mr - ma:.2f} ms (startProcess round trip, supervisord's fork/exec, readiness probe); "
                      f"cold request − start→ready = {mb - mr:.2f} ms (accept, hold, connect, forward)")
                if t["spawn"]:
                    ms = med(t["spawn"])
                    print(f"  - of the start→ready time, {ms:.1f} ms (median) pass between rouse issuing the start "
                          f"and supervisord logging the spawn (XML-RPC round trip to startProcess, fork), "
                          f"and {mr - ms:.1f} ms from the spawn to ready (exec, the backend's own start, "
                          f"rouse's probe), i.e. {mr - ms - ma:.1f} ms over the backend's own {ma:.2f} ms")
    if s:
        if not s["cold"]:
            print(f"- {names[k]}, ready = \"supervisor\": no successful cycle")
        else:
            md = med(s["cold"])
            line = (f"- {names[k]}, ready = \"supervisor\" (startsecs = {startsecs_ms / 1000:g}s): cold first request "
                    f"median {md:.2f} ms = startsecs + {md - startsecs_ms:.2f} ms")
            if s["running"]:
                line += f"; supervisord's own spawned→RUNNING median {med(s['running']):.1f} ms"
            print(line)
            if t and t["cold"]:
                print(f"  - waiting out startsecs costs {md - med(t['cold']):.2f} ms more than `ready = \"tcp\"` "
                      f"(median (d) − median (b)), i.e. {md / med(t['cold']):.1f}× the tcp-ready cold request")
print()
EOF
    echo "## Issues"
    echo
    if [[ -s $ISSUES ]]; then cat "$ISSUES"; else echo "none"; fi
    echo
    echo "<details><summary>configs (ready = \"tcp\", rouse-test-backend; the password is random per run)</summary>"
    echo
    echo '```ini'
    cat "${FIRST_CONFIGS[0]}"
    echo '```'
    echo
    echo '```toml'
    cat "${FIRST_CONFIGS[1]}"
    echo '```'
    echo
    echo "</details>"
    echo
    echo "<details><summary>raw results (backend, ready, cycle, (a), cold, warm through rouse, straight to the backend, seconds waited for the cold state, (f); ms except the wait)</summary>"
    echo
    echo '```'
    cat "$RESULTS"
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
