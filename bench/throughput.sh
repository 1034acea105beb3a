#!/usr/bin/env bash
# Large bodies through each proxy, both ways: nginx vs HAProxy vs rouse (and the backend direct).
#
# The backend is rouse-test-backend (CPU 0): GET /bytes/N streams N bytes of a position-checked
# pattern, POST /count reads a body and answers its length and checksum. Each proxy has one
# worker/thread on CPU 1; bench/throughput-client.py (CPU 0) moves SIZE_MIB MiB per transfer:
# a download, an upload with Content-Length and a chunked upload, every byte checked. Per
# transfer: MiB/s, the proxy's RSS growth (VmHWM after the transfer minus VmRSS before it, with
# the high-water mark reset first) and its CPU time. See bench/README.md.
#
# Knobs (environment): SIZE_MIB (1024), ROUNDS (3), TARGETS ("direct nginx haproxy rouse"),
#   RESPONSE_BUFFERING (memory: buffered in memory only; off: streamed; default: each proxy's
#   defaults, which may spill to a temp file),
#   TIMEOUT (120 s per transfer), CARGO_TARGET_DIR, ROUSE_BIN and BACKEND_BIN (both set: no
#   build), KEEP_TMP=1.
set -euo pipefail

SCRIPT_NAME=throughput.sh
# shellcheck source=bench/lib-proxy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-proxy.sh"

SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-3}
TARGETS=${TARGETS:-direct nginx haproxy rouse}
RESPONSE_BUFFERING=${RESPONSE_BUFFERING:-memory}
TIMEOUT=${TIMEOUT:-120}

BACKEND_CPU=0
PROXY_CPU=1
SIZE=$((SIZE_MIB * 1024 * 1024))
KINDS=(download upload upload-chunked)
OUT_FILE="$OUT_DIR/throughput-$STAMP.md"
COMMAND_LINE=$(command_line bench/throughput.sh SIZE_MIB ROUNDS TARGETS RESPONSE_BUFFERING TIMEOUT \
    CARGO_TARGET_DIR ROUSE_BIN BACKEND_BIN)

require_positive SIZE_MIB ROUNDS TIMEOUT
for t in $TARGETS; do
    [[ $t =~ ^(direct|nginx|haproxy|rouse)$ ]] || die "TARGETS: unknown target '$t' (direct, nginx, haproxy, rouse)"
done
# The response side, nginx's and rouse's alike (HAProxy always streams through its buffers):
case $RESPONSE_BUFFERING in
    # Read ahead of the client into memory, never a temp file: when the memory part is full,
    # the backend is read only as fast as the client takes.
    memory)
        NGINX_RESPONSE="proxy_buffering on; proxy_max_temp_file_size 0;"
        ROUSE_RESPONSE=$'response_buffering = true\nresponse_buffer_size = "1MiB"\nmax_response_buffer = "1MiB"' ;;
    off)
        NGINX_RESPONSE="proxy_buffering off;"
        ROUSE_RESPONSE="response_buffering = false" ;;
    # Both defaults: a temp file (up to 1 GiB) for what the client has not taken yet.
    default)
        NGINX_RESPONSE="proxy_buffering on;"
        ROUSE_RESPONSE="response_buffering = true" ;;
    *) die "RESPONSE_BUFFERING must be memory, off or default (got '$RESPONSE_BUFFERING')" ;;
esac
require_root
install_tools nginx haproxy curl taskset python3
build_rouse_and_backend
init_tmp

# ---------------------------------------------------------------------------------------------
# Configs: no body limit anywhere; request bodies streamed (a buffered 1 GiB upload would go to
# a temp file in nginx and rouse alike and measure the disk)
# ---------------------------------------------------------------------------------------------
read -r P_BACKEND P_NGINX P_HAPROXY P_ROUSE < <(free_ports 4)
[[ -n ${P_ROUSE:-} ]] || die "could not pick free ports"
declare -A PORT=([direct]=$P_BACKEND [nginx]=$P_NGINX [haproxy]=$P_HAPROXY [rouse]=$P_ROUSE)

nginx_conf nginx "    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        client_max_body_size 0;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_request_buffering off;
            $NGINX_RESPONSE
            proxy_read_timeout ${TIMEOUT}s;
            proxy_send_timeout ${TIMEOUT}s;
        }
    }" "$(nginx_upstream "$P_BACKEND")"

HAPROXY_TIMEOUT=${TIMEOUT}s
haproxy_conf haproxy "127.0.0.1:$P_HAPROXY" "$P_BACKEND"

cat >"$TMP/rouse.toml" <<EOF
[proxy]
listen = ["127.0.0.1:$P_ROUSE"]
threads = 1

[log]
access_log = false

[[upstream]]
name = "bench"
supervisor = "none"
max_request_body = 0
request_buffering = false
$ROUSE_RESPONSE

