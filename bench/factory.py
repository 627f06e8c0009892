#!/usr/bin/env python3
"""Benchmark for issue 12 (SandboxFactory): goeryx and pyeryx (the reference) side by side.

    .venv/bin/python bench/factory.py                 # 5 goeryx rounds, 1 pyeryx round (~10 min)
    .venv/bin/python bench/factory.py --quick         # 1 round each, few repetitions
    .venv/bin/python bench/factory.py --rounds 7 --pyeryx-rounds 2 --json out.json
    .venv/bin/python bench/factory.py --pyeryx-from out.json   # reuse pyeryx rounds measured before
    .venv/bin/python bench/factory.py --systems goeryx

Each round runs one fresh worker process per system (this file with --worker), goeryx in this
interpreter, pyeryx in $PYERYX_PYTHON (default: the venv bench/setup.sh prepares,
$GOERYX_CACHE_DIR/bench/venv-pyeryx; without it pyeryx is skipped with a note). Both workers run
the same code on the same real packages (tests/_packages.py: pip download, pinned and hashed,
cached under $GOERYX_CACHE_DIR/test-wheels). Every timed row is a median (p50) over repetitions
after a warm-up; the table shows the median over rounds and the range [min-max] of the rounds'
p50s. "x plain" is the median over rounds of the row's p50 over the p50 of a plain
`Sandbox()+execute('print(1)')` run alternately with it (the baseline under the same load);
"go/py" divides the goeryx median by the pyeryx one (measured in other processes, at other times:
under changing load this ratio is the noisier one: compare the "CPU per run" rows, process CPU
time of the run, which other load inflates far less).
Wall-clock figures on a shared machine are inflated by other load; the ratios less so.

The jinja2 rows (issue 12's targets) differ in what the factory captured:
- "render": imports=["jinja2"]; the run builds an Environment, compiles the template, renders.
- "render, lexer warm": setup_code builds an Environment with the same settings, so its lexer
  (jinja2 caches it per settings) is in the image; the run still compiles the template.
- "render, template captured": setup_code also compiles the template (`T`); the run renders it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SYSTEMS = ("goeryx", "pyeryx")

TEMPLATE = "{% for x in xs %}{{ x }},{% endfor %}"
RENDER = ("import jinja2\n"
          "e = jinja2.Environment(autoescape=True)\n"
          f"print(e.from_string({TEMPLATE!r}).render(xs=range(5)))")
RENDER_CAPTURED = "import jinja2\nprint(T.render(xs=range(5)))"
SETUP_WARM = "import jinja2\nenv = jinja2.Environment(autoescape=True)\nenv.from_string('{{ 1 }}')\n"
SETUP_TEMPLATE = SETUP_WARM + f"T = env.from_string({TEMPLATE!r})\n"
RENDERED = "0,1,2,3,4,"
SYMPY = "import sympy as s\nx = s.Symbol('x')\nprint(s.expand((x + 1) ** 3))"
SYMPY_OUT = "x**3 + 3*x**2 + 3*x + 1"

# (key, label, unit): the rows, in order. "ms" rows are p50 unless the label says otherwise.
ROWS = [
    ("plain", "plain Sandbox()+execute('print(1)')", "ms"),
    ("j_build_first", "jinja2 factory build, first (stage + compile + import + capture)", "ms"),
    ("j_build", "jinja2 factory build again (staged tree reused)", "ms"),
    ("j_print", "jinja2 create_sandbox()+execute('print(1)')", "ms"),
    ("j_render", "jinja2 create_sandbox()+execute(render)", "ms"),
    ("j_render_warm", "jinja2 render, lexer warm (setup_code)", "ms"),
    ("j_render_tpl", "jinja2 render, template captured (setup_code)", "ms"),
    ("j_render_nopre", "jinja2 render, not pre-imported", "ms"),
    ("j_fuel_render", "fuel: render", "units"),
    ("j_fuel_warm", "fuel: render, lexer warm", "units"),
    ("j_fuel_tpl", "fuel: render, template captured", "units"),
    ("j_fuel_print", "fuel: print(1)", "units"),
    ("j_bytes", "jinja2 artifact size", "MB"),
    ("j_save", "jinja2 save", "ms"),
    ("j_load", "jinja2 load() of the saved file", "ms"),
    ("pss", "PSS per idle sandbox, 100 live from the jinja2 factory", "KiB"),
    ("pss_session", "PSS per idle session, 100 live from the jinja2 factory", "KiB"),
    ("s_build", "sympy factory build (sympy + sympy.tensor.tensor)", "ms"),
    ("s_expand", "sympy create_sandbox()+execute(expand)", "ms"),
    ("s_bytes", "sympy artifact size", "MB"),
    ("s_load", "sympy load() of the saved file", "ms"),
]
# Process CPU time per run (p50) of the timed rows: under other load, the fairer comparison of
# two systems measured at different times.
ROWS += [(k + "_cpu", "CPU per run: " + label, unit) for k, label, unit in ROWS
         if k == "plain" or k in ("j_print", "j_render", "j_render_warm", "j_render_tpl", "s_expand")]
RATIO_TO_PLAIN = {"j_print", "j_render", "j_render_warm", "j_render_tpl", "j_render_nopre", "s_expand"}


# ================================================================================ worker side

def p50_ms(fn, n):
    fn()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def p50_pair_ms(fn, base, n):
    """p50s of fn and of base, run alternately: base is measured under the same load as fn.
    Also fn's p50 of process CPU time (all threads), which other load inflates far less."""
    fn()
    base()
    a, b, cpu = [], [], []
    for _ in range(n):
        for f, out in ((fn, a), (base, b)):
            c = time.process_time()
            t = time.perf_counter()
            f()
            out.append((time.perf_counter() - t) * 1e3)
            if f is fn:
                cpu.append((time.process_time() - c) * 1e3)
    return statistics.median(a), statistics.median(b), statistics.median(cpu)


