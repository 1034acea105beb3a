#!/usr/bin/env bash
# Wake-latency benchmark: how long the first request to a stopped backend takes through rouse,
# compared with the backend's own time to listen (issue 3, "Must show": target overhead < 10 ms).
#
# Per backend (rouse-test-backend, python3 -m http.server) and per cycle:
#   (a) the backend's own time to listen: exec -> its port accepts a TCP connection
#   (b) cold first request through rouse (embedded supervisor, min_servers = 0, ready = "tcp"),
#       sent once rouse has stopped the backend for idleness
#   (c) (b) - median(a): rouse's wake overhead
#   (d) a warm request through rouse right after, (e) the same request straight to the backend
# and a few cycles with ready = "supervisor" (startsecs = 1s), the floor of RUNNING-based readiness.
#
# Knobs (environment): CYCLES (30), SUP_CYCLES (5), WARMUP (1), IDLE_TIMEOUT (100ms),
#   STARTSECS (1s), SETTLE_MS (100), WAIT_IDLE (120 s), ROUSE_BIN, BACKEND_BIN, CARGO_TARGET_DIR, KEEP_TMP=1.
# See bench/README.md. Helpers: bench/wake-lib.sh; the timing probe: bench/wake-probe.py (both shared
# with bench/wake-supervisord.sh).
set -euo pipefail

CYCLES=${CYCLES:-30}
SUP_CYCLES=${SUP_CYCLES:-5}
WARMUP=${WARMUP:-1}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-100ms}
STARTSECS=${STARTSECS:-1s}
SETTLE_MS=${SETTLE_MS:-100}
WAIT_IDLE=${WAIT_IDLE:-120}
KEEP_TMP=${KEEP_TMP:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"
COMMAND_LINE="$(for v in CYCLES SUP_CYCLES WARMUP IDLE_TIMEOUT STARTSECS SETTLE_MS WAIT_IDLE CARGO_TARGET_DIR ROUSE_BIN BACKEND_BIN; do
    if [[ -n ${!v:-} ]]; then printf '%s=%q ' "$v" "${!v}"; fi; done)bench/wake.sh"
# the defaults are filled in above, so the line above always lists them: the exact settings used

SCRIPT_NAME=wake.sh
# shellcheck source=bench/wake-lib.sh
source "$BENCH_DIR/wake-lib.sh"

for v in CYCLES WARMUP SETTLE_MS SUP_CYCLES WAIT_IDLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((CYCLES >= 1)) || die "CYCLES must be at least 1"
[[ $IDLE_TIMEOUT =~ ^[0-9]+(ms|s)$ ]] || die "IDLE_TIMEOUT must look like 100ms or 1s (got '$IDLE_TIMEOUT')"
[[ $STARTSECS =~ ^[0-9]+(ms|s)$ ]] || die "STARTSECS must look like 500ms or 1s (got '$STARTSECS')"
command -v python3 >/dev/null 2>&1 || die "python3 is needed (the probe and the second backend)"
PYTHON=$(command -v python3)

# ---------------------------------------------------------------------------------------------
# 1. Binaries
# ---------------------------------------------------------------------------------------------
build_binaries

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started here is stopped on exit, even on failure.
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/rouse-wake.XXXXXX)
RESULTS=$TMP/results.tsv
ISSUES=$TMP/issues.txt
: >"$RESULTS"
: >"$ISSUES"
ROUSE_PID=""
PROBE_PID=""
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
    if [[ $rc -eq 0 && $KEEP_TMP != 1 ]]; then
        rm -rf "$TMP"
    else
        log "kept $TMP (configs, rouse logs, raw results)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 2. The probe: does the timing of every cycle, prints one TSV row per measured cycle.
# ---------------------------------------------------------------------------------------------
PROBE=$BENCH_DIR/wake-probe.py
[[ -f $PROBE ]] || die "no probe at $PROBE"

