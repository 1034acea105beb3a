#!/usr/bin/env python3
"""Locked (atomic read-modify-write) instructions a proxied request executes, from a callgrind
profile taken with --dump-instr=yes (bench/instructions.sh does so with LOCKS=1).

    bench/locked-ops.py CALLGRIND_OUT BINARY REQUESTS [TOP]

Each instruction of BINARY and of the shared objects it ran is matched against objdump's
disassembly: `lock`-prefixed instructions and `xchg` with memory (locked without a prefix).
Their execution counts, divided by REQUESTS, are printed per object, then the TOP sites of
BINARY (default 15) with their inlined call chains (addr2line -i), innermost first. Every
such instruction is a full memory barrier on x86, and an Arc clone, a mutex or a waker
registration each costs one or two of them.
"""
import collections
import re
import subprocess
import sys

LOCKED = re.compile(r"lock\b|xchg\s+%\w+,.*\(")


def profile(path):
    """Ir per (object, instruction address): self cost lines only, positions decompressed."""
    names = {}
    cost = collections.defaultdict(collections.Counter)
    obj, last_addr, last_line, call_cost_next = None, 0, 0, False

    def position(token, last):
        if token == "*":
            return last
        if token[0] in "+-":
            return last + int(token, 0)
        return int(token, 0)

    for line in open(path):
        if line.startswith("ob="):
            m = re.match(r"ob=\((\d+)\)(?: (.*))?", line.strip())
            if m.group(2):
                names[m.group(1)] = m.group(2)
            obj = names.get(m.group(1))
        elif line.startswith("calls="):
            call_cost_next = True
        elif line[:1] in "0123456789+-*":
            parts = line.split()
            if len(parts) < 3:
                continue
            last_addr = position(parts[0], last_addr)
            last_line = position(parts[1], last_line)
            if call_cost_next:
                # The inclusive cost of a call, at the call instruction: not its own.
                call_cost_next = False
                continue
            cost[obj][last_addr] += int(parts[2])
    return cost


def locked_instructions(path):
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(.*)", line)
        if m and LOCKED.match(m.group(2)):
            found[int(m.group(1), 16)] = m.group(2).split()[0]
    return found


def chain(binary, address, depth=8):
    lines = subprocess.run(
        ["addr2line", "-f", "-i", "-C", "-e", binary, hex(address)],
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    frames = []
    for k in range(0, len(lines) - 1, 2):
        frames.append(f"{lines[k][:80]} ({lines[k + 1].rsplit('/', 1)[-1]})")
    # Skip the std atomics' own frames: the caller is what matters.
    frames = [f for f in frames if not f.startswith(("core::sync::atomic", "<core::sync::atomic"))]
    return " <- ".join(frames[:depth])


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    cg, binary, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 15
    cost = profile(cg)
    total = 0.0
    for obj, counts in sorted(cost.items(), key=lambda kv: -sum(kv[1].values())):
        if not obj or sum(counts.values()) < requests * 10:
            continue
        path = binary if obj.endswith(binary.rsplit("/", 1)[-1]) else obj
        locks = locked_instructions(path)
        n = sum(ir for a, ir in counts.items() if a in locks) / requests
        total += n
        print(f"{obj}: {n:.1f} locked instructions per request")
        if path == binary:
            sites = sorted(((ir, a) for a, ir in counts.items() if a in locks), reverse=True)
            for ir, a in sites[:top]:
                print(f"  {ir / requests:5.2f} {locks[a]:8} {chain(binary, a)}")
    print(f"total: {total:.1f} locked instructions per request")


if __name__ == "__main__":
    main()
