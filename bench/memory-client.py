#!/usr/bin/env python3
"""Idle keep-alive clients for bench/memory.sh.

Opens --conns connections to 127.0.0.1:--port (at most --concurrency being set up at once),
sends one `GET /` on each and reads its whole answer, then keeps every connection open and
silent. Prints `HOLDING <n>` once all are answered (or --open-timeout passed), waits until
--release-file exists (at most --hold-max seconds), checks how many the server still holds
open, closes them all and writes a JSON summary to --out.

One process and one epoll loop with plain non-blocking sockets (not asyncio): ten thousand
connections cost the client little, and every wait is bounded.
"""

import argparse
import errno
import json
import os
import selectors
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: rouse-bench-memory\r\n\r\n"


class Conn:
    __slots__ = ("sock", "buf", "sent")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.sent = False


def answered(buf):
    """Whether buf holds one whole 200 answer: True, False (not yet), or an error string."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].decode("latin-1").lower().split("\r\n")
    if not head[0].startswith("http/1.1 200"):
        return f"status line {head[0]!r}"
    body = buf[end + 4:]
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            return len(body) >= int(value.strip()) or False
        if name.strip() == "transfer-encoding" and "chunked" in value:
            return body.endswith(b"0\r\n\r\n") or False
    return "an answer without a length on a keep-alive connection"


def open_all(args):
    sel = selectors.DefaultSelector()
    held, errors, started, pending = [], {}, 0, 0
    deadline = time.monotonic() + args.open_timeout

    def fail(conn, why):
        nonlocal pending
        errors[why] = errors.get(why, 0) + 1
        sel.unregister(conn.sock)
        conn.sock.close()
        pending -= 1

    while len(held) + sum(errors.values()) < args.conns:
        while pending < args.concurrency and started < args.conns:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", args.port))
            started += 1
            pending += 1
            conn = Conn(s)
            sel.register(s, selectors.EVENT_WRITE, conn)
            if err not in (0, errno.EINPROGRESS):
                fail(conn, f"connect: {os.strerror(err)}")
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for key, _ in sel.select(timeout=min(left, 1.0)):
            conn = key.data
            if not conn.sent:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(conn, f"connect: {os.strerror(err)}")
                    continue
                try:
                    conn.sock.send(REQUEST)  # a few dozen bytes: one send is enough
                except OSError as e:
                    fail(conn, f"send: {e.strerror}")
                    continue
                conn.sent = True
                sel.modify(conn.sock, selectors.EVENT_READ, conn)
                continue
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(conn, f"recv: {e.strerror}")
                continue
            if not data:
                fail(conn, "closed before the answer")
                continue
            conn.buf += data
            done = answered(conn.buf)
            if isinstance(done, str):
                fail(conn, done)
            elif done:
                sel.unregister(conn.sock)
                pending -= 1
                conn.buf = b""
                held.append(conn.sock)
    timed_out = pending + (args.conns - started)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return held, errors, timed_out


def still_open(socks):
    n = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                n += 1  # the server sent something unasked: open, but count it as such
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--open-timeout", type=float, default=60.0)
    ap.add_argument("--hold-max", type=float, default=120.0)
    ap.add_argument("--release-file", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    t0 = time.monotonic()
    held, errors, timed_out = open_all(args)
    open_s = time.monotonic() - t0
    print(f"HOLDING {len(held)}", flush=True)

    waited_out = True
    hold_end = time.monotonic() + args.hold_max
    while time.monotonic() < hold_end:
        if os.path.exists(args.release_file):
            waited_out = False
            break
        time.sleep(0.05)
    open_at_release = still_open(held)
    for s in held:
        s.close()
    with open(args.out, "w") as f:
        json.dump({
            "conns": args.conns,
            "answered_and_held": len(held),
            "errors": errors,
            "timed_out": timed_out,
            "open_seconds": round(open_s, 3),
            "open_at_release": open_at_release,
            "release_never_came": waited_out,
        }, f)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
