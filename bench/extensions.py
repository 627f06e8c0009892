"""Extension modules in the guest (issue 14), through ``import eryx``:

  factory   p50 of create_sandbox() + execute('import markupsafe; markupsafe.escape("<a>")') from
            a factory that pre-imported markupsafe (its _speedups side module in the image),
            beside p50 of a plain Sandbox() + execute('print(1)'), measured alternately;
  escape    markupsafe.escape on a 1 MB string with _speedups vs its pure-Python fallback
            (markupsafe._native), in the guest, and the same factor on the native CPython
            running this script (with the host's markupsafe, when it has one with _speedups).

    python bench/extensions.py [--runs N]

The wheels come from dist/wasi/ (./build.sh). Prints JSON.
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time

import eryx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ESCAPE = r"""
import time, markupsafe, markupsafe._native as native, markupsafe._speedups as speedups
s = ("<a href='x'>Tom & Jerry</a> plain text " * 30000)[:1 << 20]
def best(f):
    b = None
    for _ in range(5):
        t = time.perf_counter(); f(s); d = time.perf_counter() - t
        b = d if b is None else min(b, d)
    return b
assert str(speedups._escape_inner(s)) == str(native._escape_inner(s))
print(best(native._escape_inner), best(speedups._escape_inner))
"""


def p50(f, runs):
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    a = ap.parse_args()
    wheels = glob.glob(os.path.join(ROOT, "dist", "wasi", "markupsafe-*.whl"))
    if not wheels:
        sys.exit("no markupsafe wheel in dist/wasi: run ./build.sh")
    out = {}
    with eryx.SandboxFactory(packages=wheels, imports=["markupsafe"]) as f:
        def from_factory():
            with f.create_sandbox() as sb:
                assert sb.execute('import markupsafe; print(markupsafe.escape("<a>"))').stdout == "&lt;a&gt;"

        def plain():
            with eryx.Sandbox() as sb:
                assert sb.execute("print(1)").stdout == "1"

        for _ in range(10):  # warm-up
            from_factory()
            plain()
        fac, pl = [], []
        for _ in range(5):  # alternate in slices: both see the same machine load
            fac.append(p50(from_factory, a.runs // 5))
            pl.append(p50(plain, a.runs // 5))
        out["factory_markupsafe_p50_ms"] = round(statistics.median(fac) * 1e3, 3)
        out["plain_print_p50_ms"] = round(statistics.median(pl) * 1e3, 3)
        out["factory_vs_plain"] = round(statistics.median(fac) / statistics.median(pl), 3)

        with f.create_sandbox() as sb:
            pure, fast = map(float, sb.execute(ESCAPE).stdout.split())
        out["guest_escape_1mb_pure_ms"] = round(pure * 1e3, 2)
        out["guest_escape_1mb_speedups_ms"] = round(fast * 1e3, 2)
        out["guest_speedup"] = round(pure / fast, 2)
    try:
        import markupsafe._native  # noqa: F401
        import markupsafe._speedups  # noqa: F401
        ns = {}
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(ESCAPE, ns)
        pure, fast = map(float, buf.getvalue().split())
        out["native_escape_1mb_pure_ms"] = round(pure * 1e3, 2)
        out["native_escape_1mb_speedups_ms"] = round(fast * 1e3, 2)
        out["native_speedup"] = round(pure / fast, 2)
    except ImportError as e:
        out["native"] = f"not measured: {e}"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
