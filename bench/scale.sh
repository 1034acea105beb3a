#!/usr/bin/env bash
# Config scale (issue 11): rouse with UPSTREAMS x SERVERS servers configured and none started.
#
# For each variant (embedded: every server has its own `command`; supervisord: every server is a
# program of one `[supervisors.main]`, which is not running), on a generated file:
#   - `rouse check` wall time (median of 3)
#   - `rouse run` start time: exec -> the admin API's /status answers 200 and the listener
#     proxies a request through the bench upstream
#   - RSS (VmRSS, VmHWM from /proc/PID/status) after start and after each of RELOADS
#     `rouse reload`s, alternating no-op reloads with real ones (a weight changed, an upstream
#     added, then removed again)
# then h1 req/s (wrk, keep-alive) through one static upstream `bench` of the big config vs a
# rouse whose config is that upstream alone, interleaved round by round. Backend: one nginx
# worker (`return 200`), pinned to CPU 0 with wrk; rouse with `threads = 1` on CPU 1. While one
# rouse is measured the other is SIGSTOPped, so neither one's timers steal the other's CPU.
#
# Knobs (environment): UPSTREAMS (1000), SERVERS (10), RELOADS (10), ROUNDS (3), DURATION (s, 5),
#   CONNECTIONS (64), VARIANTS ("embedded supervisord"), SETTLE (s after start and each reload
#   before RSS is read, 1), ROUSE_BIN (else a release build), CARGO_TARGET_DIR, KEEP_TMP=1.
# See bench/README.md.
set -euo pipefail

UPSTREAMS=${UPSTREAMS:-1000}
SERVERS=${SERVERS:-10}
RELOADS=${RELOADS:-10}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
VARIANTS=${VARIANTS:-embedded supervisord}
SETTLE=${SETTLE:-1}
KEEP_TMP=${KEEP_TMP:-0}

BACKEND_CPU=0
PROXY_CPU=1

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_FILE="$OUT_DIR/scale-$STAMP.md"
COMMAND_LINE="$(for v in UPSTREAMS SERVERS RELOADS ROUNDS DURATION CONNECTIONS VARIANTS SETTLE CARGO_TARGET_DIR ROUSE_BIN; do
    if [[ -n ${!v:-} ]]; then printf '%s=%q ' "$v" "${!v}"; fi; done)bench/scale.sh"

log() { printf '[scale.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for v in UPSTREAMS SERVERS RELOADS ROUNDS DURATION CONNECTIONS SETTLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((UPSTREAMS >= 2 && SERVERS >= 1)) || die "UPSTREAMS must be at least 2 and SERVERS at least 1"
((UPSTREAMS * SERVERS <= 25000)) || die "at most 25000 servers (they get ports 5000 + i, below the ephemeral range)"
for v in $VARIANTS; do
    [[ $v == embedded || $v == supervisord ]] || die "VARIANTS: embedded and/or supervisord (got '$v')"
done

# ---------------------------------------------------------------------------------------------
# 1. Tools and binary
# ---------------------------------------------------------------------------------------------
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }
missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq || true
    as_root apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
    as_root service nginx stop >/dev/null 2>&1 || true
fi
export PATH="$PATH:/usr/sbin:/sbin"
NGINX=$(command -v nginx)

if [[ -n ${ROUSE_BIN:-} ]]; then
    ROUSE=$ROUSE_BIN
    log "using ROUSE_BIN=$ROUSE (not building)"
else
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    log "building rouse (cargo build --release -p rouse, target dir $TARGET)"
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p rouse) \
        || die "cargo build --release -p rouse failed"
    ROUSE=$TARGET/release/rouse