[[upstream.server]]
address = "127.0.0.1:$P_BACKEND"
EOF
"$ROUSE" check -c "$TMP/rouse.toml" >&2 || die "rouse check rejected the bench config (shown above)"

EXPECTED_BODY=backend  # rouse-test-backend answers GET / with its --id
log "backend: rouse-test-backend on 127.0.0.1:$P_BACKEND (CPU $BACKEND_CPU)"
start backend "$BACKEND_CPU" "$BACKEND" --listen "127.0.0.1:$P_BACKEND" --id backend
wait_listen backend "$P_BACKEND" || die "rouse-test-backend does not listen"
check_http1 direct "$P_BACKEND" || die "rouse-test-backend answers wrongly"

log "proxies on CPU $PROXY_CPU: nginx :$P_NGINX, haproxy :$P_HAPROXY, rouse :$P_ROUSE"
start_nginx nginx "$PROXY_CPU" || die "nginx proxy does not start"
start_haproxy haproxy "$PROXY_CPU" || die "haproxy does not start"
start rouse "$PROXY_CPU" env RUST_LOG=warn "$ROUSE" run -c "$TMP/rouse.toml"
for t in nginx haproxy rouse; do
    wait_listen "$t" "${PORT[$t]}" || die "$t does not listen"
    check_http1 "$t" "${PORT[$t]}" || die "$t answers wrongly"
done

# client KIND PORT : one transfer; sets CLIENT_OUT to its JSON line. In the background and
# waited for, so that a signal stops the script (and the trap stops the client) at once.
client() {
    local kind=$1 port=$2 args=()
    case $kind in
        download) args=(download) ;;
        upload) args=(upload) ;;
        upload-chunked) args=(upload --chunked) ;;
    esac
    start client "$BACKEND_CPU" timeout -k 5 "$TIMEOUT" python3 "$BENCH_DIR/throughput-client.py" \
        "${args[@]}" --port "$port" --size "$SIZE" --timeout 60
    wait "${PIDS[client]}" || true
    unset "PIDS[client]"
    CLIENT_OUT=$(tail -1 "$TMP/client.log")
}

json_field() {  # JSON FIELD
    python3 -c 'import json,sys
try: v = json.loads(sys.argv[1]).get(sys.argv[2])
except ValueError: v = None
print("" if v is None else v)' "$1" "$2"
}

# The checksum the backend reports for SIZE bytes of the pattern: one upload straight to it.
log "reference: $SIZE_MIB MiB uploaded straight to the backend"
client upload "$P_BACKEND"
REF=$CLIENT_OUT
REF_SUM=$(json_field "$REF" checksum)
[[ $(json_field "$REF" ok) == True && -n $REF_SUM ]] || die "the reference upload failed: $REF"

# target kind round seconds mib_per_s rss_before_kib hwm_after_kib user_ticks sys_ticks ok error
RESULTS="$TMP/results.tsv"
: >"$RESULTS"