# ---------------------------------------------------------------------------------------------
# 3. One rouse per (backend, readiness); the probe runs its cycles against it.
# ---------------------------------------------------------------------------------------------
mkdir -p "$TMP/www"
echo "wake bench" >"$TMP/www/index.txt"
LAST_CONFIGS=()

backend_argv() {  # KIND PORT : JSON argv
    case $1 in
        test) "$PYTHON" -c 'import json,sys; print(json.dumps([sys.argv[1], "--listen", "127.0.0.1:" + sys.argv[2], "--id", "wake-test"]))' "$BACKEND" "$2" ;;
        http.server) "$PYTHON" -c 'import json,sys; print(json.dumps([sys.argv[1], "-m", "http.server", sys.argv[2], "--bind", "127.0.0.1", "--directory", sys.argv[3]]))' "$PYTHON" "$2" "$TMP/www" ;;
    esac
}
declare -A EXPECT=([test]="wake-test" [http.server]="Directory listing")
declare -A LABEL=([test]="rouse-test-backend" [http.server]="python3 -m http.server")

run_config() {  # KIND READY CYCLES
    local kind=$1 ready=$2 cycles=$3 name="$1-$2" p_rouse p_backend p_direct conf rc=0
    read -r p_rouse p_backend p_direct < <(free_ports 3)
    [[ -n ${p_direct:-} ]] || die "could not pick free ports"
    conf=$TMP/$name.toml
    cat >"$conf" <<EOF
[proxy]
listen = ["127.0.0.1:$p_rouse"]

[log]
access_log = false

[[upstream]]
name = "wake"
min_servers = 0
idle_timeout = "$IDLE_TIMEOUT"
ready = "$ready"

[[upstream.server]]
address = "127.0.0.1:$p_backend"
command = $(backend_argv "$kind" "$p_backend")
startsecs = "$STARTSECS"
EOF
    LAST_CONFIGS+=("$conf")
    "$ROUSE" check -c "$conf" >"$TMP/$name.check.txt" 2>&1 || {
        sed 's/^/    /' "$TMP/$name.check.txt" >&2; die "rouse check rejected $conf (shown above)"; }

    log "$name: rouse :$p_rouse -> server :$p_backend (ready=$ready), direct timing on :$p_direct, $cycles cycle(s) + $WARMUP warm-up"
    RUST_LOG=info "$ROUSE" run -c "$conf" >"$TMP/$name.rouse.log" 2>&1 &
    ROUSE_PID=$!
    wait_listen "$p_rouse" || die "rouse ($name) does not listen on 127.0.0.1:$p_rouse; log: $(tail -20 "$TMP/$name.rouse.log")"

    "$PYTHON" "$PROBE" --backend "$kind" --ready "$ready" \
        --rouse-port "$p_rouse" --rouse-pid "$ROUSE_PID" --backend-port "$p_backend" \
        --direct-cmd "$(backend_argv "$kind" "$p_direct")" --direct-port "$p_direct" --direct-cwd "$TMP/www" \
        --direct-log "$TMP/$name.direct.log" --pidfile "$DIRECT_PIDFILE" --expect "${EXPECT[$kind]}" \
        --cycles "$cycles" --warmup "$WARMUP" --settle-ms "$SETTLE_MS" >"$TMP/$name.probe.tsv" &
    PROBE_PID=$!
    wait "$PROBE_PID" || rc=$?
    PROBE_PID=""
    grep '^ROW' "$TMP/$name.probe.tsv" | cut -f2- >>"$RESULTS" || true
    grep '^ISSUE' "$TMP/$name.probe.tsv" | cut -f2- | while IFS= read -r l; do issue "$l"; done || true
    ((rc == 0)) || issue "$name: the probe exited with status $rc"

    kill -0 "$ROUSE_PID" 2>/dev/null || { issue "$name: rouse was not running any more at the end; log: $(tail -5 "$TMP/$name.rouse.log" | tr '\n' ' ')"; }
    stop_rouse
    port_accepts "$p_backend" && issue "$name: 127.0.0.1:$p_backend still accepts after rouse exited"

    # rouse's own view: one start per cycle, its logged start -> ready times, warnings
    local starts expected=$((cycles + WARMUP)) measured
    measured=$(grep -c "^ROW" "$TMP/$name.probe.tsv" || true)
    starts=$(grep -c 'starting server' "$TMP/$name.rouse.log" || true)
    if ((starts == 0)); then
        issue "$name: no 'starting server' line in rouse's log; cannot check that one start was issued per cycle"
    elif ((starts != expected && measured == cycles)); then
        issue "$name: rouse logged $starts start(s) for $expected cold request(s) (expected one each)"
    fi
    grep 'server ready' "$TMP/$name.rouse.log" | sed -n 's/.* ms=\([0-9.]*\).*/\1/p' \
        | awk -v k="$kind" -v r="$ready" -v w="$WARMUP" 'NR > w { printf "READY\t%s\t%s\t%s\n", k, r, $1 }' >>"$TMP/ready.tsv"
    # rouse::child lines are the backend's own stderr (http.server logs each request there)
    if grep -E '^[^ ]+ +(WARN|ERROR) ' "$TMP/$name.rouse.log" | grep -v ' rouse::child: ' >"$TMP/$name.warn.txt"; then
        issue "$name: rouse logged $(wc -l <"$TMP/$name.warn.txt") WARN/ERROR line(s); first: $(head -1 "$TMP/$name.warn.txt" | cut -c1-300)"
    fi
}