fi
[[ -x $ROUSE ]] || die "no rouse binary at $ROUSE"
ncpu=$(nproc)
((ncpu >= 2)) || log "WARNING: only $ncpu CPU(s); pinning to CPU 1 will fail"

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started here is stopped on exit, even on failure.
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/rouse-scale.XXXXXX)
declare -A PIDS=()
RESULTS=$TMP/results.tsv   # kind variant step value...
ISSUES=$TMP/issues.txt
: >"$RESULTS"
: >"$ISSUES"
issue() { log "ISSUE: $*"; printf -- '- %s\n' "$*" >>"$ISSUES"; }

stop_one() {
    local name=$1 pid=${PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for 10 s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for name in "${!PIDS[@]}"; do stop_one "$name"; done
    if [[ -f $TMP/backend.pid ]]; then kill -KILL "$(cat "$TMP/backend.pid")" 2>/dev/null || true; fi
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then log "configs and logs kept in $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# kB of VmRSS / VmHWM of PID
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------------------------------------
# 2. Backend, ports, configs
# ---------------------------------------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
read -r P_BACKEND P_BIG P_BIG_ADMIN P_SUP P_SUP_ADMIN P_SMALL P_SMALL_ADMIN P_DEAD < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(8):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
[[ -n ${P_DEAD:-} ]] || die "could not pick free ports"

mkdir -p "$TMP/nginx"
cat >"$TMP/backend.conf" <<EOF
worker_processes 1;
user root root;
pid $TMP/backend.pid;
error_log $TMP/backend.error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        location / { return 200 "hello world\\n"; }
    }
}
EOF
[[ $(id -u) -eq 0 ]] || sed -i '/^user /d' "$TMP/backend.conf"
taskset -c "$BACKEND_CPU" "$NGINX" -e "$TMP/backend.error.log" -c "$TMP/backend.conf" -g 'daemon off;' \
    >"$TMP/backend.log" 2>&1 &
PIDS[backend]=$!

# gen.py VARIANT CHANGE LISTEN ADMIN: a config on stdout. CHANGE: base | weight (server 0 of
# the second upstream has weight 2) | added (one more upstream, at the end) | small (the bench
# upstream alone).
cat >"$TMP/gen.py" <<'EOF'
import sys
variant, change, listen, admin, backend, dead, n_up, n_srv = sys.argv[1:9]
n_up, n_srv = int(n_up), int(n_srv)
out = [f'[proxy]\nlisten = ["127.0.0.1:{listen}"]\nthreads = 1\n',
       f'[admin]\nlisten = "127.0.0.1:{admin}"\n',
       '[log]\naccess_log = false\n']
bench = ('[[upstream]]\nname = "bench"\nhosts = ["bench.example"]\nsupervisor = "none"\n'
         f'[[upstream.server]]\naddress = "127.0.0.1:{backend}"\n')
if change == "small":
    print("\n".join(out + [bench]))
    sys.exit()
if variant == "supervisord":
    out.append(f'[supervisors.main]\nurl = "http://127.0.0.1:{dead}/RPC2"\n')
ups = range(n_up + 1) if change == "added" else range(n_up)
port = 5000  # below the ephemeral range the free ports above come from
for u in ups:
    if u == n_up // 2:
        out.append(bench)
    lines = [f'[[upstream]]\nname = "u{u:05}"\nhosts = ["u{u:05}.example"]\nidle_timeout = "10m"\n']
    if variant == "supervisord":
        lines.append('supervisor = "main"\n')
    for s in range(n_srv):
        p = port + u * n_srv + s
        lines.append(f'[[upstream.server]]\naddress = "127.0.0.1:{p}"\n')
        if variant == "embedded":
            lines.append(f'command = ["/usr/bin/env", "python3", "-m", "http.server", "--bind", "127.0.0.1", "{p}"]\n')
        else:
            lines.append(f'program = "u{u:05}_{s}"\n')
        if change == "weight" and u == 1 and s == 0:
            lines.append("weight = 2\n")
    out.append("".join(lines))
