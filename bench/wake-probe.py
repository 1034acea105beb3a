"""Wake-latency probe, shared by bench/wake.sh and bench/wake-supervisord.sh.

One run of cycles against one running rouse. Monotonic clock; 127.0.0.1 only; every wait bounded.
Prints one line per measured cycle:
    ROW <backend> <ready> <cycle> <(a) own listen> <cold via rouse> <warm via rouse> <direct> <s waited for cold>
(times in ms), and ISSUE lines. With --sd-url, each row ends with one more column: (f), the time
from an XML-RPC startProcess(--sd-program, wait=false) straight to that supervisord until the
program's --sd-port accepts, without rouse.
"""
import argparse, http.client, json, os, signal, socket, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--backend", required=True)        # label
ap.add_argument("--ready", required=True)          # label
ap.add_argument("--rouse-port", type=int, required=True)
ap.add_argument("--rouse-pid", type=int, required=True)
ap.add_argument("--backend-port", type=int, required=True)   # the port rouse's server listens on
ap.add_argument("--direct-cmd", required=True)     # JSON argv of the same backend on --direct-port
ap.add_argument("--direct-port", type=int, required=True)
ap.add_argument("--direct-cwd", default=None)
ap.add_argument("--direct-log", required=True)
ap.add_argument("--pidfile", required=True)
ap.add_argument("--expect", required=True)         # substring of a good GET / body
ap.add_argument("--cycles", type=int, required=True)
ap.add_argument("--warmup", type=int, default=0)
ap.add_argument("--settle-ms", type=int, default=100)
ap.add_argument("--cold-wait-s", type=float, default=30.0)
ap.add_argument("--request-timeout-s", type=float, default=40.0)
# Optional, for a supervisord: the cold state also needs this command (JSON argv, e.g.
# supervisorctl status app0) to print --cold-word as a whole word; polled, bounded by --cold-wait-s.
ap.add_argument("--cold-cmd", default=None)
ap.add_argument("--cold-word", default="STOPPED")
# Optional, repeatable: LABEL=PID of another process that must stay alive (e.g. supervisord).
ap.add_argument("--watch-pid", action="append", default=[])
# Optional: time a supervisord program started directly, without rouse (see the docstring).
ap.add_argument("--sd-url", default=None)          # http://user:password@127.0.0.1:PORT/RPC2
ap.add_argument("--sd-program", default=None)
ap.add_argument("--sd-port", type=int, default=None)
args = ap.parse_args()
WATCHED = [("rouse", args.rouse_pid)] + [(w.split("=", 1)[0], int(w.split("=", 1)[1])) for w in args.watch_pid]

POLL = 0.0005  # 0.5 ms between connect attempts
LISTEN_BOUND = 20.0


class Failure(Exception):
    pass


def issue(msg):
    print(f"ISSUE\t{args.backend}, ready={args.ready}: {msg}", flush=True)


def accepts(port):
    s = socket.socket()
    try:
        s.settimeout(1.0)
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_refused(port, bound):
    deadline = time.monotonic() + bound
    while accepts(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def stop(p):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=3)


def listen_time():
    """exec of the backend -> its port accepts a TCP connection, in ms."""
    if not wait_refused(args.direct_port, 5):
        raise Failure(f"127.0.0.1:{args.direct_port} is busy before the direct start")
    cmd = json.loads(args.direct_cmd)
    with open(args.direct_log, "ab") as logf:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                             cwd=args.direct_cwd, start_new_session=True)
    with open(args.pidfile, "w") as f:
        f.write(str(p.pid))
    try:
        deadline = t0 + LISTEN_BOUND
        while True:
            if accepts(args.direct_port):
                t1 = time.monotonic()
                break
            if p.poll() is not None:
                raise Failure(f"the directly started backend exited with {p.returncode} before listening")
            if time.monotonic() > deadline:
                raise Failure(f"the directly started backend did not listen within {LISTEN_BOUND:.0f} s")
            time.sleep(POLL)
    finally:
        stop(p)
        os.unlink(args.pidfile)
    if not wait_refused(args.direct_port, 5):
        raise Failure("the directly started backend still accepts 5 s after being stopped")
    return (t1 - t0) * 1000


