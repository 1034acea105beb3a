"""Opens N keep-alive connections to 127.0.0.1:PORT, sends one request on each and reads its
answer, prints how many are open, then holds them until stdin closes (bench/idle-rss.sh).
With H2C=1 in the environment, each connection speaks h2c (prior knowledge): preface,
SETTINGS, one GET stream, its answer read to END_STREAM.

usage: idle_clients.py PORT N
"""

import asyncio
import os
import sys

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def frame(kind, flags, stream, payload):
    n = len(payload)
    return bytes([n >> 16, (n >> 8) & 0xFF, n & 0xFF, kind, flags]) + stream.to_bytes(4, "big") + payload


def literal(name, value):
    """An HPACK literal without indexing, new name, raw strings."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


H2_REQUEST = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + frame(0x4, 0, 0, b"")
    + frame(
        0x1,
        0x5,
        1,
        literal(b":method", b"GET")
        + literal(b":scheme", b"http")
        + literal(b":authority", b"bench")
        + literal(b":path", b"/"),
    )
)


async def one_h2(port, conns, sem):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(H2_REQUEST)
        await writer.drain()
        while True:
            head = await asyncio.wait_for(reader.readexactly(9), 10)
            n = int.from_bytes(head[:3], "big")
            await asyncio.wait_for(reader.readexactly(n), 10)
            kind, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            if kind == 0x4 and not flags & 1:
                writer.write(frame(0x4, 1, 0, b""))
            if stream == 1 and kind in (0x0, 0x1) and flags & 1:
                break
            if kind in (0x3, 0x7):
                raise RuntimeError(f"frame type {kind} instead of the answer")
        conns.append((reader, writer))


async def one(port, conns, sem):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        await writer.drain()
        got = b""
        while b"hello world\n" not in got:
            data = await asyncio.wait_for(reader.read(4096), 10)
            if not data:
                raise RuntimeError("closed before the answer")
            got += data
        conns.append((reader, writer))


async def main(port, n):
    client = one_h2 if os.environ.get("H2C") == "1" else one
    conns = []
    sem = asyncio.Semaphore(200)
    results = await asyncio.gather(
        *(client(port, conns, sem) for _ in range(n)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    print(f"open={len(conns)} errors={len(errors)} {errors[:1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
