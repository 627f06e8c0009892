#!/usr/bin/env python3
"""Benchmark for the issue "Host callbacks": the round-trip cost of a host callback and the
speed-up of asyncio.gather over callbacks that wait, through the public `eryx` API.

    .venv/bin/python bench/callbacks.py                    # about 20 s
    .venv/bin/python bench/callbacks.py --json out.json    # also write the full report as JSON
    .venv/bin/python bench/callbacks.py --quick            # smoke test

Measured in one process, one Sandbox per execute:

- round trip of a no-op callback, `await noop()`, sync (`def noop(): return None`) and async
  (`async def anoop(): return None`) host functions: each of --calls calls is timed inside the guest
  with time.perf_counter_ns around the await (p50/p90/p99); separately, the host times an execute
  doing --calls awaits and nothing else (total / calls). Baseline, in the same run: the same with
  a guest-only coroutine (`async def gnoop(): return None`), i.e. the cost of everything but the
  host round trip. One warm-up round, then --rounds rounds of every variant, in rotated order.
- gather: three callbacks that each wait 100 ms (sync `time.sleep(0.1)`, async
  `asyncio.sleep(0.1)`), awaited one after another vs with asyncio.gather, timed inside the guest;
  the ratio is sequential / gather (3.0 = fully concurrent).

The 1-minute load average, the CPU other processes used (/proc/stat busy time minus this
process's CPU time, in cores) and the share of a core a spinning thread got are recorded around
the measurement; wall-clock numbers taken while others use the CPU are inflated.
"""
import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from instant import OtherCPU, cpu_share, fmt, loadavg, median, pct  # noqa: E402

ns = time.perf_counter_ns
BUSY_OTHERS = 0.25

GUEST_TIMED = """
import time
async def gnoop():
    return None
_ts = []
for _ in range({calls}):
    _t = time.perf_counter_ns()
    await {name}()
    _ts.append(time.perf_counter_ns() - _t)
result = _ts
"""

HOST_TIMED = """
async def gnoop():
    return None
for _ in range({calls}):
    await {name}()
"""

GATHER = """
import asyncio, time
_t = time.perf_counter_ns()
for _ in range(3):
    await {name}()
_seq = time.perf_counter_ns() - _t
_t = time.perf_counter_ns()
await asyncio.gather({name}(), {name}(), {name}())
_par = time.perf_counter_ns() - _t
result = [_seq, _par]
"""


