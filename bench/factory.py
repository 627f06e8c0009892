#!/usr/bin/env python3
"""Benchmark for issue 12 (SandboxFactory): what a factory costs to build, save and load, and
what a sandbox made from it costs per run, next to a plain Sandbox.

    .venv/bin/python bench/factory.py            # about a minute on 2 cores
    .venv/bin/python bench/factory.py --quick    # few repetitions
    .venv/bin/python bench/factory.py --json out.json

Real packages come from tests/_packages.py (pip download, pinned and hashed, cached under
$GOERYX_CACHE_DIR/test-wheels). Every row is a median (p50) over repetitions in this process,
after one warm-up; "ratio" is the row's p50 over the plain `Sandbox()+execute('print(1)')` p50.
Wall-clock figures on a shared machine are inflated by other load; the ratios less so.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import _packages  # noqa: E402

import eryx  # noqa: E402

RENDER = ("import jinja2\n"
          "e = jinja2.Environment(autoescape=True)\n"
          "print(e.from_string('{% for x in xs %}{{ x }},{% endfor %}').render(xs=range(5)))")
SYMPY = "import sympy as s\nx = s.Symbol('x')\nprint(s.expand((x + 1) ** 3))"


def p50_ms(fn, n):
    fn()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def timed_ms(fn):
    t = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1e3


def run_once(make, code):
    def go():
        with make() as sb:
            sb.execute(code)
    return go


def pss_kib():
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    n = 5 if args.quick else 40
    rows = {}
    tmp = tempfile.mkdtemp(prefix="goeryx-bench-factory-")

    base = p50_ms(run_once(eryx.Sandbox, "print(1)"), n)
    rows["plain Sandbox()+execute('print(1)') p50 ms"] = base

    jinja_pkgs = [*_packages.wheels("jinja2"), _packages.markupsafe_tgz(tmp)]
    # A first build stages and compiles the packages; a rebuild from the same inputs (in any
    # process) finds them staged. A module of its own makes the inputs new.
    nonce = os.path.join(tmp, "nonce")
    os.mkdir(nonce)
    with open(os.path.join(nonce, f"nonce_{os.getpid()}_{time.time_ns()}.py"), "w") as out:
        out.write("")
    f, build = timed_ms(lambda: eryx.SandboxFactory(packages=[*jinja_pkgs, nonce], imports=["jinja2"]))
    rows["jinja2 factory first build ms (stage + compile + import + capture)"] = build
    f.close()
    f, build = timed_ms(lambda: eryx.SandboxFactory(packages=jinja_pkgs, imports=["jinja2"]))
    rows["jinja2 factory rebuild ms (staged tree reused)"] = build
    rows["jinja2 create_sandbox()+execute(render) p50 ms"] = p50_ms(run_once(f.create_sandbox, RENDER), n)
    rows["jinja2 create_sandbox()+execute('print(1)') p50 ms"] = p50_ms(
        run_once(f.create_sandbox, "print(1)"), n)
    # A warm-up module of the user's own, pre-imported, leaves jinja2's lexer and caches built.
    warm = os.path.join(tmp, "warm")
    os.mkdir(warm)
    with open(os.path.join(warm, "jinja_warm.py"), "w") as out:
        out.write("import jinja2\njinja2.Environment(autoescape=True).from_string("
                  "'{% for n in x %}{{ n }}{% endfor %}').render(x=[1])\n")
    with eryx.SandboxFactory(packages=[*jinja_pkgs, warm], imports=["jinja2", "jinja_warm"]) as w:
        rows["jinja2 + warm-up module: create_sandbox()+execute(render) p50 ms"] = p50_ms(
            run_once(w.create_sandbox, RENDER), n)
    nopre = eryx.SandboxFactory(packages=jinja_pkgs)
    rows["jinja2 not pre-imported: create_sandbox()+execute(render) p50 ms"] = p50_ms(
        run_once(nopre.create_sandbox, RENDER), max(3, n // 4))
    nopre.close()
    path = os.path.join(tmp, "jinja.eryx")
    _, rows["jinja2 save ms"] = timed_ms(lambda: f.save(path))
    rows["jinja2 artifact bytes"] = os.path.getsize(path)
    loads = []
    for _ in range(3 if args.quick else 10):
        g, ms = timed_ms(lambda: eryx.SandboxFactory.load(path))
        loads.append(ms)
        g.close()
    rows["jinja2 load p50 ms"] = statistics.median(loads)

    # Memory: live sessions from one factory share the image (copy-on-write).
    sessions = 10 if args.quick else 50
    before = pss_kib()
    live = [f.create_session() for _ in range(sessions)]
    for s in live:
        s.execute("import jinja2")
    after = pss_kib()
    if before is not None and after is not None:
        rows[f"PSS per idle session from the jinja2 factory KiB ({sessions} live)"] = (
            (after - before) / sessions)
    for s in live:
        s.close()
    f.close()

    sym_pkgs = _packages.wheels("sympy", "mpmath")
    sf, build = timed_ms(lambda: eryx.SandboxFactory(packages=sym_pkgs, imports=["sympy"]))
    rows["sympy factory build ms (staged tree reused after the first run)"] = build
    limits = eryx.ResourceLimits(execution_timeout_ms=120_000)
    rows["sympy create_sandbox()+execute(expand) p50 ms"] = p50_ms(
        run_once(lambda: sf.create_sandbox(resource_limits=limits), SYMPY), n)
    # sympy imports sympy.tensor.tensor (and combinatorics) lazily on the first addition:
    # pre-importing it too leaves nothing to import per sandbox.
    with eryx.SandboxFactory(packages=sym_pkgs, imports=["sympy", "sympy.tensor.tensor"]) as st:
        rows["sympy + sympy.tensor.tensor: create_sandbox()+execute(expand) p50 ms"] = p50_ms(
            run_once(lambda: st.create_sandbox(resource_limits=limits), SYMPY), n)
    path = os.path.join(tmp, "sympy.eryx")
    sf.save(path)
    rows["sympy artifact bytes"] = os.path.getsize(path)
    g, rows["sympy first load in this process ms"] = timed_ms(
        lambda: eryx.SandboxFactory.load(path))
    g.close()
    loads = []
    for _ in range(3):
        g, ms = timed_ms(lambda: eryx.SandboxFactory.load(path))
        loads.append(ms)
        g.close()
    rows["sympy load p50 ms"] = statistics.median(loads)
    sf.close()
    cold = eryx.SandboxFactory(packages=sym_pkgs)
    rows["sympy not pre-imported: create_sandbox()+execute(expand) ms (1 run)"] = timed_ms(
        run_once(lambda: cold.create_sandbox(resource_limits=limits), SYMPY))[1]
    cold.close()

    width = max(len(k) for k in rows)
    for k, v in rows.items():
        ratio = ""
        if k.endswith("p50 ms") and "plain" not in k:
            ratio = f"   {v / base:5.2f}x plain"
        val = f"{v:12.0f}" if "bytes" in k else f"{v:12.2f}"
        print(f"{k:<{width}} {val}{ratio}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
