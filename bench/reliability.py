"""Clients of bench/reliability.sh: raw HTTP/1.1 over asyncio, every request counted.

Subcommands (each prints one JSON object on stdout; 127.0.0.1 only; every loop and every wait
bounded in time):
  slowloris  N connections trickle a request head one byte at a time, while normal clients
             measure that other requests are still served
  burst      N connections opened at once, each sends one request
  uploads    N POSTs whose bodies trickle in, while normal clients measure the app's service
  load       a counting load for a fixed time (the chaos runs)
  report     the markdown tables of every JSON result in a folder

Accounting, everywhere: every request started is exactly one of: answered (by status code),
an error (by kind), or a timeout; `sent == answered + errors + timeouts` is checked by report.
"""
import argparse
import asyncio
import errno
import json
import os
import random
import resource
import selectors
import socket
import struct
import sys
import time

HOST = "127.0.0.1"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pct(values, p):
    """Nearest-rank percentile, in the unit given; None when empty."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]


def error_kind(e):
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, BrokenPipeError):
        return "broken_pipe"
    if isinstance(e, asyncio.IncompleteReadError):
        return "eof_before_response" if not e.partial else "eof_mid_response"
    if isinstance(e, asyncio.LimitOverrunError):
        return "head_too_large"
    if isinstance(e, ValueError):
        return "bad_response"
    if isinstance(e, OSError):
        return f"oserror_{e.errno}"
    return type(e).__name__


class Tally:
    """Every request: answered by status, errors by kind, timeouts; latencies of answers."""

    def __init__(self):
        self.sent = 0
        self.status = {}
        self.errors = {}
        self.timeouts = 0
        self.rouse_errors = {}   # x-rouse-error values of answers
        self.latencies = []      # seconds, answered requests
        self.ok_times = []       # monotonic time of each 2xx, for outage windows

    def answered(self, status, latency, headers):
        self.status[str(status)] = self.status.get(str(status), 0) + 1
        self.latencies.append(latency)
        if 200 <= status < 300:
            self.ok_times.append(time.monotonic())
        why = headers.get("x-rouse-error")
        if why:
            self.rouse_errors[why] = self.rouse_errors.get(why, 0) + 1

    def error(self, kind):
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self, t0=None, t1=None):
        answered = sum(self.status.values())
        lat = [x * 1000 for x in self.latencies]
        out = {
            "sent": self.sent,
            "answered": answered,
            "status": dict(sorted(self.status.items())),
            "errors": dict(sorted(self.errors.items())),
            "timeouts": self.timeouts,
            "lost": self.sent - answered - sum(self.errors.values()) - self.timeouts,
            "rouse_errors": dict(sorted(self.rouse_errors.items())),
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "max_ms": max(lat) if lat else None,
        }
        if t0 is not None and t1 is not None:
            # The longest stretch of the run with no 2xx answer at all.
            marks = [t0] + sorted(self.ok_times) + [t1]
            out["longest_without_2xx_s"] = round(max(b - a for a, b in zip(marks, marks[1:])), 3)
        return out


async def read_response(reader, method="GET"):
    """(status, headers, body, keep_alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    keep_alive = parts[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", keep_alive
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return status, headers, bytes(body), keep_alive
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        return status, headers, body, keep_alive
    return status, headers, await reader.read(), False


def request_bytes(method, path, host="bench", body=b"", close=False, length=None):
    """A request head (and body); `length` declares a body sent later, separately."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if length is None and (body or method in ("POST", "PUT")):
        length = len(body)
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


async def close_writer(writer):
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 1)
    except Exception:
        pass


async def one_request(tally, port, path, timeout, method="GET", body=b""):
    """A request on a new connection (Connection: close), counted in tally."""
    tally.sent += 1
    t0 = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError as e:
                tally.error("connect_" + error_kind(e))
                return
            writer.write(request_bytes(method, path, body=body, close=True))
            await writer.drain()
            status, headers, _, _ = await read_response(reader, method)
            tally.answered(status, time.monotonic() - t0, headers)
    except TimeoutError:
        tally.timeouts += 1
    except Exception as e:  # counted, never lost
        tally.error(error_kind(e))
    finally:
        if writer is not None:
            await close_writer(writer)


async def normal_load(tally, port, path, workers, stop, timeout, pause=0.0):
    """`workers` loops of one request at a time until `stop` is set (each request bounded)."""

    async def worker():
        while not stop.is_set():
            await one_request(tally, port, path, timeout)
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(worker() for _ in range(workers)))


# ---------------------------------------------------------------------------------------------
# slowloris


async def slowloris(a):
    raise_fd_limit()
    head = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 4000
    t0 = time.monotonic()
    opened_at = {}      # connection index -> when it was connected
    closed_at = {}      # connection index -> when the server closed it
    answered_408 = {}   # index -> status the server answered before closing, if any
    # The first `silent` connections never send a byte; the others trickle a head.
    silent = lambda i: i % a.conns < a.silent
    connect_errors = {}
    opened = 0
    stop_all = asyncio.Event()

    async def slow(i):
        nonlocal opened
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, a.port), 10)
        except (OSError, TimeoutError) as e:
            k = error_kind(e) if isinstance(e, OSError) else "timeout"
            connect_errors[k] = connect_errors.get(k, 0) + 1
            return
        opened += 1
        opened_at[i] = time.monotonic()

        async def watch():
            # Whatever the server sends (a 408, or nothing) until it closes.
            try:
                data = await reader.read(65536)
                if data.startswith(b"HTTP/1."):
                    answered_408[i] = int(data.split(b" ", 2)[1])
                while data:
                    data = await reader.read(65536)
            except Exception:
                pass
            closed_at[i] = time.monotonic()

        watcher = asyncio.create_task(watch())
        try:
            for b in b"" if silent(i) else head:
                if watcher.done() or stop_all.is_set():
                    break
                try:
                    writer.write(bytes([b]))
                    await writer.drain()
                except Exception:
                    break
                try:
                    await asyncio.wait_for(asyncio.shield(watcher), a.interval)
                except TimeoutError:
                    pass
        finally:
            if not watcher.done():
                # Still open at the end of the run: we hang up ourselves.
                await asyncio.wait_for(stop_all.wait(), a.duration + 30)
            watcher.cancel()
            await close_writer(writer)

    async def opener():
        # Spread the opens over one second, as an attacker's script would.
        tasks = []
        for i in range(a.conns):
            tasks.append(asyncio.create_task(slow(i)))
            if i % max(1, a.conns // 20) == 0:
                await asyncio.sleep(0.05)
        return tasks

    normal = Tally()
    stop_normal = asyncio.Event()
    load = asyncio.create_task(normal_load(normal, a.port, "/", a.normal_workers, stop_normal, a.timeout, 0.01))
    tasks = await opener()
    open_at = {}
    for probe in sorted(a.probe):
        await asyncio.sleep(max(0, t0 + probe - time.monotonic()))
        still = [i for i in opened_at if i not in closed_at]
        open_at[str(probe)] = {"trickling": len([i for i in still if not silent(i)]),
                               "silent": len([i for i in still if silent(i)])}
    await asyncio.sleep(max(0, t0 + a.duration - time.monotonic()))
    stop_normal.set()
    stop_all.set()
    await asyncio.wait_for(load, a.timeout + 10)
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    end = t0 + a.duration
    lifetimes = {i: closed_at[i] - opened_at[i] for i in closed_at if closed_at[i] < end}
    closes = sorted(lifetimes.values())
    statuses = {}
    for s in answered_408.values():
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    return {
        "part": "slowloris",
        "target": a.target,
        "conns": a.conns,
        "silent": a.silent,
        "opened": opened,
        "connect_errors": connect_errors,
        "interval_s": a.interval,
        "duration_s": a.duration,
        "normal_workers": a.normal_workers,
        "open_at": open_at,
        "closed_by_server": {"trickling": len([i for i in lifetimes if not silent(i)]),
                             "silent": len([i for i in lifetimes if silent(i)])},
        "close_p50_s": pct(closes, 50),
        "close_max_s": closes[-1] if closes else None,
        "answered_before_close": statuses,
        "normal": normal.summary(),
    }


# ---------------------------------------------------------------------------------------------
# burst


TCP_INFO_TOTAL_RETRANS = 100  # offset of tcpi_total_retrans in Linux's struct tcp_info


def total_retrans(sock):
    """Segments this connection retransmitted, SYNs included (Linux TCP_INFO); None if unknown."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return struct.unpack_from("<I", info, TCP_INFO_TOTAL_RETRANS)[0]
    except (OSError, struct.error):
        return None


def burst(a):
    """Not asyncio: one asyncio task per connection costs the event loop about a second for
    5000 of them, which would hide the kernel's 1 s SYN retransmission. Non-blocking sockets
    and epoll instead: 5000 connect() calls go out in a few tens of ms, and each connection's
    times are taken when epoll reports it."""
    raise_fd_limit()
    tally = Tally()
    sel = selectors.DefaultSelector()
    connect_s, connected_at, answered_at, retrans = [], [], [], []
    request = request_bytes("GET", "/", close=True)
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    live = 0

    def finish(c, sock):
        nonlocal live
        live -= 1
        sel.unregister(sock)
        sock.close()

    def on_event(sock, c):
        now = time.monotonic()
        if c["state"] == "connecting":
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                tally.error("connect_" + error_kind(OSError(err, os.strerror(err))))
                finish(c, sock)
                return
            connect_s.append(now - c["start"])
            connected_at.append(now - t0)
            try:
                sock.send(request)  # small: fits the empty send buffer at once
            except OSError as e:
                tally.error(error_kind(e))
                finish(c, sock)
                return
            c["state"] = "reading"
            sel.modify(sock, selectors.EVENT_READ, c)
            return
        try:
            data = sock.recv(65536)
        except OSError as e:
            tally.error(error_kind(e))
            finish(c, sock)
            return
        if data:
            if not c["buf"]:
                c["retrans"] = total_retrans(sock)
            c["buf"] += data
            return
        # EOF: the whole answer (Connection: close)
        buf = bytes(c["buf"])
        if not buf:
            tally.error("eof_before_response")
        elif not buf.startswith(b"HTTP/1.") or b"\r\n\r\n" not in buf:
            tally.error("bad_response")
        else:
            status = int(buf.split(b" ", 2)[1])
            answered_at.append(now - t0)
            headers = {}
            for line in buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            tally.answered(status, now - c["start"], headers)
            if c["retrans"] is not None:
                retrans.append(c["retrans"])
        finish(c, sock)

    for i in range(a.conns):
        tally.sent += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        c = {"start": time.monotonic(), "state": "connecting", "buf": bytearray(), "retrans": None}
        err = sock.connect_ex((HOST, a.port))
        if err not in (0, errno.EINPROGRESS):
            tally.error("connect_" + error_kind(OSError(err, os.strerror(err))))
            sock.close()
            continue
        sel.register(sock, selectors.EVENT_WRITE, c)
        live += 1
        if i % 500 == 499:
            for key, _ in sel.select(0):
                on_event(key.fileobj, key.data)
    opened_in = time.monotonic() - t0
    while live and time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            on_event(key.fileobj, key.data)
    for key in list(sel.get_map().values()):  # past the bound: counted, then closed
        tally.timeouts += 1
        finish(key.data, key.fileobj)
    return {
        "part": "burst",
        "target": a.target,
        "round": a.round,
        "conns": a.conns,
        "opened_in_s": round(opened_in, 3),
        "all_connected_s": max(connected_at) if len(connected_at) == a.conns else None,
        "all_answered_s": max(answered_at) if len(answered_at) == a.conns else None,
        "last_connected_s": max(connected_at) if connected_at else None,
        "last_answered_s": max(answered_at) if answered_at else None,
        "connect_p50_ms": pct([x * 1000 for x in connect_s], 50),
        "connect_p99_ms": pct([x * 1000 for x in connect_s], 99),
        "connect_max_ms": max(connect_s) * 1000 if connect_s else None,
        "connects_over_1s": len([x for x in connect_s if x > 1.0]),
        "answers_over_1s": len([x for x in tally.latencies if x > 1.0]),
        "conns_with_retransmits": len([x for x in retrans if x > 0]),
        "requests": tally.summary(),
    }


# ---------------------------------------------------------------------------------------------
# uploads


async def uploads(a):
    raise_fd_limit()
    up = Tally()
    body_done_at = []
    t0 = time.monotonic()
    chunk = b"x" * a.chunk_size
    total = a.chunks * a.chunk_size

    async def upload(i):
        up.sent += 1
        writer = None
        start = time.monotonic()
        try:
            async with asyncio.timeout(a.timeout):
                try:
                    reader, writer = await asyncio.open_connection(HOST, a.port)
                except OSError as e:
                    up.error("connect_" + error_kind(e))
                    return
                writer.write(request_bytes("POST", "/upload", close=True, length=total))
                await writer.drain()
                # Each upload starts its trickle at a random point of the first interval.
                await asyncio.sleep(random.random() * a.interval)
                for _ in range(a.chunks):
                    writer.write(chunk)
                    await writer.drain()
                    await asyncio.sleep(a.interval)
                body_done_at.append(time.monotonic() - t0)
                status, headers, body, _ = await read_response(reader, "POST")
                if status == 200 and body.strip() != str(total).encode():
                    up.error("wrong_length_echoed")
                    return
                up.answered(status, time.monotonic() - start, headers)
        except TimeoutError:
            up.timeouts += 1
        except Exception as e:
            up.error(error_kind(e))
        finally:
            if writer is not None:
                await close_writer(writer)

    fast = Tally()
    stop = asyncio.Event()
    load = asyncio.create_task(normal_load(fast, a.port, "/fast", a.normal_workers, stop, a.normal_timeout, 0.01))
    await asyncio.gather(*(upload(i) for i in range(a.uploads)))
    trickle_end = time.monotonic() - t0
    stop.set()
    await asyncio.wait_for(load, a.normal_timeout + 10)
    return {
        "part": "uploads",
        "target": a.target,
        "uploads": a.uploads,
        "normal_workers": a.normal_workers,
        "body_bytes": total,
        "trickle_s": round(a.chunks * a.interval, 1),
        "window_s": round(trickle_end, 1),
        "uploads_result": up.summary(),
        "fast": fast.summary(),
        "fast_per_s": round(sum(fast.status.values()) / trickle_end, 1) if trickle_end else None,
    }


# ---------------------------------------------------------------------------------------------
# load (chaos)


async def load(a):
    raise_fd_limit()
    tally = Tally()
    t0 = time.monotonic()
    end = t0 + a.duration
    per_second = {}

    async def worker():
        reader = writer = None
        while time.monotonic() < end:
            tally.sent += 1
            start = time.monotonic()
            reused = writer is not None
            try:
                async with asyncio.timeout(a.timeout):
                    if writer is None:
                        try:
                            reader, writer = await asyncio.open_connection(HOST, a.port)
                        except OSError as e:
                            tally.error("connect_" + error_kind(e))
                            await asyncio.sleep(0.05)
                            continue
                    writer.write(request_bytes("GET", "/"))
                    await writer.drain()
                    status, headers, _, keep = await read_response(reader)
                    tally.answered(status, time.monotonic() - start, headers)
                    sec = str(int(start - t0))
                    per_second.setdefault(sec, {})
                    per_second[sec][str(status)] = per_second[sec].get(str(status), 0) + 1
                    if not keep:
                        await close_writer(writer)
                        reader = writer = None
            except TimeoutError:
                tally.timeouts += 1
                if writer is not None:
                    await close_writer(writer)
                reader = writer = None
            except Exception as e:
                kind = error_kind(e)
                # The server closed a kept-alive connection just as we reused it: as HTTP
                # allows; shown apart from failures of fresh connections.
                tally.error(kind + ("_on_reused" if reused else ""))
                if writer is not None:
                    await close_writer(writer)
                reader = writer = None
        if writer is not None:
            await close_writer(writer)

    await asyncio.gather(*(worker() for _ in range(a.workers)))
    t1 = time.monotonic()
    out = {"part": "chaos", "target": a.target, "workers": a.workers, "duration_s": a.duration,
           "took_s": round(t1 - t0, 1), **tally.summary(t0, t1)}
    out["per_second"] = per_second
    return out


# ---------------------------------------------------------------------------------------------
# report


def fmt(v, f="{:.0f}"):
    return "–" if v is None else f.format(v)


def kinds(d):
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "0"


def report(a):
    results = []
    for name in sorted(os.listdir(a.dir)):
        if name.endswith(".json"):
            with open(os.path.join(a.dir, name)) as f:
                try:
                    results.append(json.load(f))
                except ValueError:
                    print(f"ISSUE {name}: not JSON", file=sys.stderr)
    order = {"rouse": 0, "nginx": 1, "direct": 2, "d-embedded": 3, "d-supervisord": 4}
    results.sort(key=lambda r: (order.get(r.get("target"), 9), r.get("round", 0)))
    problems = []

    def check(label, t):
        if t["lost"] != 0:
            problems.append(f"{label}: {t['lost']} request(s) neither answered, failed nor timed out")

    by = lambda part: [r for r in results if r["part"] == part]
    if by("slowloris"):
        print("### a. slowloris\n")
        r0 = by("slowloris")[0]
        probes = list(r0["open_at"].keys())
        print(f"{r0['conns']} connections: {r0['conns'] - r0['silent']} send a request head one byte every "
              f"{r0['interval_s']} s (never finishing it), {r0['silent']} send nothing at all; the run lasts "
              f"{r0['duration_s']} s. Meanwhile {r0['normal_workers']} normal clients send `GET /`, one at a "
              "time each, on fresh connections. Open counts are trickling / silent.\n")
        print("| target | opened | " + " | ".join(f"still open at {p} s" for p in probes) +
              " | closed by the server | what it sent before closing | lifetime of a closed one, p50 / max s | normal requests: sent | 2xx | other answers | errors | timeouts | p50 ms | p99 ms |")
        print("|---|---|" + "---|" * len(probes) + "---|---|---|---|---|---|---|---|---|---|")
        for r in by("slowloris"):
            n = r["normal"]
            ok = sum(v for k, v in n["status"].items() if k.startswith("2"))
            other = {k: v for k, v in n["status"].items() if not k.startswith("2")}
            check(f"slowloris {r['target']} normal", n)
            cl = r["closed_by_server"]
            print(f"| {r['target']} | {r['opened']}{' (connect errors: ' + kinds(r['connect_errors']) + ')' if r['connect_errors'] else ''} | "
                  + " | ".join(f"{r['open_at'][p]['trickling']} / {r['open_at'][p]['silent']}" for p in probes)
                  + f" | {cl['trickling']} / {cl['silent']} | {kinds(r['answered_before_close']) if r['answered_before_close'] else 'nothing'} | "
                  f"{fmt(r['close_p50_s'], '{:.1f}')} / {fmt(r['close_max_s'], '{:.1f}')} | {n['sent']} | {ok} | {kinds(other)} | "
                  f"{kinds(n['errors'])} | {n['timeouts']} | {fmt(n['p50_ms'], '{:.1f}')} | {fmt(n['p99_ms'], '{:.1f}')} |")
        print()
    if by("burst"):
        print("### b. connections opened at once\n")
        print("Each connection: `connect()` (non-blocking, all issued within the time shown), then "
              "`GET /` with `Connection: close`, read to the end. A connection whose SYN or final ACK "
              "the server's full listen queue dropped waits for the kernel's retransmission (1 s), "
              "so it shows as a connect or an answer over 1 s and as a retransmission (TCP_INFO). "
              "The nstat counters are the whole machine's: they include the proxy's own "
              "connections to the backend.\n")
        print("| target | round | connections (opened in, s) | all connected after, s | all answered after, s | connect p50 / p99 / max, ms | connects > 1 s | answers > 1 s | connections with a retransmission | answers | errors | timeouts | answer p50 / p99 ms | ListenOverflows | ListenDrops | SYN cookies sent |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in by("burst"):
            t = r["requests"]
            check(f"burst {r['target']} round {r['round']}", t)
            ns = r.get("nstat", {})
            print(f"| {r['target']} | {r['round']} | {r['conns']} ({r['opened_in_s']:.2f}) | {fmt(r['all_connected_s'], '{:.2f}')} | "
                  f"{fmt(r['all_answered_s'], '{:.2f}')} | {fmt(r['connect_p50_ms'], '{:.1f}')} / {fmt(r['connect_p99_ms'], '{:.1f}')} / "
                  f"{fmt(r['connect_max_ms'], '{:.0f}')} | {r['connects_over_1s']} | {r['answers_over_1s']} | {r['conns_with_retransmits']} | "
                  f"{kinds(t['status'])} | {kinds(t['errors'])} | {t['timeouts']} | {fmt(t['p50_ms'], '{:.1f}')} / {fmt(t['p99_ms'], '{:.1f}')} | "
                  f"{ns.get('TcpExtListenOverflows', '–')} | {ns.get('TcpExtListenDrops', '–')} | {ns.get('TcpExtSyncookiesSent', '–')} |")
        print()
    if by("uploads"):
        print("### c. trickling uploads to a gunicorn with 4 sync workers\n")
        r0 = by("uploads")[0]
        print(f"{r0['uploads']} POSTs of {r0['body_bytes']} bytes, each body sent over about {r0['trickle_s']} s; "
              f"meanwhile {r0['normal_workers']} normal clients send `GET /fast` (answered at once by the app), "
              "one at a time each, on fresh connections, for as long as the uploads last.\n")
        print("| target | uploads answered | upload errors | upload timeouts | fast requests during the trickle (window s) | fast 2xx | fast/s | fast other answers | fast errors | fast timeouts | fast p50 ms | fast p99 ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in by("uploads"):
            u, f_ = r["uploads_result"], r["fast"]
            check(f"uploads {r['target']} uploads", u)
            check(f"uploads {r['target']} fast", f_)
            ok = sum(v for k, v in f_["status"].items() if k.startswith("2"))
            other = {k: v for k, v in f_["status"].items() if not k.startswith("2")}
            print(f"| {r['target']} | {kinds(u['status'])} | {kinds(u['errors'])} | {u['timeouts']} | {f_['sent']} ({r['window_s']}) | "
                  f"{ok} | {fmt(r['fast_per_s'], '{:.1f}')} | {kinds(other)} | {kinds(f_['errors'])} | {f_['timeouts']} | "
                  f"{fmt(f_['p50_ms'], '{:.1f}')} | {fmt(f_['p99_ms'], '{:.1f}')} |")
        print()
    if by("chaos"):
        print("### d. chaos under load\n")
        print("| run | took s | sent | answered | by status | x-rouse-error | errors | timeouts | lost | longest without a 2xx, s | p50 ms | p99 ms | max ms | chaos done |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in by("chaos"):
            check(f"chaos {r['target']}", r)
            print(f"| {r['target']} | {r['took_s']} | {r['sent']} | {r['answered']} | {kinds(r['status'])} | {kinds(r['rouse_errors'])} | "
                  f"{kinds(r['errors'])} | {r['timeouts']} | {r['lost']} | {r['longest_without_2xx_s']} | {fmt(r['p50_ms'], '{:.1f}')} | "
                  f"{fmt(r['p99_ms'], '{:.1f}')} | {fmt(r['max_ms'], '{:.0f}')} | {r.get('chaos', '–')} |")
        print()
    for p in problems:
        print(f"ISSUE {p}", file=sys.stderr)
    return None


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("slowloris")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--conns", type=int, default=2000)
    s.add_argument("--silent", type=int, default=0)
    s.add_argument("--interval", type=float, default=2.0)
    s.add_argument("--duration", type=float, default=20.0)
    s.add_argument("--probe", type=float, action="append", default=[])
    s.add_argument("--normal-workers", type=int, default=4)
    s.add_argument("--timeout", type=float, default=10.0)
    b = sub.add_parser("burst")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--target", required=True)
    b.add_argument("--round", type=int, default=1)
    b.add_argument("--conns", type=int, default=5000)
    b.add_argument("--timeout", type=float, default=30.0)
    u = sub.add_parser("uploads")
    u.add_argument("--port", type=int, required=True)
    u.add_argument("--target", required=True)
    u.add_argument("--uploads", type=int, default=200)
    u.add_argument("--chunks", type=int, default=10)
    u.add_argument("--chunk-size", type=int, default=100)
    u.add_argument("--interval", type=float, default=1.5)
    u.add_argument("--timeout", type=float, default=120.0)
    u.add_argument("--normal-workers", type=int, default=4)
    u.add_argument("--normal-timeout", type=float, default=5.0)
    l_ = sub.add_parser("load")
    l_.add_argument("--port", type=int, required=True)
    l_.add_argument("--target", required=True)
    l_.add_argument("--workers", type=int, default=16)
    l_.add_argument("--duration", type=float, default=60.0)
    l_.add_argument("--timeout", type=float, default=15.0)
    r = sub.add_parser("report")
    r.add_argument("--dir", required=True)
    a = ap.parse_args()
    if a.cmd == "report":
        report(a)
        return
    if a.cmd == "burst":
        print(json.dumps(burst(a)))
        return
    fn = {"slowloris": slowloris, "uploads": uploads, "load": load}[a.cmd]
    print(json.dumps(asyncio.run(fn(a))))


if __name__ == "__main__":
    main()