transfer() {  # TARGET KIND ROUND
    local t=$1 kind=$2 round=$3 pids="" before=NaN hwm=NaN u0=0 s0=0 u1=0 s1=0 out ok err secs rate sum
    if [[ $t != direct ]]; then
        pids=$(proc_tree "$t" | tr '\n' ' ')
        # shellcheck disable=SC2086  # one pid per word
        reset_hwm $pids || issue "$t: cannot reset VmHWM (clear_refs); its peak is since start"
        # shellcheck disable=SC2086
        before=$(status_kb VmRSS $pids)
        # shellcheck disable=SC2086
        read -r u0 s0 < <(cpu_ticks $pids)
    fi
    client "$kind" "${PORT[$t]}"
    out=$CLIENT_OUT
    if [[ $t != direct ]]; then
        # shellcheck disable=SC2086
        hwm=$(status_kb VmHWM $pids)
        # shellcheck disable=SC2086
        read -r u1 s1 < <(cpu_ticks $pids)
    fi
    ok=$(json_field "$out" ok)
    err=$(json_field "$out" error)
    secs=$(json_field "$out" seconds)
    [[ -n $out ]] || err="no output from the client (killed after ${TIMEOUT} s?)"
    if [[ $kind == upload* && $ok == True ]]; then
        sum=$(json_field "$out" checksum)
        [[ $sum == "$REF_SUM" ]] || { ok=False; err="checksum $sum, not $REF_SUM as uploaded straight"; }
    fi
    [[ $ok == True ]] || issue "$t $kind round $round: ${err:-failed: $out}"
    if [[ $t != direct ]] && ! alive "$t"; then
        issue "$t $kind round $round: $t died; log: $(tail -5 "$TMP/$t.log" | tr '\n' ' ')"
    fi
    rate=$(awk -v s="${secs:-0}" -v m="$SIZE_MIB" 'BEGIN { if (s > 0) printf "%.1f", m / s; else print "NaN" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$kind" "$round" "${secs:-NaN}" "$rate" \
        "$before" "$hwm" $((u1 - u0)) $((s1 - s0)) "${ok:-False}" "${err:-}" >>"$RESULTS"
    log "$t $kind round $round: ${secs:-?} s, $rate MiB/s, RSS $before -> peak $hwm KiB${err:+, ERROR: $err}"
}

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    for kind in "${KINDS[@]}"; do
        for t in $TARGETS; do
            if [[ $t != direct ]] && ! alive "$t"; then
                issue "$t $kind round $round: skipped, $t is not running"; continue
            fi
            transfer "$t" "$kind" "$round"
        done
    done
done

rouse_log_issue

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
{
    echo "# rouse large-body throughput, $STAMP"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    machine_lines "$LOADAVG_START"
    echo "- versions: $(first_line "$NGINX" -v); $(first_line "$HAPROXY" -v); $(first_line "$ROUSE" --version); $(first_line python3 --version)"
    echo "- backend: rouse-test-backend on CPU $BACKEND_CPU: \`GET /bytes/$SIZE?length\` streams the pattern of crates/e2e/src/pattern.rs with a Content-Length, \`POST /count\` reads the body and answers its length and checksum"
    echo "- client: \`bench/throughput-client.py\` on CPU $BACKEND_CPU, one connection per transfer, $SIZE_MIB MiB: download (every byte compared with the pattern at its offset), upload with \`Content-Length\`, upload chunked (256 KiB chunks); both uploads must reach the backend with the length and checksum of a reference upload made straight to it; time = connect to the last byte of the answer"
    echo "- proxies, one worker/thread each on CPU $PROXY_CPU, request bodies streamed (buffering a 1 GiB upload means a temp file in nginx and rouse alike), response buffering **$RESPONSE_BUFFERING**: nginx \`client_max_body_size 0\`, \`proxy_request_buffering off\`, \`$NGINX_RESPONSE\`, upstream keep-alive; HAProxy \`nbthread 1\`, \`mode http\` (it streams bodies through its buffers, no disk); rouse \`threads = 1\`, \`max_request_body = 0\`, \`request_buffering = false\`, \`${ROUSE_RESPONSE//$'\n'/\`, \`}\`"
    echo "- RSS growth: the proxy's VmHWM after the transfer minus its VmRSS before it, the peak reset just before (\`echo 5 > /proc/PID/clear_refs\`), summed over nginx's master and worker; CPU: user + system time of those processes during the transfer"
    echo
    python3 - "$RESULTS" "$CLK_TCK" <<'EOF'
import math, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
tick = 1.0 / float(sys.argv[2])
def num(x):
    try:
        v = float(x)
        return None if math.isnan(v) else v
    except ValueError:
        return None
def cell(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(vals))}–{fmt(max(vals))})"
names = {"direct": "backend direct", "nginx": "nginx", "haproxy": "HAProxy", "rouse": "rouse"}
titles = {"download": "Download (GET, Content-Length)", "upload": "Upload (POST, Content-Length)",
          "upload-chunked": "Upload (POST, chunked)"}
for kind in ["download", "upload", "upload-chunked"]:
    sel = [r for r in rows if r[1] == kind]
    if not sel:
        continue
    print(f"## {titles[kind]}: median (min–max) over rounds")
    print()
    print("| target | rounds | MiB/s | vs nginx | RSS growth MiB | CPU s (user + sys) | intact |")
    print("|---|---|---|---|---|---|---|")
    good = lambda rs: [num(r[4]) for r in rs if r[9] == "True"]
    ref = [v for v in good([r for r in sel if r[0] == "nginx"]) if v is not None]
    ref = statistics.median(ref) if ref else None
    for t in ["direct", "nginx", "haproxy", "rouse"]:
        rs = [r for r in sel if r[0] == t]
        if not rs:
            continue
        rates = good(rs)
        med = [v for v in rates if v is not None]
        vs = f"{statistics.median(med) / ref:.2f}x" if med and ref else "—"
        if t == "direct":
            growth, cpu = "—", "—"
        else:
            growth = cell([(num(r[6]) - num(r[5])) / 1024 if num(r[6]) is not None and num(r[5]) is not None else None
                           for r in rs], lambda v: f"{round(v, 1) + 0.0:.1f}")
            cpu = cell([(int(r[7]) + int(r[8])) * tick for r in rs], lambda v: f"{v:.2f}")
        intact = sum(1 for r in rs if r[9] == "True")
        print(f"| {names[t]} | {len(rs)} | {cell(rates, lambda v: f'{v:.0f}')} | {vs} | {growth} | {cpu} | {intact}/{len(rs)} |")
    print()
EOF
    echo "## Issues"
    echo
    if [[ -s $ISSUES ]]; then cat "$ISSUES"; else echo "none"; fi
    raw_results "target, kind, round, seconds, MiB/s, RSS before KiB, peak RSS after KiB, user ticks, system ticks, intact, error"
} >"$OUT_FILE"

end_report