def timed_ms(fn):
    t = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1e3


def text(out):
    if isinstance(out, (bytes, bytearray)):
        out = bytes(out).decode()
    return out.rstrip("\n")


def pss_kib():
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def worker(system, quick, skip):
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import _packages

    import eryx
    goeryx = system == "goeryx"
    n = 5 if quick else 25
    rows = {}
    tmp = tempfile.mkdtemp(prefix="goeryx-bench-factory-")
    limits = eryx.ResourceLimits(execution_timeout_ms=120_000)

    def make_sandbox(factory=None):
        if factory is None:
            return eryx.Sandbox(resource_limits=limits)
        return factory.create_sandbox(resource_limits=limits)

    def run_once(factory, code, want):
        # No context manager: pyeryx's Sandbox has none; dropping it is part of the run.
        def go():
            sb = make_sandbox(factory)
            out = text(sb.execute(code).stdout)
            del sb
            assert out == want, out
        return go

    def fuel(factory, code):
        if not goeryx:
            return None  # pyeryx counts wasmtime fuel: another unit
        sb = factory.create_sandbox(resource_limits=eryx.ResourceLimits(max_fuel=10**12))
        return sb.execute(code).fuel_consumed

    plain = run_once(None, "print(1)", "1")
    rows["plain"] = p50_ms(plain, n)
    _, _, rows["plain_cpu"] = p50_pair_ms(plain, plain, n)

    def timed_row(key, fn, reps=n):
        rows[key], rows[key + "_plain"], rows[key + "_cpu"] = p50_pair_ms(fn, plain, reps)

    jinja_pkgs = [*_packages.wheels("jinja2"), _packages.markupsafe_tgz(tmp)]
    # A module of its own makes the inputs new, so that this build stages and compiles.
    nonce = os.path.join(tmp, "nonce")
    os.mkdir(nonce)
    with open(os.path.join(nonce, f"nonce_{os.getpid()}_{time.time_ns()}.py"), "w") as out:
        out.write("")
    # Kept alive to the end: freeing it now would return memory to the OS during the PSS rows.
    first, rows["j_build_first"] = timed_ms(
        lambda: eryx.SandboxFactory(packages=[*jinja_pkgs, nonce], imports=["jinja2"]))
    f, rows["j_build"] = timed_ms(lambda: eryx.SandboxFactory(packages=jinja_pkgs, imports=["jinja2"]))

    # Memory: live sandboxes (and, for goeryx, sessions) from one factory, each having run once,
    # share the image. A first batch settles the pools, so that the delta is the per-object cost.
    import gc

    def pss_per(make, count=100):
        settle = [make() for _ in range(10)]
        gc.collect()
        before = pss_kib()
        live = [make() for _ in range(count)]
        gc.collect()
        after = pss_kib()
        del settle, live
        return None if before is None or after is None else (after - before) / count

    def live_sandbox():
        sb = make_sandbox(f)
        assert text(sb.execute("import jinja2\nprint(1)").stdout) == "1"
        return sb

    def live_session():
        s = f.create_session()
        assert text(s.execute("import jinja2\nprint(1)").stdout) == "1"
        return s

    rows["pss"] = pss_per(live_sandbox)
    if goeryx:
        rows["pss_session"] = pss_per(live_session)

    timed_row("j_print", run_once(f, "print(1)", "1"))
    timed_row("j_render", run_once(f, RENDER, RENDERED))
    warm = eryx.SandboxFactory(packages=jinja_pkgs, imports=["jinja2"], setup_code=SETUP_WARM)
    timed_row("j_render_warm", run_once(warm, RENDER, RENDERED))
    tpl = eryx.SandboxFactory(packages=jinja_pkgs, imports=["jinja2"], setup_code=SETUP_TEMPLATE)
    timed_row("j_render_tpl", run_once(tpl, RENDER_CAPTURED, RENDERED))
    rows["j_fuel_render"] = fuel(f, RENDER)
    rows["j_fuel_warm"] = fuel(warm, RENDER)
    rows["j_fuel_tpl"] = fuel(tpl, RENDER_CAPTURED)
    rows["j_fuel_print"] = fuel(f, "print(1)")
    del warm, tpl
    if "nopre" not in skip:
        nopre = eryx.SandboxFactory(packages=jinja_pkgs)
        timed_row("j_render_nopre", run_once(nopre, RENDER, RENDERED), max(3, n // 5))
        del nopre
    path = os.path.join(tmp, "jinja.eryx")
    _, rows["j_save"] = timed_ms(lambda: f.save(path))
    rows["j_bytes"] = os.path.getsize(path) / 1e6
    loads = []
    for _ in range(3 if quick else 7):
        g, ms = timed_ms(lambda: eryx.SandboxFactory.load(path))
        loads.append(ms)
        del g
    rows["j_load"] = statistics.median(loads)
    del f

    if "sympy" not in skip:
        sym_pkgs = _packages.wheels("sympy", "mpmath")
        # sympy imports sympy.tensor.tensor lazily on the first addition: pre-imported too,
        # nothing is left to import per sandbox.
        sf, rows["s_build"] = timed_ms(
            lambda: eryx.SandboxFactory(packages=sym_pkgs, imports=["sympy", "sympy.tensor.tensor"]))
        timed_row("s_expand", run_once(sf, SYMPY, SYMPY_OUT))
        path = os.path.join(tmp, "sympy.eryx")
        sf.save(path)
        rows["s_bytes"] = os.path.getsize(path) / 1e6
        loads = []
        for _ in range(3):
            g, ms = timed_ms(lambda: eryx.SandboxFactory.load(path))
            loads.append(ms)
            del g
        rows["s_load"] = statistics.median(loads)
    rows["_version"] = eryx.__version__
    del first
    return rows


# ================================================================================ driver side

def pyeryx_python():
    py = os.environ.get("PYERYX_PYTHON")
    if py:
        return py, None
    cache = os.environ.get("GOERYX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "goeryx")
    py = os.path.join(cache, "bench", "venv-pyeryx", "bin", "python")
    if os.path.exists(py):
        return py, None
    return None, f"no pyeryx interpreter ({py} is missing: run bash bench/setup.sh, or set PYERYX_PYTHON)"


def run_worker(py, system, a):
    cmd = [py, os.path.abspath(__file__), "--worker", system, "--skip", ",".join(a.skip)]
    if a.quick:
        cmd.append("--quick")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=3600)
    if p.returncode != 0:
        return None, p.stderr.strip().splitlines()[-1:] or ["exit %d" % p.returncode]
    return json.loads(p.stdout.strip().splitlines()[-1]), None


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "units":
        return f"{v / 1e6:.1f}M"
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, help="goeryx rounds (default 5, --quick 1)")
    ap.add_argument("--pyeryx-rounds", type=int, default=1,
                    help="pyeryx rounds (default 1: its factory builds take minutes each)")
    ap.add_argument("--pyeryx-from", metavar="JSON",
                    help="take the pyeryx rounds from an earlier --json output instead of running them")
    ap.add_argument("--json")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--skip", default="", help="comma-separated: sympy, nopre")
    ap.add_argument("--worker", choices=SYSTEMS)
    a = ap.parse_args()
    a.skip = [s for s in a.skip.split(",") if s]
    if a.worker:
        print(json.dumps(worker(a.worker, a.quick, a.skip)))
        return
    rounds = {"goeryx": a.rounds or (1 if a.quick else 5), "pyeryx": a.pyeryx_rounds}
    pys = {"goeryx": sys.executable}
    notes = []
    systems = [s for s in a.systems.split(",") if s]
    if "pyeryx" in systems:
        pys["pyeryx"], why = pyeryx_python()
        if why:
            notes.append(why)
            systems.remove("pyeryx")
    results = {s: [] for s in systems}
    if a.pyeryx_from and "pyeryx" in systems:
        with open(a.pyeryx_from) as f:
            results["pyeryx"] = json.load(f)["rounds"]["pyeryx"]
        rounds["pyeryx"] = 0
        notes.append(f"pyeryx rounds from {a.pyeryx_from}")
    for r in range(max(rounds.values())):
        for s in systems:
            if r >= rounds[s]:
                continue
            t = time.time()
            out, err = run_worker(pys[s], s, a)
            print(f"[round {r + 1}/{rounds[s]}] {s}: {time.time() - t:.0f} s" + (f" FAILED: {err}" if err else ""),
                  file=sys.stderr, flush=True)
            if out is not None:
                results[s].append(out)

    def stat(s, key):
        vals = [x[key] for x in results.get(s, []) if x.get(key) is not None]
        if not vals:
            return None, None, None
        return statistics.median(vals), min(vals), max(vals)

    table = {}
    head = ["measurement", "unit", "goeryx p50 [range]", "x plain", "pyeryx p50 [range]", "x plain", "go/py"]
    lines = []
    for key, label, unit in ROWS:
        cells = [label, unit]
        meds = {}
        for s in SYSTEMS:
            med, lo, hi = stat(s, key)
            meds[s] = med
            if med is None:
                cells += ["—", ""]
                continue
            cell = fmt(med, unit) + (f" [{fmt(lo, unit)}–{fmt(hi, unit)}]" if lo != hi else "")
            ratio = ""
            if key.endswith("_cpu") and key != "plain_cpu":
                rs = [x[key] / x["plain_cpu"] for x in results[s] if x.get(key) and x.get("plain_cpu")]
                ratio = f"{statistics.median(rs):.2f}x" if rs else ""
            if key in RATIO_TO_PLAIN:
                # each round's p50 over the plain p50 measured alternately with it
                rs = [x[key] / x.get(key + "_plain", x["plain"]) for x in results[s] if x.get(key) is not None]
                ratio = f"{statistics.median(rs):.2f}x"
            cells += [cell, ratio]
        g, p = meds.get("goeryx"), meds.get("pyeryx")
        cells.append(f"{g / p:.2f}" if g is not None and p else "")
        table[key] = {"label": label, "unit": unit, "goeryx": meds.get("goeryx"), "pyeryx": meds.get("pyeryx")}
        lines.append(cells)
    widths = [max(len(str(c[i])) for c in [head, *lines]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in lines:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(c, widths)) + " |")
    versions = {s: results[s][0].get("_version") for s in systems if results[s]}
    print(f"\nrounds: { {k: len(v) for k, v in results.items()} }; versions: {versions}; "
          f"load average at the end: {os.getloadavg()}")
    for n in notes:
        print("NOTE:", n)
    if a.json:
        with open(a.json, "w") as out:
            json.dump({"rows": table, "rounds": results, "versions": versions, "notes": notes}, out, indent=2)


if __name__ == "__main__":
    main()