: >"$TMP/ready.tsv"
ncpu=$NCPU
# e.g. right after the build: give the 1-min load average a bounded chance to fall
wait_idle "$WAIT_IDLE"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_FILE="$OUT_DIR/wake-$STAMP.md"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
if load_busy "${LOADAVG_START%% *}"; then
    log "WARNING: the machine is busy (load average $LOADAVG_START on $ncpu CPUs); numbers will be noisy"
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
# 4. Report
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
CPU_MODEL=$(cpu_model)
GIT_REV=$(git_rev)

{
    echo "# rouse wake-latency benchmark, $STAMP"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    echo "- machine: $ncpu CPU(s), ${CPU_MODEL:-unknown CPU}, $(uname -sr); load average at start: $LOADAVG_START, at end: $LOADAVG_END; run took ${ELAPSED}s"
    busy_warning "$LOADAVG_START" "$LOADAVG_END"
    echo "- versions: $(first_line "$ROUSE" --version) (git $GIT_REV); $(first_line "$BACKEND" --version); $(first_line "$PYTHON" --version); $(first_line rustc --version)"
    echo "- binaries: \`$ROUSE\`, \`$BACKEND\`"
    echo "- rouse: embedded supervisor, one upstream, one server, \`min_servers = 0\`, \`idle_timeout = \"$IDLE_TIMEOUT\"\`, \`startsecs = \"$STARTSECS\"\`, \`[log] access_log = false\`, \`RUST_LOG=info\`"
    echo "- per cycle: wait (bounded, 30 s) until rouse has stopped the server (its port refuses connections); (a) exec the same backend on another port and poll \`connect()\` every 0.5 ms until it accepts, then stop it; sleep ${SETTLE_MS} ms; (b) one \`GET /\` through rouse on a fresh connection until the whole body is read (python3 \`http.client\`, \`time.monotonic()\`); (d) one more \`GET /\` through rouse, fresh connection; (e) the same straight to the backend. $WARMUP warm-up cycle(s) per run are not counted."
    echo "- (c) = (b) − median of (a) over the same run. rouse's start→ready is read from its log (\`server ready … ms=\`)."
    echo
    "$PYTHON" - "$RESULTS" "$TMP/ready.tsv" "$STARTSECS" <<'EOF'
import math, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
ready_rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
ss = sys.argv[3]
startsecs_ms = float(ss[:-2]) if ss.endswith("ms") else float(ss[:-1]) * 1000

def p90(v):  # nearest rank
    s = sorted(v)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]

