#!/usr/bin/env python3
"""RSS per idle keep-alive client: rouse (ROUSE_BIN) in front of a tiny local backend; N
clients each make one request, keep the connection open and idle; the growth of rouse's RSS
divided by N is the cost of an idle keep-alive client.

Usage: ROUSE_BIN=target/release/rouse [BATCH=100] python3 bench/idle-memory.py [N]   (N: 10000)
Loopback only; bounded waits; everything is stopped at the end.
"""
import asyncio, os, resource, signal, socket, subprocess, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
# Clients connecting at once: each has an exchange in progress, with its buffers, until its
# answer is in.
BATCH = int(os.environ.get("BATCH", "100"))
ROUSE = os.environ.get("ROUSE_BIN", "target/release/rouse")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


async def backend(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world\n")
            await writer.drain()
    except BaseException:
        # Cancelled at the end, or the client went: either way this connection is done.
        writer.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def client(port, keep):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await w.drain()
    await asyncio.wait_for(r.readuntil(b"hello world\n"), 30)
    keep.append((r, w))


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bport, rport = free_port(), free_port()
    server = await asyncio.start_server(backend, "127.0.0.1", bport, backlog=4096)
    tmp = tempfile.mkdtemp()
    conf = os.path.join(tmp, "rouse.toml")
    with open(conf, "w") as f:
        f.write(f"""[proxy]
listen = ["127.0.0.1:{rport}"]
threads = 1
max_connections = {N + 1000}
client_idle_timeout = "300s"
client_header_timeout = "300s"

[log]
access_log = false

[[upstream]]
name = "m"
supervisor = "none"

[[upstream.server]]
address = "127.0.0.1:{bport}"
""")
    proc = subprocess.Popen([ROUSE, "run", "-c", conf], env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", rport), 0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        keep = []
        # Warm up (pools, allocator), then measure from there.
        await asyncio.gather(*(client(rport, keep) for _ in range(100)))
        await asyncio.sleep(1)
        before = rss_kb(proc.pid)
        for i in range(0, N, BATCH):
            await asyncio.gather(*(client(rport, keep) for _ in range(min(BATCH, N - i))))
        await asyncio.sleep(2)
        after = rss_kb(proc.pid)
        print(f"{N} idle keep-alive clients: RSS {before} KB -> {after} KB, "
              f"{(after - before) / N:.2f} KB per client")
        for _, w in keep:
            w.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.close()


asyncio.run(main())