def supervisord_time():
    """startProcess(program, wait=false) on a fresh connection -> the program's port accepts, in ms;
    then stopProcess(wait=true)."""
    import xmlrpc.client
    if not wait_refused(args.sd_port, 5):
        raise Failure(f"127.0.0.1:{args.sd_port} is busy before the start through supervisord")
    sd = xmlrpc.client.ServerProxy(args.sd_url)
    try:
        t0 = time.monotonic()
        sd.supervisor.startProcess(args.sd_program, False)
        deadline = t0 + LISTEN_BOUND
        while not accepts(args.sd_port):
            if time.monotonic() > deadline:
                raise Failure(f"{args.sd_program} started through supervisord did not listen within "
                              f"{LISTEN_BOUND:.0f} s")
            time.sleep(POLL)
        t1 = time.monotonic()
        sd.supervisor.stopProcess(args.sd_program, True)
    except (OSError, xmlrpc.client.Error) as e:
        raise Failure(f"{args.sd_program} through supervisord: {type(e).__name__}: {e}")
    if not wait_refused(args.sd_port, 5):
        raise Failure(f"{args.sd_program} still accepts 5 s after supervisord stopped it")
    return (t1 - t0) * 1000


def get(port, what):
    """GET / on a fresh connection until the whole body is read, in ms."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=args.request_timeout_s)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
    except (OSError, http.client.HTTPException) as e:
        raise Failure(f"{what}: {type(e).__name__}: {e} after {(time.monotonic() - t0) * 1000:.1f} ms")
    finally:
        c.close()
    t1 = time.monotonic()
    text = body.decode("utf-8", "replace")
    if r.status != 200 or args.expect not in text:
        raise Failure(f"{what}: wrong answer after {(t1 - t0) * 1000:.1f} ms: {r.status} "
                      f"{r.reason}; body {text[:160]!r}")
    return (t1 - t0) * 1000


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def cold_cmd_says_word(deadline):
    """Polls --cold-cmd until its output has --cold-word; False at the deadline. Returns (ok, last output)."""
    cmd = json.loads(args.cold_cmd)
    out = ""
    while True:
        try:
            # supervisorctl status exits 3 for a process that is not running: only the text counts
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=max(1.0, min(10.0, deadline - time.monotonic())))
            out = (r.stdout + r.stderr).strip()
            if args.cold_word in out.split():
                return True, out
        except subprocess.TimeoutExpired:
            out = "(timed out)"
        if time.monotonic() > deadline:
            return False, out
        time.sleep(0.02)


consecutive = 0
for i in range(-args.warmup, args.cycles):
    label = f"cycle {i + 1}" if i >= 0 else f"warm-up {i + args.warmup + 1}"
    dead = [name for name, pid in WATCHED if not alive(pid)]
    if dead:
        issue(f"{' and '.join(dead)} died; stopping the run at {label}")
        sys.exit(2)
    try:
        # cold state: rouse stopped its server for idleness (its port refuses connections)
        t = time.monotonic()
        if args.cold_cmd:
            ok, out = cold_cmd_says_word(t + args.cold_wait_s)
            if not ok:
                raise Failure(f"{' '.join(json.loads(args.cold_cmd)[-2:])} does not say {args.cold_word} "
                              f"{args.cold_wait_s:.0f} s after the last request (not stopped for idleness); "
                              f"it says {out[:200]!r}")
        if not wait_refused(args.backend_port, args.cold_wait_s):
            raise Failure(f"the server on 127.0.0.1:{args.backend_port} still accepts "
                          f"{args.cold_wait_s:.0f} s after the last request (not stopped for idleness)")
        cold_wait = time.monotonic() - t
        a = listen_time()
        f = supervisord_time() if args.sd_url else None
        time.sleep(args.settle_ms / 1000)
        b = get(args.rouse_port, "cold request through rouse")
        d = get(args.rouse_port, "warm request through rouse")
        e = get(args.backend_port, "warm request straight to the backend")
        consecutive = 0
        if i >= 0:
            extra = f"\t{f:.3f}" if f is not None else ""
            print(f"ROW\t{args.backend}\t{args.ready}\t{i + 1}\t{a:.3f}\t{b:.3f}\t{d:.3f}\t{e:.3f}\t{cold_wait:.3f}{extra}",
                  flush=True)
    except Failure as err:
        issue(f"{label}: {err}")
        consecutive += 1
        if consecutive >= 3:
            issue("3 failed cycles in a row; stopping this run")
            sys.exit(2)
