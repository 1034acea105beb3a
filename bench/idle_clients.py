"""Opens N keep-alive connections to 127.0.0.1:PORT, sends one request on each and reads its
answer, prints how many are open, then holds them until stdin closes (bench/idle-rss.sh).

usage: idle_clients.py PORT N
"""

import asyncio
import sys

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


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
    conns = []
    sem = asyncio.Semaphore(200)
    results = await asyncio.gather(
        *(one(port, conns, sem) for _ in range(n)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    print(f"open={len(conns)} errors={len(errors)} {errors[:1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
