#!/usr/bin/env python3
"""Benchmark for the issue "Host callbacks" (and issue 18's target): the round-trip cost of a
host callback and the speed-up of asyncio.gather over callbacks that wait, through the public
`eryx` API, goeryx and pyeryx side by side.

    .venv/bin/python bench/callbacks.py                    # about a minute
    .venv/bin/python bench/callbacks.py --json out.json    # also write the full report as JSON
    .venv/bin/python bench/callbacks.py --quick            # smoke test
    .venv/bin/python bench/callbacks.py --pyeryx none      # goeryx only

Both run under the same native CPython, in the venvs bench/setup.sh prepares: goeryx from the
wheel in dist/ (what ./build.sh made), pyeryx (the reference) pinned and hash-checked. --goeryx
and --pyeryx name other interpreters ("self": this one, for goeryx; "none": skip pyeryx); if
bench/setup.sh fails, goeryx runs in this interpreter. Each round runs one child process per
system, in alternating order, so both see the same machine; in each, one Sandbox per execute:

- round trip of a no-op callback, `await noop()`, sync (`def noop(): return None`) and async
  (`async def anoop(): return None`) host functions, and for goeryx the blocking form
  `noop.sync()`: each of --calls calls is timed inside the guest with time.perf_counter_ns
  (mean, p50, p90/p99); separately, the host times an execute doing --calls calls and nothing
  else (total / calls). Baseline, in the same child: the same with a guest-only coroutine
  (`async def gnoop(): return None`), i.e. the cost of everything but the host round trip. One
  warm-up execute of each, then the timed ones.
- gather: three callbacks that each wait 100 ms (sync `time.sleep(0.1)`, async
  `asyncio.sleep(0.1)`), awaited one after another vs with asyncio.gather, timed inside the guest;
  the ratio is sequential / gather (3.0 = fully concurrent).

The 1-minute load average, the CPU other processes used (/proc/stat busy time minus this
process tree's CPU time, in cores) and the share of a core a spinning thread got are recorded
around the measurement; wall-clock numbers taken while others use the CPU are inflated.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from instant import OtherCPU, cpu_share, fmt, loadavg, median, pct  # noqa: E402

ns = time.perf_counter_ns
BUSY_OTHERS = 0.25
SYSTEMS = ("goeryx", "pyeryx")

GUEST_TIMED = """
import time
async def gnoop():
    return None
_ts = []
for _ in range({calls}):
    _t = time.perf_counter_ns()
    {call}
    _ts.append(time.perf_counter_ns() - _t)
result = _ts
"""

HOST_TIMED = """
async def gnoop():
    return None
for _ in range({calls}):
    {call}
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

# variant -> the guest statement of one call
VARIANTS = {"noop": "await noop()", "anoop": "await anoop()", "gnoop": "await gnoop()",
            "noop.sync": "noop.sync()"}
GOERYX_ONLY = {"noop.sync"}


# ============================================================================== child side

def worker(a):
    import eryx

    def noop():
        return None

    async def anoop():
        return None

    def ssleep():
        time.sleep(0.1)

    async def asleep():
        import asyncio
        await asyncio.sleep(0.1)

    callbacks = [{"name": n, "fn": f, "description": ""}
                 for n, f in (("noop", noop), ("anoop", anoop), ("ssleep", ssleep), ("asleep", asleep))]
    limits = eryx.ResourceLimits(execution_timeout_ms=600_000, max_callback_invocations=None)
    goeryx = hasattr(eryx, "GUEST_PYTHON_VERSION")  # pyeryx has no such constant

    def execute(code):
        sb = eryx.Sandbox(resource_limits=limits, callbacks=callbacks)
        t = ns()
        r = sb.execute(code)
        wall = ns() - t
        if hasattr(sb, "close"):
            sb.close()
        rj = r.result_json
        return (json.loads(rj.decode() if isinstance(rj, bytes) else rj) if rj else None), wall

    variants = [v for v in VARIANTS if goeryx or v not in GOERYX_ONLY]
    k = a.round % len(variants)
    order = variants[k:] + variants[:k]
    out = {"version": getattr(eryx, "__version__", "?"), "python": platform.python_version(),
           "guest": {}, "host_ns": {}, "gather": {}}
    for warm in (True, False):
        for v in order:
            ts, _ = execute(GUEST_TIMED.format(call=VARIANTS[v], calls=a.calls))
            assert len(ts) == a.calls
            _, wall = execute(HOST_TIMED.format(call=VARIANTS[v], calls=a.calls))
            if not warm:
                out["guest"][v], out["host_ns"][v] = ts, wall
    for name in ("ssleep", "asleep"):
        out["gather"][name] = execute(GATHER.format(name=name))[0]
    print("BENCHJSON " + json.dumps(out), flush=True)


# ============================================================================== driver side