print("\n".join(out))
EOF
gen() {  # VARIANT CHANGE LISTEN ADMIN > file
    python3 "$TMP/gen.py" "$1" "$2" "$3" "$4" "$P_BACKEND" "$P_DEAD" "$UPSTREAMS" "$SERVERS"
}

for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$P_BACKEND") 2>/dev/null && break; sleep 0.1; done
curl -sf --max-time 5 "http://127.0.0.1:$P_BACKEND/" >/dev/null || die "backend nginx does not answer; $(cat "$TMP/backend.log")"

# The reloads: no-op ones between real changes, ending on the file rouse started with.
RELOAD_PLAN=()
changes=(base weight base added base)
for i in $(seq 0 $((RELOADS - 1))); do RELOAD_PLAN+=("${changes[$((i % ${#changes[@]}))]}"); done
((RELOADS == 0)) || RELOAD_PLAN[RELOADS - 1]=base
describe_reload() {  # PREVIOUS NEXT
    if [[ $1 == "$2" ]]; then echo "no-op"
    elif [[ $2 == weight ]]; then echo "weight 1 -> 2"
    elif [[ $1 == weight ]]; then echo "weight 2 -> 1"
    elif [[ $2 == added ]]; then echo "+1 upstream ($SERVERS servers)"
    else echo "-1 upstream"; fi
}

# start_rouse NAME CONFIG LISTEN ADMIN: sets START_MS, the ms from exec to serving
start_rouse() {
    local name=$1 config=$2 listen=$3 admin=$4 t0 t1
    t0=$(now_ms)
    taskset -c "$PROXY_CPU" env RUST_LOG=warn "$ROUSE" run -c "$config" >"$TMP/$name.log" 2>&1 &
    PIDS[$name]=$!
    for _ in $(seq 3000); do
        kill -0 "${PIDS[$name]}" 2>/dev/null || die "$name exited during start-up: $(tail -20 "$TMP/$name.log")"
        if curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$admin/status" \
            && curl -sf --max-time 1 -o /dev/null -H 'Host: bench.example' "http://127.0.0.1:$listen/"; then
            t1=$(now_ms)
            START_MS=$((t1 - t0))
            return 0
        fi
        sleep 0.01
    done
    die "$name did not serve within 30 s"
}

# ---------------------------------------------------------------------------------------------
# 3. Per variant: check, start, RSS, reloads
# ---------------------------------------------------------------------------------------------
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A LISTEN=([embedded]=$P_BIG [supervisord]=$P_SUP) ADMIN=([embedded]=$P_BIG_ADMIN [supervisord]=$P_SUP_ADMIN)
for variant in $VARIANTS; do
    listen=${LISTEN[$variant]} admin=${ADMIN[$variant]}
    for c in base weight added; do gen "$variant" "$c" "$listen" "$admin" >"$TMP/$variant-$c.toml"; done
    cp "$TMP/$variant-base.toml" "$TMP/$variant.toml"
    log "$variant: $UPSTREAMS upstreams x $SERVERS servers ($(wc -c <"$TMP/$variant.toml") bytes of TOML)"
    checks=()
    for _ in 1 2 3; do
        t0=$(now_ms)
        "$ROUSE" check -c "$TMP/$variant.toml" >"$TMP/check.out" 2>&1 || die "rouse check rejects the $variant config: $(tail -5 "$TMP/check.out")"
        checks+=($(($(now_ms) - t0)))
    done
    check_ms=$(printf '%s\n' "${checks[@]}" | sort -n | sed -n 2p)
    start_rouse "big-$variant" "$TMP/$variant.toml" "$listen" "$admin"
    start_ms=$START_MS
    pid=${PIDS[big-$variant]}
    log "$variant: check ${check_ms} ms (${checks[*]}), serving ${start_ms} ms after exec"
    printf 'time\t%s\tcheck\t%s\n' "$variant" "$check_ms" >>"$RESULTS"
    printf 'time\t%s\tstart\t%s\n' "$variant" "$start_ms" >>"$RESULTS"
    sleep "$SETTLE"
    printf 'rss\t%s\t0\tstart\t%s\t%s\t\n' "$variant" "$(vm "$pid" VmRSS)" "$(vm "$pid" VmHWM)" >>"$RESULTS"
    prev=base
    for i in $(seq 1 "$RELOADS"); do
        next=${RELOAD_PLAN[$((i - 1))]}
        cp "$TMP/$variant-$next.toml" "$TMP/$variant.toml"
        t0=$(now_ms)
        if ! "$ROUSE" reload --admin "127.0.0.1:$admin" >"$TMP/reload.out" 2>&1; then
            issue "$variant reload $i ($next) failed: $(tr '\n' ' ' <"$TMP/reload.out")"
        fi
        reload_ms=$(($(now_ms) - t0))
        sleep "$SETTLE"
        rss=$(vm "$pid" VmRSS) hwm=$(vm "$pid" VmHWM)
        printf 'rss\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$i" "$(describe_reload "$prev" "$next")" "$rss" "$hwm" "$reload_ms" >>"$RESULTS"
        log "$variant reload $i ($(describe_reload "$prev" "$next")): ${reload_ms} ms, VmRSS $rss kB, VmHWM $hwm kB"
        prev=$next
    done
    if [[ $variant != embedded ]]; then stop_one "big-$variant"; fi