def main():
    ap = argparse.ArgumentParser(description="goeryx 'Host callbacks' benchmark")
    ap.add_argument("--json", metavar="PATH", help="also write the full report as JSON")
    ap.add_argument("--quick", action="store_true", help="few repetitions: a smoke test")
    ap.add_argument("--calls", type=int, default=1000, help="awaits per round (default 1000)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (default 5)")
    ap.add_argument("--gather-rounds", type=int, default=5, help="rounds of the gather test (default 5)")
    a = ap.parse_args()
    if a.quick:
        a.calls, a.rounds, a.gather_rounds = 200, 2, 2
    try:
        import eryx
    except ImportError:
        sys.exit("eryx is not importable: run with the venv that has the wheel (.venv/bin/python)")

    def noop():
        return None

    async def anoop():
        return None

    def ssleep():
        time.sleep(0.1)

    async def asleep():
        import asyncio
        await asyncio.sleep(0.1)

    callbacks = [{"name": "noop", "fn": noop}, {"name": "anoop", "fn": anoop},
                 {"name": "ssleep", "fn": ssleep}, {"name": "asleep", "fn": asleep}]
    limits = eryx.ResourceLimits(execution_timeout_ms=600_000, max_callback_invocations=None)

    def execute(code):
        sb = eryx.Sandbox(resource_limits=limits, callbacks=callbacks)
        t = ns()
        r = sb.execute(code)
        wall = ns() - t
        sb.close()
        return r, wall

    load0, share0 = loadavg(), cpu_share()
    others = OtherCPU()
    t_start = ns()
    variants = ["noop", "anoop", "gnoop"]
    guest = {v: [] for v in variants}          # per round: list of per-call ns
    host = {v: [] for v in variants}           # per round: execute wall ns
    invocations = {}
    for rnd in range(a.rounds + 1):            # round 0 = warm-up
        for k in range(len(variants)):
            v = variants[(rnd + k) % len(variants)]
            r, _ = execute(GUEST_TIMED.format(name=v, calls=a.calls))
            ts = json.loads(r.result_json)
            assert len(ts) == a.calls
            r2, wall = execute(HOST_TIMED.format(name=v, calls=a.calls))
            invocations[v] = r2.callback_invocations
            if rnd:
                guest[v].append(ts)
                host[v].append(wall)
    gather = {"ssleep": [], "asleep": []}
    for _ in range(a.gather_rounds):
        for name in gather:
            r, _ = execute(GATHER.format(name=name))
            seq, par = json.loads(r.result_json)
            gather[name].append({"sequential_ms": seq / 1e6, "gather_ms": par / 1e6})
    elapsed = (ns() - t_start) / 1e9
    other_cores = others.cores()
    load1, share1 = loadavg(), cpu_share()

    R = {}
    for v in variants:
        pooled = [x / 1e3 for ts in guest[v] for x in ts]
        round_p50 = [pct(ts, 50) / 1e3 for ts in guest[v]]
        per_call_host = [w / a.calls / 1e3 for w in host[v]]
        R[v] = {"guest_p50_us": median(round_p50), "guest_p50_min_us": min(round_p50),
                "guest_p90_us": pct(pooled, 90), "guest_p99_us": pct(pooled, 99),
                "guest_round_p50_us": round_p50, "host_per_call_us": median(per_call_host),
                "host_per_call_min_us": min(per_call_host), "host_per_call_rounds_us": per_call_host,
                "callback_invocations": invocations[v]}
    for v in ("noop", "anoop"):
        R[v]["host_net_per_call_us"] = R[v]["host_per_call_us"] - R["gnoop"]["host_per_call_us"]
    G = {}
    for name, rs in gather.items():
        seq = median([x["sequential_ms"] for x in rs])
        par = median([x["gather_ms"] for x in rs])
        G[name] = {"sequential_ms": seq, "gather_ms": par, "speedup": seq / par,
                   "min_gather_ms": min(x["gather_ms"] for x in rs), "rounds": rs}

    rows = []

    def row(name, value, unit, base=None, note=""):
        rows.append({"measurement": name, "value": value, "unit": unit, "baseline": base,
                     "ratio": value / base if base else None, "note": note})

    b = R["gnoop"]
    n = f"{a.calls} calls x {a.rounds} rounds"
    for v, label in (("noop", "sync no-op callback"), ("anoop", "async no-op host function")):
        x = R[v]
        row(f"{label}: in guest p50 ({n})", x["guest_p50_us"], "us", b["guest_p50_us"],
            f"rounds' p50 min {x['guest_p50_min_us']:.1f}")
        row(f"{label}: in guest p90 / p99", f"{x['guest_p90_us']:.1f} / {x['guest_p99_us']:.1f}", "us")
        row(f"{label}: host total / {a.calls}", x["host_per_call_us"], "us", b["host_per_call_us"],
            f"min {x['host_per_call_min_us']:.1f}")
        row(f"{label}: host, net of the guest-only loop", x["host_net_per_call_us"], "us")
    row(f"baseline, guest-only coroutine: in guest p50", b["guest_p50_us"], "us")
    row(f"baseline, guest-only coroutine: host total / {a.calls}", b["host_per_call_us"], "us")
    row("async / sync callback, in guest p50", R["anoop"]["guest_p50_us"] / R["noop"]["guest_p50_us"], "x")
    for name, label in (("ssleep", "sync time.sleep(0.1)"), ("asleep", "async asyncio.sleep(0.1)")):
        g = G[name]
        row(f"3 x {label}: one after another", g["sequential_ms"], "ms", 300.0, "baseline = 3 x 100 ms")
        row(f"3 x {label}: asyncio.gather", g["gather_ms"], "ms", 100.0, "baseline = 100 ms (ideal)")
        row(f"3 x {label}: speed-up (sequential / gather)", g["speedup"], "x", 3.0, "3.0 = fully concurrent")

    ncpu = os.cpu_count()
    header = (f"{time.strftime('%Y-%m-%d %H:%M')}, host `{platform.node()}`, {ncpu} cores, goeryx {eryx.__version__} "
              f"(guest Python {eryx.GUEST_PYTHON_VERSION}), host Python {platform.python_version()}; took "
              f"{elapsed:.0f} s" + (" (--quick: not a benchmark)" if a.quick else "")
              + f"; 1-min load average {load0:.2f} before, {load1:.2f} after; other processes used "
              f"{other_cores:.2f} cores; CPU share of one thread {share0:.2f} before, {share1:.2f} after (1.00 = idle)")
    warnings = []
    if other_cores > BUSY_OTHERS or min(share0, share1) < 0.9:
        warnings.append(f"the machine was busy (other processes used {other_cores:.2f} cores on {ncpu}): "
                        "wall-clock numbers are inflated and noisy")
    print(header)
    print()
    head = ["measurement", "value", "unit", "baseline", "ratio", "note"]
    cells = [[r["measurement"], fmt(r["value"]), r["unit"], fmt(r["baseline"]), fmt(r["ratio"]), r["note"]]
             for r in rows]
    w = [max(len(str(x)) for x in col) for col in zip(head, *cells)]

    def line(c):
        return "| " + " | ".join(str(x).rjust(w[i]) if i in (1, 3, 4) else str(x).ljust(w[i])
                                 for i, x in enumerate(c)) + " |"
    print("\n".join([line(head), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(c) for c in cells]))
    print()
    print("- in guest: time.perf_counter_ns around each `await`, p50 per round of calls, median over the "
          "rounds (p90/p99 over all calls); host: execute() wall of a Sandbox doing only the awaits (interpreter "
          "start included) / calls, median over the rounds; net = minus the same loop over a guest-only "
          "coroutine. Ratios: value / baseline.")
    print("- gather: guest-timed, median of the rounds; the sync host functions run on host worker threads, "
          "the async ones on the sandbox's event loop thread (API.md 7.3).")
    for x in warnings:
        print("WARNING: " + x)
    if a.json:
        report = {"header": header, "params": vars(a), "rows": rows, "results": R, "gather": G,
                  "load_avg_1min": [load0, load1], "others_cores": other_cores, "cpu_share": [share0, share1],
                  "warnings": warnings}
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"JSON report: {a.json}")


if __name__ == "__main__":
    main()
