#!/usr/bin/env bash
# The Debian package's smoke test on this machine, without systemctl (systemd is not PID 1 in
# a container or CI): install the .deb, check what it installed, run the installed binary with
# the installed config as user rouse the way rouse.service would (its ExecStart, its
# environment, a NOTIFY_SOCKET played by python3), wake the embedded backend with a request,
# reload, stop, then remove and purge and check that nothing is left. Runs as root.
#   scripts/package-test.sh [PATH.deb]      (default: build it with scripts/package.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# Every wait below is bounded by this many seconds.
WAIT=30
UNIT=/usr/lib/systemd/system/rouse.service

fail() {
    echo "package-test: FAIL: $*" >&2
    exit 1
}
step() { echo "-- $*"; }

[[ $EUID -eq 0 ]] || fail "run it as root: it installs and removes a package and switches users"
deb="${1:-$(scripts/package.sh)}"
[[ -f "$deb" ]] || fail "no package at $deb"

work=$(mktemp -d /tmp/rouse-package-test.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work" /run/rouse
    if dpkg-query -W -f='${Status}' rouse 2>/dev/null | grep -q "installed\|config-files"; then
        dpkg --purge rouse >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# A clean start: a package left by an interrupted run is purged first.
if dpkg-query -W -f='${Status}' rouse 2>/dev/null | grep -q "installed\|config-files"; then
    dpkg --purge rouse >/dev/null
fi

step "dpkg -i $(basename "$deb")"
export DEBIAN_FRONTEND=noninteractive
if ! timeout 120 dpkg -i "$deb"; then
    # Depends that are missing: apt brings them, and finishes the configuration.
    timeout 300 apt-get install -y -qq -f
fi
[[ "$(dpkg-query -W -f='${Status}' rouse)" == "install ok installed" ]] || fail "not installed"

step "user, files, conffile"
getent passwd rouse | grep -q ":/var/lib/rouse:/usr/sbin/nologin$" ||
    fail "no rouse system user: $(getent passwd rouse || true)"
getent group rouse >/dev/null || fail "no rouse group"
[[ -x /usr/bin/rouse ]] || fail "/usr/bin/rouse"
[[ -f $UNIT ]] || fail "$UNIT"
[[ "$(stat -c '%U:%G %a' /etc/rouse/rouse.toml)" == "root:rouse 640" ]] ||
    fail "/etc/rouse/rouse.toml is $(stat -c '%U:%G %a' /etc/rouse/rouse.toml)"
for dir in /var/lib/rouse /var/log/rouse; do
    [[ "$(stat -c '%U:%G' "$dir")" == "rouse:rouse" ]] || fail "$dir is $(stat -c '%U:%G' "$dir")"
done
dpkg-query -W -f='${Conffiles}\n' rouse | grep -q "^ /etc/rouse/rouse.toml [0-9a-f]\{32\}$" ||
    fail "/etc/rouse/rouse.toml is not a conffile: $(dpkg-query -W -f='${Conffiles}' rouse)"
echo "conffiles:$(dpkg-query -W -f='${Conffiles}' rouse)"
# The unit as systemd would read it (a parse that needs no running systemd).
if command -v systemd-analyze >/dev/null; then
    timeout "$WAIT" systemd-analyze verify "$UNIT" || fail "systemd-analyze verify $UNIT"
fi

# The installed config listens on 8080 and 9900 and runs its backend on 9101; the test edits
# those ports, as an operator would, to free ones: tests never take fixed ports.
free_port() {
    python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}
p_http=$(free_port)
p_admin=$(free_port)
p_app=$(free_port)
sed -i -e "s/127\.0\.0\.1:8080/127.0.0.1:$p_http/; s/127\.0\.0\.1:9900/127.0.0.1:$p_admin/" \
    -e "s/9101/$p_app/g" /etc/rouse/rouse.toml
grep -q "127.0.0.1:$p_http" /etc/rouse/rouse.toml && grep -q "\"$p_app\"" /etc/rouse/rouse.toml ||
    fail "the installed config's ports are not where the test expects them"

step "rouse check (no -c: the lookup finds /etc/rouse/rouse.toml)"
check=$(cd "$work" && env -u ROUSE_CONFIG timeout "$WAIT" runuser -u rouse -- /usr/bin/rouse check)
echo "$check"
grep -q "^config: /etc/rouse/rouse.toml (found in /etc/rouse)$" <<<"$check" || fail "check read another file"

step "run as rouse.service would"
# ExecStart as written in the installed unit; User=, the capability and the environment
# systemd gives (RUNTIME_DIRECTORY made for User=). WATCHDOG_USEC is 2 s instead of the
# unit's 30 s, so that pings are seen within the test.
exec_start=$(sed -n 's/^ExecStart=//p' "$UNIT")
[[ -n "$exec_start" ]] || fail "no ExecStart in $UNIT"
install -d -o rouse -g rouse -m 0755 /run/rouse
notify="$work/notify.sock"
messages="$work/notify.log"
python3 - "$notify" "$messages" <<'PY' &
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)  # rouse runs as another user
with open(out, "a", buffering=1) as f:
    f.write("listening\n")
    while True:
        f.write(s.recv(4096).decode().replace("\n", " ").strip() + "\n")