def interpreters(a):
    """{system: python or None} and the reasons for a missing one."""
    pys, why = {"goeryx": a.goeryx, "pyeryx": a.pyeryx}, {}
    if pys["goeryx"] == "self":
        pys["goeryx"] = sys.executable
    if pys["pyeryx"] == "none":
        pys["pyeryx"], why["pyeryx"] = None, "--pyeryx none"
    if pys["goeryx"] and (pys["pyeryx"] or "pyeryx" in why):
        return pys, why
    p = subprocess.run(["bash", os.path.join(HERE, "setup.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    env = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    if not pys["goeryx"]:
        pys["goeryx"] = env.get("GOERYX_PY") if p.returncode == 0 else None
        if not pys["goeryx"]:
            pys["goeryx"] = sys.executable
            print(f"NOTE: bench/setup.sh failed (exit {p.returncode}): goeryx runs in {sys.executable}",
                  file=sys.stderr)
    if not pys["pyeryx"] and "pyeryx" not in why:
        if p.returncode != 0 or env.get("PYERYX_ERROR") or not env.get("PYERYX_PY"):
            why["pyeryx"] = env.get("PYERYX_ERROR") or f"bench/setup.sh failed (exit {p.returncode})"
        else:
            pys["pyeryx"] = env["PYERYX_PY"]
    return pys, why


def run_child(py, a, rnd):
    p = subprocess.run([py, os.path.abspath(__file__), "--worker", "--calls", str(a.calls),
                        "--round", str(rnd)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=1800)
    for line in p.stdout.splitlines():
        if line.startswith("BENCHJSON ") and p.returncode == 0:
            return json.loads(line[len("BENCHJSON "):])
    tail = "\n".join((p.stderr.strip().splitlines() or ["no output"])[-15:])
    raise RuntimeError(f"{py}: exit {p.returncode}\n{tail}")


def summarise(rounds, calls):
    """Per variant: guest mean/p50 (median over rounds), p90/p99 (pooled), host per call."""
    R = {}
    for v in rounds[0]["guest"]:
        per_round = [r["guest"][v] for r in rounds]
        pooled = [x / 1e3 for ts in per_round for x in ts]
        means = [sum(ts) / len(ts) / 1e3 for ts in per_round]
        p50s = [pct(ts, 50) / 1e3 for ts in per_round]
        host = [r["host_ns"][v] / calls / 1e3 for r in rounds]
        R[v] = {"guest_mean_us": median(means), "guest_mean_rounds_us": means,
                "guest_p50_us": median(p50s), "guest_p50_rounds_us": p50s,
                "guest_p90_us": pct(pooled, 90), "guest_p99_us": pct(pooled, 99),
                "host_per_call_us": median(host), "host_per_call_rounds_us": host}
    for v in R:
        if v != "gnoop":
            R[v]["host_net_per_call_us"] = R[v]["host_per_call_us"] - R["gnoop"]["host_per_call_us"]
    G = {}
    for name in ("ssleep", "asleep"):
        rs = [r["gather"][name] for r in rounds]
        seq, par = median([x[0] / 1e6 for x in rs]), median([x[1] / 1e6 for x in rs])
        G[name] = {"sequential_ms": seq, "gather_ms": par, "speedup": seq / par,
                   "rounds_ms": [[x[0] / 1e6, x[1] / 1e6] for x in rs]}
    return R, G


def main():
    ap = argparse.ArgumentParser(description="goeryx 'Host callbacks' benchmark")
    ap.add_argument("--json", metavar="PATH", help="also write the full report as JSON")
    ap.add_argument("--quick", action="store_true", help="few repetitions: a smoke test")
    ap.add_argument("--calls", type=int, default=1000, help="calls per execute (default 1000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds, one child per system each (default 5)")
    ap.add_argument("--goeryx", metavar="PYTHON", help="a Python with goeryx; 'self' for this one "
                    "(default: bench/setup.sh's venv, with the wheel from dist/)")
    ap.add_argument("--pyeryx", metavar="PYTHON", help="a Python with pyeryx; 'none' to skip "
                    "(default: bench/setup.sh's venv)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    if a.quick:
        a.calls, a.rounds = 200, 1
    try:
        import eryx
    except ImportError:
        sys.exit("eryx is not importable: run with the venv that has the wheel (.venv/bin/python)")
    if not hasattr(eryx, "GUEST_PYTHON_VERSION"):
        sys.exit("this interpreter's eryx is not goeryx")
    pys, why_not = interpreters(a)
    systems = [s for s in SYSTEMS if pys[s]]
    if "pyeryx" in why_not:
        print(f"NOTE: pyeryx is not measured: {why_not['pyeryx']}", file=sys.stderr)

    load0, share0 = loadavg(), cpu_share()
    others = OtherCPU()
    t_start = ns()
    rounds = {s: [] for s in systems}
    for rnd in range(a.rounds):
        for s in (systems if rnd % 2 == 0 else systems[::-1]):
            rounds[s].append(run_child(pys[s], a, rnd))
    elapsed = (ns() - t_start) / 1e9
    other_cores = others.cores()
    load1, share1 = loadavg(), cpu_share()
    S = {s: dict(zip(("calls", "gather"), summarise(rounds[s], a.calls))) for s in systems}

    rows = []

    def row(name, unit, key, base=None, note=""):
        vals = {s: key(S[s]) for s in systems}
        rows.append({"measurement": name, "unit": unit, "values": vals, "baseline": base, "note": note})

    def get(v, field):
        return lambda x: x["calls"].get(v, {}).get(field)

    n = f"{a.calls} calls x {a.rounds} rounds"
    for v, label in (("noop", "sync no-op callback, await"), ("noop.sync", "sync no-op callback, .sync()"),
                     ("anoop", "async no-op callback, await")):
        row(f"{label}: in guest mean ({n})", "us", get(v, "guest_mean_us"),
            25.0 if v == "noop" else 60.0 if v == "anoop" else None,
            "baseline = issue 18 target")
        row(f"{label}: in guest p50", "us", get(v, "guest_p50_us"))
        row(f"{label}: in guest p90", "us", get(v, "guest_p90_us"))
        row(f"{label}: in guest p99", "us", get(v, "guest_p99_us"))
        row(f"{label}: host total / {a.calls}", "us", get(v, "host_per_call_us"))
        row(f"{label}: host, net of the guest-only loop", "us", get(v, "host_net_per_call_us"))
    row("guest-only coroutine (baseline): in guest mean", "us", get("gnoop", "guest_mean_us"))
    row(f"guest-only coroutine (baseline): host total / {a.calls}", "us", get("gnoop", "host_per_call_us"))
    for name, label in (("ssleep", "sync time.sleep(0.1)"), ("asleep", "async asyncio.sleep(0.1)")):
        row(f"3 x {label}: one after another", "ms", lambda x, k=name: x["gather"][k]["sequential_ms"], 300.0)
        row(f"3 x {label}: asyncio.gather", "ms", lambda x, k=name: x["gather"][k]["gather_ms"], 100.0,
            "baseline = 100 ms (ideal)")
        row(f"3 x {label}: speed-up (sequential / gather)", "x",
            lambda x, k=name: x["gather"][k]["speedup"], 3.0, "3.0 = fully concurrent")

    ncpu = os.cpu_count()
    versions = ", ".join(f"{s} {rounds[s][0]['version']} (Python {rounds[s][0]['python']})" for s in systems)
    header = (f"{time.strftime('%Y-%m-%d %H:%M')}, host `{platform.node()}`, {ncpu} cores, {versions} "
              f"(goeryx guest Python {eryx.GUEST_PYTHON_VERSION}); took "
              f"{elapsed:.0f} s" + (" (--quick: not a benchmark)" if a.quick else "")
              + f"; 1-min load average {load0:.2f} before, {load1:.2f} after; other processes used "
              f"{other_cores:.2f} cores; CPU share of one thread {share0:.2f} before, {share1:.2f} after (1.00 = idle)")
    warnings = []
    if other_cores > BUSY_OTHERS or min(share0, share1) < 0.9:
        warnings.append(f"the machine was busy (other processes used {other_cores:.2f} cores on {ncpu}): "
                        "wall-clock numbers are inflated and noisy")
    print(header)
    print()
    head = ["measurement", "unit", *systems, "baseline", "goeryx/baseline"]
    if "pyeryx" in systems:
        head.append("goeryx/pyeryx")
    cells = []
    for r in rows:
        g, p = r["values"].get("goeryx"), r["values"].get("pyeryx")
        c = [r["measurement"], r["unit"], *[fmt(r["values"][s]) for s in systems], fmt(r["baseline"]),
             fmt(g / r["baseline"] if g is not None and r["baseline"] else None)]
        if "pyeryx" in systems:
            c.append(fmt(g / p if g is not None and p else None))
        cells.append(c)
    w = [max(len(str(x)) for x in col) for col in zip(head, *cells)]

    def line(c):
        return "| " + " | ".join(str(x).ljust(w[i]) if i < 2 else str(x).rjust(w[i])
                                 for i, x in enumerate(c)) + " |"
    print("\n".join([line(head), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(c) for c in cells]))
    print()
    print("- in guest: time.perf_counter_ns around each call, mean and p50 per execute, median over the "
          "rounds (p90/p99 over all calls); host: execute() wall of a Sandbox doing only the calls "
          "(interpreter start included) / calls, median over the rounds; net = minus the same loop over a "
          "guest-only coroutine. Each round is one child process per system, in alternating order.")
    print("- goeryx: sync host functions run on an engine thread (the guest's, when the Sandbox has callbacks), "
          "async ones on the Sandbox's event loop thread, or the caller's loop under execute_async "
          "(docs/guide/callbacks.md). `.sync()` does not exist in pyeryx.")
    for x in warnings:
        print("WARNING: " + x)
    if a.json:
        report = {"header": header, "params": vars(a), "rows": rows, "results": S, "raw_rounds": {
            s: [{"host_ns": r["host_ns"], "gather": r["gather"]} for r in rounds[s]] for s in systems},
            "load_avg_1min": [load0, load1], "others_cores": other_cores, "cpu_share": [share0, share1],
            "warnings": warnings}
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"JSON report: {a.json}")


if __name__ == "__main__":
    main()
