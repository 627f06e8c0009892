"""bench/compute.py with and without the memory guard, and natively, by CPU time (issue 15).

Every round runs, in a fresh process each and in rotated order: goeryx with the memory guard
(the default on Linux x86-64), goeryx with GOERYX_MEMORY_GUARD=0 (wazero's bounds checks), and
native CPython. Each process does one warm-up round of compute.py and `--repeat` timed rounds;
what is compared is the process CPU time (user+sys, getrusage) of those rounds, which a busy
machine inflates far less than wall-clock time, and the best wall time per part inside the
interpreter (as bench/run.py reports it). Prints medians over the rounds and the ratios:

    python3 bench/memory_guard.py [--rounds 5] [--repeat 2] [--python PY] [--native PY]

--python is an interpreter with goeryx installed (default: this one); --native the native
CPython 3.13 (default: the one bench/setup.sh prepared, else this one).

    python3 bench/memory_guard.py --scale 500,10000 [--python PY]

    python3 bench/memory_guard.py --latency [--rounds 5]

instead compares Sandbox()+execute('print(1)') with and without the guard: p50 and process CPU
time per run of 200 runs after 20 warm-ups, and runs per second over 3 s, in alternating fresh
processes (on a busy machine only the CPU time means much).

    python3 bench/memory_guard.py --scale 500,10000 [--python PY]

keeps 500 Sessions alive at once (address space, resident memory and mappings per
Session, from /proc/self) and then runs 10,000 Sandboxes one after the other.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

WORKER = r"""
import json, resource, sys, time
src, repeat, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# The warm-up round runs in a first execute, outside the CPU time measured.
warm = "ns = {'__name__': 'compute'}\nexec(compile(%r, 'compute.py', 'exec'), ns)\nns['run'](1)\n" % src
text = "import json\nprint(json.dumps(ns['run'](%d)))\n" % repeat
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
if mode == 'native':
    import io, contextlib
    buf = io.StringIO()
    g = {}
    exec(warm, g)
    c0 = cpu()
    with contextlib.redirect_stdout(buf):
        exec(text, g)
    c1 = cpu()
    out = buf.getvalue()
else:
    import eryx
    sb = eryx.Session(execution_timeout_ms=600000)
    sb.execute(warm)
    c0 = cpu()
    out = sb.execute(text).stdout
    c1 = cpu()
res = json.loads(out.strip().splitlines()[-1])
res['cpu'] = c1 - c0
print(json.dumps(res))
"""


SCALE = r"""
import sys, time
import eryx
live, seq = int(sys.argv[1]), int(sys.argv[2])
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1])
def maps():
    return sum(1 for _ in open('/proc/self/maps'))
eryx.Sandbox().execute('1')
vm0, rss0, m0 = status('VmSize'), status('VmRSS'), maps()
t = time.time()
sessions = []
for i in range(live):
    s = eryx.Session()
    s.execute('x = %d' % i)
    sessions.append(s)
vm1, rss1, m1 = status('VmSize'), status('VmRSS'), maps()
ok = sum(s.execute('print(x)').stdout.strip() == str(i) for i, s in enumerate(sessions))
print(f"{live} live Sessions: {ok} correct, {time.time() - t:.1f} s; per Session: address space "
      f"+{(vm1 - vm0) / live / 2**20:.2f} GiB, RSS +{(rss1 - rss0) / live / 1024:.2f} MiB, "
      f"+{(m1 - m0) / live:.1f} mappings; total address space {vm1 / 2**30:.0f} TiB", flush=True)
for s in sessions:
    s.close()
t = time.time()
ok = sum(eryx.Sandbox().execute('print(%d)' % i).stdout.strip() == str(i) for i in range(seq))
print(f"{seq} sequential Sandboxes: {ok} correct, {time.time() - t:.1f} s; afterwards address space "
      f"{status('VmSize') / 2**20:.0f} GiB (idle pool), {maps()} mappings", flush=True)
"""


LATENCY = r"""
import json, resource, statistics, time
import eryx
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
for _ in range(20):
    eryx.Sandbox().execute('print(1)')
ts = []
c0 = cpu()
for _ in range(200):
    t = time.perf_counter()
    eryx.Sandbox().execute('print(1)')
    ts.append(time.perf_counter() - t)
