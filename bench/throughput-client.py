#!/usr/bin/env python3
"""One large HTTP/1.1 transfer for bench/throughput.sh, checked byte by byte.

  throughput-client.py download --port P --size N
      GET /bytes/N?length from rouse-test-backend (through a proxy or not): its body is the
      pattern of crates/e2e/src/pattern.rs (byte i = i % 251), so every byte is compared with
      what it must be at its position; a dropped, doubled or reordered piece shows.
  throughput-client.py upload --port P --size N [--chunked]
      POST /count with N bytes of the same pattern, with a Content-Length or chunked; the
      backend answers {"bytes": N, "checksum": C} for what it read.

Prints one JSON line: mode, seconds (connect to the last byte of the answer), bytes, status,
ok, error, and for uploads the backend's bytes and checksum (throughput.sh compares that with
a direct upload). Raw sockets, no HTTP library: nothing but the kernel between the client and
the proxy, and every wait bounded by --timeout.
"""

import argparse
import json
import socket
import sys
import time

PERIOD = 251
BLOCK = 256 * 1024
# Any BLOCK-long window of the pattern, at any phase, is a slice of this.
SOURCE = bytes(i % PERIOD for i in range(BLOCK + PERIOD))


class Reader:
    """Reads from a socket: lines for the head and chunk sizes, recv_into for the bulk (a file
    object from makefile() would copy every byte once more)."""

    def __init__(self, sock):
        self.sock = sock
        self.pending = bytearray()  # read past what was asked, not consumed yet

    def readline(self, limit):
        while True:
            i = self.pending.find(b"\n")
            if i >= 0:
                line = bytes(self.pending[:i + 1])
                del self.pending[:i + 1]
                return line
            if len(self.pending) > limit:
                raise ValueError("line too long")
            more = self.sock.recv(65536)
            if not more:
                return b""
            self.pending += more

    def readinto(self, buf, want):
        """Up to want bytes into buf; 0 at the end of the stream."""
        if self.pending:
            k = min(want, len(self.pending))
            buf[:k] = self.pending[:k]
            del self.pending[:k]
            return k
        return self.sock.recv_into(buf, want)

    def head(self):
        lines = []
        while True:
            line = self.readline(65536)
            if not line:
                raise EOFError("connection closed in the response head")
            if line in (b"\r\n", b"\n"):
                break
            lines.append(line.decode("latin-1").rstrip("\r\n"))
            if len(lines) > 200:
                raise ValueError("response head too long")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def body(self, headers, sink):
        """Feed the body to sink(buf, k) (the first k bytes of buf) by its framing; the number
        of bytes."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            total = 0
            while True:
                size_line = self.readline(1024)
                if not size_line:
                    raise EOFError("connection closed in a chunk size line")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return total
                self.exact(size, sink)
                total += size
                if self.readline(16) not in (b"\r\n", b"\n"):
                    raise ValueError("no CRLF after a chunk")
        if "content-length" in headers:
            n = int(headers["content-length"])
            self.exact(n, sink)
            return n
        return self.exact(None, sink)  # until the server closes

    def exact(self, n, sink):
        buf = bytearray(BLOCK)
        got = 0
        while n is None or got < n:
            want = BLOCK if n is None else min(BLOCK, n - got)
            k = self.readinto(buf, want)
            if not k:
                if n is None:
                    return got
                raise EOFError(f"connection closed after {got} of {n} body bytes")
            sink(buf, k)
            got += k
        return got


class PatternCheck:
    def __init__(self):
        self.offset = 0
        self.bad_at = None

    def __call__(self, buf, k):
        if self.bad_at is None:
            start = self.offset % PERIOD
            # bytearray == bytes is one memcmp (a memoryview compares item by item, and
            # bytes(memoryview) is slow too): slice the bytearray only when it is not full.
            if (buf if k == len(buf) else buf[:k]) != SOURCE[start:start + k]:
                self.bad_at = self.offset
        self.offset += k


def download(args, sock):
    sock.sendall(f"GET /bytes/{args.size}?length HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Connection: close\r\n\r\n".encode())
    r = Reader(sock)
    status, headers = r.head()
    check = PatternCheck()
    n = r.body(headers, check)
    out = {"status": status, "bytes": n}
    if status != 200:
        out["error"] = f"status {status}"
    elif n != args.size:
        out["error"] = f"{n} bytes, not {args.size}"
    elif check.bad_at is not None:
        out["error"] = f"wrong bytes from offset {check.bad_at} (within {BLOCK} bytes)"
    return out


def upload(args, sock):
    framing = ("Transfer-Encoding: chunked" if args.chunked
               else f"Content-Length: {args.size}")
    sock.sendall(f"POST /count HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n"
                 "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".encode())
    src = memoryview(SOURCE)
    sent = 0
    while sent < args.size:
        n = min(BLOCK, args.size - sent)
        start = sent % PERIOD
        if args.chunked:
            sock.sendall(f"{n:x}\r\n".encode())
        sock.sendall(src[start:start + n])
        if args.chunked:
            sock.sendall(b"\r\n")
        sent += n
    if args.chunked:
        sock.sendall(b"0\r\n\r\n")
    r = Reader(sock)
    status, headers = r.head()
    body = bytearray()
    r.body(headers, lambda buf, k: body.extend(buf[:k]))
    out = {"status": status, "bytes": sent}
    try:
        answer = json.loads(body)
        out["received"] = answer.get("bytes")
        out["checksum"] = answer.get("checksum")
    except ValueError:
        out["error"] = f"status {status}, not JSON: {bytes(body[:200])!r}"
        return out
    if status != 200:
        out["error"] = f"status {status}: {bytes(body[:200])!r}"
    elif out["received"] != args.size:
        out["error"] = f"the backend read {out['received']} bytes, not {args.size}"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("mode", choices=["download", "upload"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--chunked", action="store_true")
    ap.add_argument("--timeout", type=float, default=60.0, help="per socket operation, s")
    args = ap.parse_args()

    mode = args.mode + ("-chunked" if args.chunked else "")
    t0 = time.monotonic()
    try:
        sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
        with sock:
            out = download(args, sock) if args.mode == "download" else upload(args, sock)
    except (OSError, EOFError, ValueError, IndexError) as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    out["seconds"] = round(time.monotonic() - t0, 4)
    out["mode"] = mode
    out["ok"] = "error" not in out
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