def stats(v):
    if not v:
        return "| 0 | n/a | n/a | n/a | n/a |"
    return f"| {len(v)} | {statistics.median(v):.2f} | {p90(v):.2f} | {min(v):.2f} | {max(v):.2f} |"

names = {"test": "rouse-test-backend", "http.server": "python3 -m http.server"}
runs = []
for k in ["test", "http.server"]:
    for r in ["tcp", "supervisor"]:
        sel = [x for x in rows if x[0] == k and x[1] == r]
        rdy = [float(x[3]) for x in ready_rows if x[1] == k and x[2] == r]
        if sel or rdy:
            runs.append((k, r, sel, rdy))

print("## Results, ms: median, p90, min, max over the measured cycles")
print()
print("| backend | ready | measure | n | median | p90 | min | max |")
print("|---|---|---|---|---|---|---|---|")
summary = {}
for k, r, sel, rdy in runs:
    a = [float(x[3]) for x in sel]
    b = [float(x[4]) for x in sel]
    d = [float(x[5]) for x in sel]
    e = [float(x[6]) for x in sel]
    ma = statistics.median(a) if a else float("nan")
    c = [x - ma for x in b]
    summary[(k, r)] = (a, b, c)
    n = names[k]
    print(f"| {n} | {r} | (a) own time to listen {stats(a)}")
    print(f"| {n} | {r} | (b) cold first request through rouse {stats(b)}")
    print(f"| {n} | {r} | **(c) wake overhead = (b) − median(a)** {stats(c)}")
    print(f"| {n} | {r} | (d) warm request through rouse {stats(d)}")
    print(f"| {n} | {r} | (e) warm request straight to the backend {stats(e)}")
    print(f"| {n} | {r} | rouse's log: start issued → ready {stats(rdy)}")
print()
print("## Against the target (issue 3: wake overhead under 10 ms)")
print()
for (k, r), (a, b, c) in summary.items():
    if not c:
        print(f"- {names[k]}, ready = \"{r}\": no successful cycle")
        continue
    mc = statistics.median(c)
    rdy = next(x[3] for x in runs if x[0] == k and x[1] == r)
    if r == "tcp":
        verdict = "met" if mc < 10 else "**NOT met**"
        print(f"- {names[k]}, ready = \"tcp\": median overhead {mc:.2f} ms, p90 {p90(c):.2f} ms "
              f"(cold {statistics.median(b):.2f} ms vs. own listen {statistics.median(a):.2f} ms): target {verdict}")
        if rdy:
            mr = statistics.median(rdy)
            print(f"  - split by medians: rouse's start→ready {mr:.2f} ms − own listen {statistics.median(a):.2f} ms "
                  f"= {mr - statistics.median(a):.2f} ms (spawn + readiness probe); cold request − start→ready "
                  f"= {statistics.median(b) - mr:.2f} ms (accept, hold, connect, forward)")
    else:
        print(f"- {names[k]}, ready = \"supervisor\" (startsecs = {ss}): cold first request median "
              f"{statistics.median(b):.2f} ms, i.e. startsecs + {statistics.median(b) - startsecs_ms:.2f} ms; "
              f"waiting for RUNNING costs {mc:.2f} ms over the backend's own {statistics.median(a):.2f} ms to listen")
print()
EOF
    echo "## Issues"
    echo
    if [[ -s $ISSUES ]]; then cat "$ISSUES"; else echo "none"; fi
    echo
    echo "<details><summary>config (ready = \"tcp\", rouse-test-backend)</summary>"
    echo
    echo '```toml'
    cat "${LAST_CONFIGS[0]}"
    echo '```'
    echo
    echo "</details>"
    echo
    echo "<details><summary>raw results (backend, ready, cycle, (a), (b), (d), (e), seconds waited for the cold state; ms)</summary>"
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
