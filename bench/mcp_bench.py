#!/usr/bin/env python3
"""Benchmark for issue 16 (MCP), through the public API and the SDK's real client and server.

    .venv/bin/python bench/mcp_bench.py            # about 30 s
    .venv/bin/python bench/mcp_bench.py --quick    # smoke test

- serve: the round trip of `run_python("print(1)")` from the SDK's ClientSession to
  `python -m eryx serve` (a subprocess) and back, timed on the client (p50/p90).
- tool call from the guest: `await mcp.srv.echo("x")` against tests/mcp_test_server.py, timed in
  the guest with time.perf_counter_ns around the await (p50/p90), next to the server's own time
  (the same call from the SDK client directly, timed on the host).
- gather: 10 calls of a tool that sleeps 100 ms under asyncio.gather, against one call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

import eryx

SERVER = str(Path(__file__).resolve().parent.parent / "tests" / "mcp_test_server.py")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def report(name, ms):
    print(f"{name:58s} p50 {pct(ms, 50):7.3f} ms   p90 {pct(ms, 90):7.3f} ms   (n={len(ms)})")


async def serve_round_trips(n):
    params = StdioServerParameters(command=sys.executable, args=["-m", "eryx", "serve"])
    async with stdio_client(params) as (r, w), ClientSession(r, w) as client:
        await client.initialize()
        times = []
        for _ in range(n + 5):
            t = time.perf_counter()
            await client.call_tool("run_python", {"code": "print(1)"})
            times.append((time.perf_counter() - t) * 1000)
        return times[5:]


async def direct_tool_calls(n):
    params = StdioServerParameters(command=sys.executable, args=[SERVER])
    async with stdio_client(params) as (r, w), ClientSession(r, w) as client:
        await client.initialize()
        times = []
        for _ in range(n + 5):
            t = time.perf_counter()
            await client.call_tool("echo", {"text": "x"})
            times.append((time.perf_counter() - t) * 1000)
        return times[5:]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    n = 20 if parser.parse_args().quick else 300
    report("run_python('print(1)') via eryx serve", asyncio.run(serve_round_trips(n)))
    report("SDK client -> server echo (the server's own time)", asyncio.run(direct_tool_calls(n)))
    with eryx.MCPManager() as manager:
        manager.connect("srv", sys.executable, [SERVER])
        with eryx.Session(mcp=manager) as session:
            ns = session.execute(
                "import time\nout = []\n"
                f"for _ in range({n + 5}):\n"
                "    t = time.perf_counter_ns()\n"
                "    await mcp.srv.echo('x')\n"
                "    out.append((time.perf_counter_ns() - t) / 1e6)\n"
                "result = out[5:]\n").result
            report("await mcp.srv.echo('x') in the guest", ns)
            code = ("import time, asyncio\nt = time.perf_counter_ns()\n{}\n"
                    "result = (time.perf_counter_ns() - t) / 1e6\n")
            one = [session.execute(code.format("await mcp.srv.sleep(100)")).result
                   for _ in range(3)]
            ten = [session.execute(code.format(
                "await asyncio.gather(*(mcp.srv.sleep(100) for _ in range(10)))")).result
                for _ in range(3)]
            print(f"one 100 ms tool call {statistics.median(one):.1f} ms; 10 under gather "
                  f"{statistics.median(ten):.1f} ms ({statistics.median(ten) / statistics.median(one):.2f}x)")


if __name__ == "__main__":
    main()
