# Shared by bench/wake.sh and bench/wake-supervisord.sh: source it, do not run it.
#
# Before sourcing, set SCRIPT_NAME (log prefix). The functions below use these globals, which
# the sourcing script sets: PYTHON (python3), ROOT (workspace), TMP, ISSUES (issues file),
# ROUSE_PID (the rouse being measured, or empty).
# shellcheck shell=bash

log() { printf '[%s %s] %s\n' "$SCRIPT_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
issue() { log "ISSUE: $*"; printf -- '- %s\n' "$*" >>"$ISSUES"; }

# build_binaries : sets ROUSE and BACKEND (absolute paths). Builds unless ROUSE_BIN and
# BACKEND_BIN are both set.
build_binaries() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    if [[ -z ${ROUSE_BIN:-} || -z ${BACKEND_BIN:-} ]]; then
        log "building (cargo build --release -p rouse -p rouse-e2e --bins, target dir $target)"
        (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build --release -p rouse -p rouse-e2e --bins) \
            || die "cargo build --release -p rouse -p rouse-e2e --bins failed"
    fi
    ROUSE=${ROUSE_BIN:-$target/release/rouse}
    BACKEND=${BACKEND_BIN:-$target/release/rouse-test-backend}
    [[ -x $ROUSE ]] || die "no rouse binary at $ROUSE"
    [[ -x $BACKEND ]] || die "no rouse-test-backend binary at $BACKEND"
    ROUSE=$(cd "$(dirname "$ROUSE")" && pwd)/$(basename "$ROUSE")
    BACKEND=$(cd "$(dirname "$BACKEND")" && pwd)/$(basename "$BACKEND")
}

# kill_group PID : TERM to the process group led by PID, then KILL after 3 s (bounded)
kill_group() {
    local pid=$1
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

# stop_parent NAME PID SECONDS : SIGTERM (graceful: it stops its children), SIGKILL after
# SECONDS; then any child it left behind is killed (as a group) and reported.
stop_parent() {
    local name=$1 pid=$2 secs=$3 children c
    [[ -n $pid ]] || return 0
    children=$(pgrep -P "$pid" 2>/dev/null || true)
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq $((secs * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            issue "$name (pid $pid) ignored SIGTERM for $secs s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    for c in $children; do
        if kill -0 "$c" 2>/dev/null; then
            issue "$name's child pid $c ($(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null || echo '?')) outlived $name; killed"
            kill_group "$c"
        fi
    done
}

# stop_rouse : rouse stops its embedded children itself; 10 s, then SIGKILL.
stop_rouse() {
    stop_parent rouse "$ROUSE_PID" 10
    ROUSE_PID=""
}

# stop_supervisord : supervisord stops its programs, as groups; 30 s, then SIGKILL.
stop_supervisord() {
    stop_parent supervisord "${SUPD_PID:-}" 30
    SUPD_PID=""
}

# apt_install PACKAGE... : apt-get install -y (root, or sudo -n), with apt-get update and a
# second try.
apt_install() {
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "installing $* needs root (apt-get install -y $*)"
        sudo=(sudo -n)
    fi
    log "missing: apt-get install -y $*"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; then
        "${sudo[@]}" apt-get update || die "apt-get update failed"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" || die "apt-get install -y $* failed"
    fi
}

# need_supervisord : Debian's supervisor package when missing (its system service stopped: the
# benchmarks run supervisord instances of their own); sets SUPERVISORD and SUPERVISORCTL.
need_supervisord() {
    if ! command -v supervisord >/dev/null 2>&1 || ! command -v supervisorctl >/dev/null 2>&1; then
        apt_install supervisor
        if ((EUID == 0)); then
            service supervisor stop >/dev/null 2>&1 || true
        else
            sudo -n service supervisor stop >/dev/null 2>&1 || true
        fi
        command -v supervisord >/dev/null 2>&1 || die "supervisord still missing after apt-get install"
    fi
    # shellcheck disable=SC2034  # used by the scripts that source this file
    SUPERVISORD=$(command -v supervisord)
    # shellcheck disable=SC2034
    SUPERVISORCTL=$(command -v supervisorctl)
}

# supervisord_conf_head PORT PREFIX : the head of a supervisord.conf (HTTP on 127.0.0.1:PORT with
# $SD_USER/$SD_PASS, log and pid files at PREFIXsupervisord.*, children's logs in $TMP), to which
# the caller appends its [program:...] sections.
supervisord_conf_head() {
    cat <<EOF
[inet_http_server]
port = 127.0.0.1:$1
username = $SD_USER
password = $SD_PASS

[supervisord]
nodaemon = true
logfile = $2supervisord.log
loglevel = info
pidfile = $2supervisord.pid
childlogdir = $TMP

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = http://127.0.0.1:$1
username = $SD_USER
password = $SD_PASS
EOF
}

free_ports() {  # N : N free 127.0.0.1 ports
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

port_accepts() {  # PORT : 0 when 127.0.0.1:PORT accepts a connection
    "$PYTHON" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.5).close()" \
        "$1" 2>/dev/null
}

wait_listen() {  # PORT [PID] : bounded (10 s); gives up early when PID (default: rouse) dies
    local pid=${2:-$ROUSE_PID}
    for _ in $(seq 100); do
        port_accepts "$1" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Load: "busy" means a 1-minute load average above nproc/2.
NCPU=$(nproc)
load_busy() {  # [LOAD] : 0 when LOAD (default: the current 1-min load average) > nproc/2
    awk -v l="${1:-$(cut -d' ' -f1 /proc/loadavg)}" -v n="$NCPU" 'BEGIN { exit !(l > n / 2) }'
}
wait_idle() {  # SECONDS : bounded wait for the load to fall (e.g. right after the build)
    local bound=$1 waited=0
    if load_busy && ((bound > 0)); then
        log "load average $(cut -d' ' -f1-3 /proc/loadavg) > nproc/2; waiting up to ${bound}s for it to fall"
        while load_busy && ((waited < bound)); do sleep 5; waited=$((waited + 5)); done
    fi
}
# busy_warning "LOADAVG_START" "LOADAVG_END" : the report's warning line, if either was busy
busy_warning() {
    local la
    for la in "$@"; do
        if load_busy "${la%% *}"; then
            echo "- **WARNING: the machine was busy** (1-min load average ${la%% *} > nproc/2 = $(awk -v n="$NCPU" 'BEGIN{print n/2}')): other processes competed for the CPUs; treat these numbers as noisy"
            return 0
        fi
    done
}

first_line() { "$@" 2>&1 | head -1 || true; }

cpu_model() {
    local m
    m=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    [[ -n $m ]] || m=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ {print $2; exit}')
    echo "${m:-unknown CPU}"
}

git_rev() {  # short commit of the workspace, noting uncommitted changes under crates/
    local rev
    rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(cd "$ROOT" && git status --porcelain -- crates 2>/dev/null) ]]; then rev="$rev (crates/ has uncommitted changes)"; fi
    echo "$rev"
}