done

# ---------------------------------------------------------------------------------------------
# 4. h1 req/s: the big (embedded) config vs the bench upstream alone, interleaved
# ---------------------------------------------------------------------------------------------
gen embedded small "$P_SMALL" "$P_SMALL_ADMIN" >"$TMP/small.toml"
start_rouse small "$TMP/small.toml" "$P_SMALL" "$P_SMALL_ADMIN"
small_ms=$START_MS
sleep "$SETTLE"
printf 'time\tsmall\tstart\t%s\n' "$small_ms" >>"$RESULTS"
printf 'rss\tsmall\t0\tstart\t%s\t%s\t\n' "$(vm "${PIDS[small]}" VmRSS)" "$(vm "${PIDS[small]}" VmHWM)" >>"$RESULTS"
if [[ -z ${PIDS[big-embedded]:-} ]]; then
    gen embedded base "$P_BIG" "$P_BIG_ADMIN" >"$TMP/embedded.toml"
    start_rouse big-embedded "$TMP/embedded.toml" "$P_BIG" "$P_BIG_ADMIN"
fi
declare -A PORT=([small]=$P_SMALL [big]=$P_BIG) PROC=([small]=small [big]=big-embedded)
WRK_CMD=(wrk -t1 "-c$CONNECTIONS" "-d${DURATION}s" -H "Host: bench.example")
if ((ROUNDS > 0)); then log "h1: ${WRK_CMD[*]}, $ROUNDS round(s) of small, big"; fi
for round in $(seq 1 "$ROUNDS"); do
    for t in small big; do
        other=big; [[ $t == big ]] && other=small
        kill -STOP "${PIDS[${PROC[$other]}]}"
        f=$TMP/wrk-$t-$round.txt
        taskset -c "$BACKEND_CPU" "${WRK_CMD[@]}" "http://127.0.0.1:${PORT[$t]}/" >"$f" 2>&1 || issue "wrk $t round $round failed: $(tr '\n' ' ' <"$f")"
        kill -CONT "${PIDS[${PROC[$other]}]}"
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
        if grep -qE 'Socket errors|Non-2xx' "$f"; then issue "wrk $t round $round: $(grep -E 'Socket errors|Non-2xx' "$f" | tr '\n' ' ')"; fi
        printf 'rps\t%s\t%s\t%s\n' "$t" "$round" "${rps:-NaN}" >>"$RESULTS"
        log "h1 $t round $round: ${rps:-?} req/s"
    done