PY
pids+=($!)
wait_for() { # PATTERN FILE: a line matching PATTERN appears in FILE within WAIT seconds
    local deadline=$((SECONDS + WAIT))
    until grep -q -- "$1" "$2" 2>/dev/null; do
        ((SECONDS < deadline)) || fail "no '$1' in $2 after ${WAIT}s: $(cat "$2" 2>/dev/null)"
        sleep 0.1
    done
}
wait_for "^listening$" "$messages"
# shellcheck disable=SC2086 # ExecStart is split into words as systemd would.
(cd / && exec setpriv --reuid=rouse --regid=rouse --init-groups --no-new-privs \
    --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \
    env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/var/lib/rouse USER=rouse \
    LOGNAME=rouse SHELL=/usr/sbin/nologin NOTIFY_SOCKET="$notify" WATCHDOG_USEC=2000000 \
    RUNTIME_DIRECTORY=/run/rouse STATE_DIRECTORY=/var/lib/rouse LOGS_DIRECTORY=/var/log/rouse \
    $exec_start) >"$work/rouse.log" 2>&1 &
rouse_pid=$!
pids+=("$rouse_pid")
wait_for "READY=1" "$messages"
grep -qx "READY=1 MAINPID=$rouse_pid" "$messages" || fail "READY=1 without MAINPID=$rouse_pid: $(cat "$messages")"
[[ "$(ps -o user= -p "$rouse_pid")" == rouse ]] || fail "rouse runs as $(ps -o user= -p "$rouse_pid")"
grep "READY=1" "$messages"

step "a request wakes the embedded backend"
body=$(timeout "$WAIT" python3 -c '
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/README.md", timeout=20).read().decode())' "$p_http")
grep -q "^# rouse" <<<"$body" || fail "unexpected answer: ${body:0:200}"
backend=$(pgrep -f "http.server --bind 127.0.0.1 --directory /usr/share/doc/rouse" || true)
[[ -n "$backend" ]] || fail "no backend process"
[[ "$(ps -o user= -p "$backend")" == rouse ]] || fail "the backend runs as $(ps -o user= -p "$backend")"
wait_for "GET /README.md" /var/log/rouse/docs0.log
# The embedded supervisor's state file, in $RUNTIME_DIRECTORY as under systemd.
ls /run/rouse/embedded-*.pgids >/dev/null 2>&1 || fail "no state file in /run/rouse: $(ls -la /run/rouse)"
echo "backend pid $backend (user rouse), /var/log/rouse/docs0.log: $(tail -n1 /var/log/rouse/docs0.log)"
status=$(cd "$work" && timeout "$WAIT" /usr/bin/rouse status)
echo "$status"
grep -q "docs" <<<"$status" || fail "rouse status (no -c) does not show the docs upstream"

step "watchdog"
wait_for "WATCHDOG=1" "$messages"

step "SIGHUP (systemctl reload)"
kill -HUP "$rouse_pid"
wait_for "RELOADING=1 MONOTONIC_USEC=" "$messages"
wait_for "READY=1 STATUS=serving; configuration reloaded" "$messages"
grep "RELOADING=1\|STATUS=serving; configuration reloaded" "$messages"

step "SIGTERM (systemctl stop)"
kill -TERM "$rouse_pid"
wait_for "STOPPING=1" "$messages"
deadline=$((SECONDS + 60))
while kill -0 "$rouse_pid" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "rouse still runs 60 s after SIGTERM (TimeoutStopSec)"
    sleep 0.1
done
wait "$rouse_pid" || fail "rouse exited $?: $(cat "$work/rouse.log")"
if kill -0 "$backend" 2>/dev/null; then fail "the backend outlived rouse"; fi
grep "STOPPING=1" "$messages"
echo "rouse's log:"
sed 's/^/  /' "$work/rouse.log"

if command -v systemd-socket-activate >/dev/null; then
    step "socket activation by systemd's own systemd-socket-activate (as rouse.socket would)"
    # It binds the installed config's two addresses as root, then, at the first connect,
    # execs the unit's command with LISTEN_FDS=2, LISTEN_PID and LISTEN_FDNAMES.
    # shellcheck disable=SC2086
    (cd / && exec systemd-socket-activate -l "127.0.0.1:$p_http" -l "127.0.0.1:$p_admin" \
        --fdname=rouse-http:rouse-admin \
        setpriv --reuid=rouse --regid=rouse --init-groups --no-new-privs $exec_start) \
        >"$work/activated.log" 2>&1 &
    activated_pid=$!
    pids+=("$activated_pid")
    wait_for "Listening on 127.0.0.1:$p_admin" "$work/activated.log"
    body=$(timeout "$WAIT" python3 -c '
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/README.md", timeout=20).read().decode())' "$p_http")
    grep -q "^# rouse" <<<"$body" || fail "unexpected answer through the passed socket: ${body:0:200}"
    wait_for "listening on the sockets systemd passed" "$work/activated.log"
    grep "sockets systemd passed" "$work/activated.log"
    kill -TERM "$activated_pid"
    deadline=$((SECONDS + 60))
    while kill -0 "$activated_pid" 2>/dev/null; do
        ((SECONDS < deadline)) || fail "the activated rouse still runs 60 s after SIGTERM"
        sleep 0.1
    done
    wait "$activated_pid" || fail "the activated rouse exited $?: $(cat "$work/activated.log")"
fi

step "dpkg -r, then --purge"
timeout 120 dpkg -r rouse
[[ ! -e /usr/bin/rouse && ! -e $UNIT ]] || fail "files left after dpkg -r"
[[ -f /etc/rouse/rouse.toml ]] || fail "dpkg -r removed the conffile (only --purge should)"
timeout 120 dpkg --purge rouse
for path in /etc/rouse /var/lib/rouse /var/log/rouse; do
    [[ ! -e $path ]] || fail "$path left after purge"
done
if dpkg-query -W -f='${Status}' rouse 2>/dev/null | grep -q "installed\|config-files"; then
    fail "still known to dpkg: $(dpkg-query -W -f='${Status}' rouse)"
fi
echo "package-test: ok"