c1 = cpu()
n, end = 0, time.perf_counter() + 3
while time.perf_counter() < end:
    eryx.Sandbox().execute('print(1)')
    n += 1
print(json.dumps({'p50_ms': statistics.median(ts) * 1e3, 'runs_s': n / 3, 'cpu_ms': (c1 - c0) / 200 * 1e3}))
"""


def native_default():
    cfg = os.path.join(os.environ.get("GOERYX_CACHE_DIR", os.path.expanduser("~/.cache/goeryx")),
                       "bench", "venv-goeryx", "pyvenv.cfg")
    try:
        for line in open(cfg):
            if line.startswith("home"):
                return os.path.join(line.split("=", 1)[1].strip(), "python3")
    except OSError:
        pass
    return sys.executable


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--native", default=native_default())
    ap.add_argument("--scale", help="LIVE,SEQUENTIAL: the scale check instead")
    ap.add_argument("--latency", action="store_true", help="Sandbox()+execute instead")
    a = ap.parse_args()
    if a.latency:
        res = {"guarded": [], "checked": []}
        for r in range(a.rounds):
            for m in (["guarded", "checked"] if r % 2 == 0 else ["checked", "guarded"]):
                env = dict(os.environ)
                if m == "checked":
                    env["GOERYX_MEMORY_GUARD"] = "0"
                out = subprocess.run([a.python, "-I", "-c", LATENCY], env=env, capture_output=True,
                                     text=True, check=True, cwd="/")
                res[m].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {m:8s} {res[m][-1]}", file=sys.stderr, flush=True)
        for k in ("p50_ms", "runs_s", "cpu_ms"):
            g = statistics.median(x[k] for x in res["guarded"])
            c = statistics.median(x[k] for x in res["checked"])
            print(f"Sandbox()+execute {k}: guarded {g:.3f}, checked {c:.3f}, guarded/checked {g / c:.2f} "
                  f"(guarded {min(x[k] for x in res['guarded']):.3f}-{max(x[k] for x in res['guarded']):.3f}, "
                  f"checked {min(x[k] for x in res['checked']):.3f}-{max(x[k] for x in res['checked']):.3f})")
        return
    if a.scale:
        live, seq = a.scale.split(",")
        subprocess.run([a.python, "-I", "-c", SCALE, live, seq], check=True, cwd="/")
        return
    src = open(os.path.join(HERE, "compute.py")).read()
    modes = ["guarded", "checked", "native"]
    results = {m: [] for m in modes}
    for r in range(a.rounds):
        for m in modes[r % 3:] + modes[:r % 3]:
            env = dict(os.environ)
            if m == "checked":
                env["GOERYX_MEMORY_GUARD"] = "0"
            py = a.native if m == "native" else a.python
            out = subprocess.run([py, "-I", "-c", WORKER, src, str(a.repeat), m], env=env,
                                 capture_output=True, text=True, check=True, cwd="/")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["cpu"] /= a.repeat  # per round
            results[m].append(res)
            print(f"round {r + 1} {m:8s} cpu/round {res['cpu']:.3f} s  total {res['total']:.3f} s",
                  file=sys.stderr, flush=True)
    med = {m: {k: statistics.median(x[k] for x in results[m]) for k in ("cpu", "total", "loop", "fib", "strdict")}
           for m in modes}
    lo_hi = {m: (min(x["cpu"] for x in results[m]), max(x["cpu"] for x in results[m])) for m in modes}
    print(f"{'':22s} {'guarded':>9s} {'checked':>9s} {'native':>9s}  guarded/checked  guarded/native  checked/native")
    for k in ("cpu", "total", "loop", "fib", "strdict"):
        g, c, n = med["guarded"][k], med["checked"][k], med["native"][k]
        label = "CPU per round (s)" if k == "cpu" else f"best {k} (s)"
        print(f"{label:22s} {g:9.3f} {c:9.3f} {n:9.3f}  {g / c:15.2f}  {g / n:14.2f}  {c / n:14.2f}")
    print("CPU per round, min-max: " + ", ".join(f"{m} {lo:.3f}-{hi:.3f}" for m, (lo, hi) in lo_hi.items()))


if __name__ == "__main__":
    main()