done
for name in "${!PIDS[@]}"; do
    [[ $name == backend ]] && continue
    kill -0 "${PIDS[$name]}" 2>/dev/null || issue "$name died: $(tail -5 "$TMP/$name.log" | tr '\n' ' ')"
done
if [[ -s $TMP/big-embedded.log ]]; then
    issue "rouse (big, embedded) wrote to stderr (RUST_LOG=warn): $(tail -3 "$TMP/big-embedded.log" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------------------------------------
# 5. Report
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
{
    echo "# rouse config scale, $STAMP"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    echo "- machine: $ncpu CPU(s), $(uname -sr); load average before: $LOADAVG_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $(head -1 < <("$ROUSE" --version 2>&1)); $UPSTREAMS upstreams x $SERVERS servers + 1 static \`bench\` upstream; \`threads = 1\` on CPU $PROXY_CPU"
    echo "- h1: \`taskset -c $BACKEND_CPU ${WRK_CMD[*]} http://127.0.0.1:PORT/\`, backend nginx (1 worker, CPU $BACKEND_CPU); the rouse not measured is SIGSTOPped"
    echo
    python3 - "$RESULTS" "$RELOADS" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
reloads = int(sys.argv[2])
def mb(kb): return f"{int(kb) / 1024:.1f}"
variants = [r[1] for r in rows if r[0] == "time" and r[2] == "check"]
print("| variant | `rouse check` | start → serving | RSS after start | after %d reloads | growth | VmHWM |" % reloads)
print("|---|---|---|---|---|---|---|")
for v in variants:
    t = {r[2]: r[3] for r in rows if r[0] == "time" and r[1] == v}
    rss = [r for r in rows if r[0] == "rss" and r[1] == v]
    first, last = int(rss[0][4]), int(rss[-1][4])
    hwm = max(int(r[5]) for r in rss)
    print(f"| {v} | {t['check']} ms | {t['start']} ms | {mb(first)} MB | {mb(last)} MB | {100 * (last - first) / first:+.1f}% | {mb(hwm)} MB |")
small = [r for r in rows if r[0] == "rss" and r[1] == "small"]
st = [r for r in rows if r[0] == "time" and r[1] == "small"]
if small:
    print(f"| small (bench upstream alone) | | {st[0][3]} ms | {mb(small[0][4])} MB | | | {mb(small[0][5])} MB |")
print()
rps = {t: [float(r[3]) for r in rows if r[0] == "rps" and r[1] == t and r[3] != "NaN"] for t in ("small", "big")}
if rps["small"] and rps["big"]:
    s, b = statistics.median(rps["small"]), statistics.median(rps["big"])
    cell = lambda v: f"{statistics.median(v)/1000:.1f}k ({min(v)/1000:.1f}k–{max(v)/1000:.1f}k)"
    print("| h1 req/s, median (min–max) | small config | big config | big / small |")
    print("|---|---|---|---|")
    print(f"| {len(rps['small'])} round(s) | {cell(rps['small'])} | {cell(rps['big'])} | {b / s:.3f} |")
    print()
for v in variants:
    print(f"<details><summary>{v}: RSS per reload</summary>\n")
    print("| after | change | reload took | VmRSS | VmHWM |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r[0] == "rss" and r[1] == v:
            took = f"{r[6]} ms" if len(r) > 6 and r[6] else ""
            print(f"| {'start' if r[2] == '0' else 'reload ' + r[2]} | {'' if r[2] == '0' else r[3]} | {took} | {mb(r[4])} MB | {mb(r[5])} MB |")
    print("\n</details>\n")
EOF
    echo "## Issues"
    echo
    if [[ -s $ISSUES ]]; then cat "$ISSUES"; else echo "none"; fi
} >"$OUT_FILE"
cat "$OUT_FILE"
log "report written to $OUT_FILE"
if [[ -s $ISSUES ]]; then exit 3; fi
