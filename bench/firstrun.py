"""First run after `pip install`: the wheel from dist/ in a fresh venv, empty goeryx caches.

    python3 bench/firstrun.py [--runs 5] [--wheel dist/goeryx-*.whl] [--without-precompiled]

Prints, as medians over --runs fresh processes (min-max beside):
  - `import eryx` in-process (perf_counter around the import; also -X importtime's total);
  - the first Sandbox().execute('print(1)') from just before the import, with an empty cache
    (a new GOERYX_CACHE_DIR each run) and with a warm one (the same dir, after one run);
  - with --without-precompiled, the same with the precompiled guest removed from the venv
    (what the wheel did before it carried one: compile on first use).
One run of this script on a busy 2-core VM varies by tens of percent: compare within a run.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIRST = r"""
import time
t0 = time.perf_counter()
import eryx
t1 = time.perf_counter()
r = eryx.Sandbox().execute('print(1)')
t2 = time.perf_counter()
assert r.stdout == '1', r
print((t1 - t0) * 1e3, (t2 - t0) * 1e3)
"""


def run(python, env):
    out = subprocess.run([python, "-c", FIRST], env=env, capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir())
    imp, total = map(float, out.stdout.split())
    return imp, total, out.stderr


def importtime(python, env):
    out = subprocess.run([python, "-X", "importtime", "-c", "import eryx"], env=env,
                         capture_output=True, text=True, check=True)
    line = [ln for ln in out.stderr.splitlines() if ln.rstrip().endswith("| eryx")][-1]
    return int(line.split("|")[1]) / 1e3


def fmt(xs):
    return f"{statistics.median(xs):8.1f} ms  ({min(xs):.1f}-{max(xs):.1f})"


def measure(python, runs, label):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOERYX_", "XDG_"))}
    cold, warm, imports, notices = [], [], [], set()
    for _ in range(runs):
        cache = tempfile.mkdtemp(prefix="goeryx-firstrun-")
        env = dict(base, GOERYX_CACHE_DIR=cache)
        try:
            imp, total, err = run(python, env)
            cold.append(total)
            imports.append(imp)
            notices.update(ln for ln in err.splitlines() if ln.startswith("goeryx:"))
            warm.append(run(python, env)[1])
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    it = [importtime(python, base) for _ in range(runs)]
    print(f"--- {label}")
    print(f"import eryx (in-process)               {fmt(imports)}")
    print(f"import eryx (-X importtime, warm)      {fmt(it)}")
    print(f"first sandbox, empty cache             {fmt(cold)}")
    print(f"first sandbox, warm cache              {fmt(warm)}")
    for n in sorted(notices):
        print(f"  stderr: {n[:100]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--wheel")
    ap.add_argument("--without-precompiled", action="store_true")
    a = ap.parse_args()
    wheel = a.wheel or max(glob.glob(os.path.join(ROOT, "dist", "goeryx-*.whl")), key=os.path.getmtime)
    print(f"wheel {os.path.basename(wheel)}, {os.path.getsize(wheel) / 2**20:.1f} MiB")
    tmp = tempfile.mkdtemp(prefix="goeryx-firstrun-venv-")
    try:
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        python = os.path.join(venv, "bin", "python")
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--no-deps", "--no-index", wheel], check=True)
        measure(python, a.runs, "fresh venv, the wheel as built")
        if a.without_precompiled:
            site = subprocess.run([python, "-c", "import eryx, os; print(os.path.dirname(eryx.__file__))"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            shutil.rmtree(os.path.join(site, "_runtime", "precompiled"), ignore_errors=True)
            measure(python, a.runs, "the same venv, precompiled guest removed (compiles on first use)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
