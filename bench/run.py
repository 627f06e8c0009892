#!/usr/bin/env python3
"""Side-by-side benchmark: goeryx vs pyeryx (the reference, Rust/wasmtime) vs native CPython.

    python3 bench/run.py            # full run: about 3 minutes on 2 cores
    python3 bench/run.py --quick    # smoke test with few repetitions (numbers not meaningful)

Any Python >= 3.9 can drive it (stdlib only). It first runs bench/setup.sh (idempotent, cached
under $GOERYX_CACHE_DIR/bench/), which prepares venvs of the native CPython 3.13.5 built by
runtime/build.sh: one with the goeryx wheel from dist/, one with pyeryx pinned by hash, one with
matplotlib. Every measurement then runs in a fresh worker process per system (this same file with
--worker), measurements in the outer loop and systems in the inner loop so that the systems are
measured close together in time. It prints one table, writes bench/results/<date>-<host>.json
(not in git), bench/latest.json, the table in bench/README.md and bench/latency.png.

What each row measures is printed under the table (NOTES below); see bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SYSTEMS = ("goeryx", "pyeryx", "native")

# Equal, generous limits for both sandboxes. pyeryx's Session takes no ResourceLimits, so both
# Sessions get only execution_timeout_ms (goeryx's Session then has its default 128 MiB cap).
TIMEOUT_MS = 120_000
MEMORY_BYTES = 512 << 20

HELLO = "print(1)"
GAP_S = 0.002   # row 1, "2 ms gaps"
ASSIGN = "x = 1"
COMPUTE_FILE = os.path.join(HERE, "compute.py")   # the project's compute workload (loop, fib, str/dict)


def compute_text(src, repeat):
    """The guest/native script: load compute.py as a module, one warm-up round (discarded), then
    the best of `repeat` rounds per part, printed as JSON. The same text runs everywhere."""
    return (f"src = {src!r}\n"
            "ns = {'__name__': 'compute'}\n"
            "exec(compile(src, 'compute.py', 'exec'), ns)\n"
            "ns['run'](1)\n"
            "import json\n"
            f"print(json.dumps(ns['run']({repeat})))\n")


# =============================================================================== worker side
# Runs inside the system's own interpreter (venv-goeryx, venv-pyeryx or the bare native CPython,
# always with -I). It imports nothing beyond the stdlib until the measurement starts.

ns = time.perf_counter_ns


def pct(values, p):
    """Percentile by linear interpolation between closest ranks (numpy's default, 'type 7')."""
    s = sorted(values)
    if not s:
        return None
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(samples_ns, scale=1e6):
    v = [x / scale for x in samples_ns]
    return {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
            "min": min(v), "max": max(v), "mean": sum(v) / len(v)}


def text_of(out):
    """goeryx returns str with trailing newlines trimmed; pyeryx returns bytes as written."""
    if isinstance(out, (bytes, bytearray)):
        out = bytes(out).decode("utf-8", "replace")
    return out.rstrip("\n")


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_ns():
    return time.process_time_ns()   # CLOCK_PROCESS_CPUTIME_ID: every thread of the process


def usage():
    """getrusage of this process plus its finished children (native runs a child per run):
    user and system CPU in ms, and minor page faults."""
    import resource
    out = {"user_ms": 0.0, "sys_ms": 0.0, "minflt": 0}
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        out["user_ms"] += r.ru_utime * 1e3
        out["sys_ms"] += r.ru_stime * 1e3
        out["minflt"] += r.ru_minflt
    return out


def schedstat():
    """(ns on a CPU, ns runnable but waiting) of the calling thread, or None off Linux."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait = f.read().split()[:2]
        return int(run), int(wait)
    except (OSError, ValueError):
        return None


def cpu_share(seconds=0.25):
    """CPU time / wall time of a pure-Python spin on this thread: about 1.0 on an idle machine,
    less when other processes compete for the cores. Recorded so that runs can be compared."""
    c0, w0 = time.thread_time_ns(), ns()
    x = 0
    while ns() - w0 < seconds * 1e9:
        x += 1
    return (time.thread_time_ns() - c0) / (ns() - w0)


def load_eryx():
    import eryx
    limits = eryx.ResourceLimits(execution_timeout_ms=TIMEOUT_MS, max_memory_bytes=MEMORY_BYTES)
    return eryx, limits


def guest_version(eryx, limits):
    r = eryx.Sandbox(resource_limits=limits).execute("import platform; print(platform.python_version())")
    return text_of(r.stdout)


def w_latency(system, a):
    if system == "native":
        # No in-process sandbox: the isolation alternative is a fresh interpreter process per run.
        cmd = [sys.executable, "-I", "-c", HELLO]

        def once():
            t0 = ns()
            out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout
            t1 = ns()
            assert out == b"1\n", out
            return t1 - t0, None, None
    else:
        eryx, limits = load_eryx()

        def once():
            t0 = ns()
            sb = eryx.Sandbox(resource_limits=limits)
            t1 = ns()
            r = sb.execute(HELLO)
            t2 = ns()
            out = r.stdout
            del sb, r        # dropping the sandbox is timed apart: pyeryx does work there
            t3 = ns()
            assert text_of(out) == "1", out
            return t2 - t0, t1 - t0, t3 - t0
    for _ in range(a.warmup):
        once()
    total, ctor, full = [], [], []
    u0 = usage()
    w0 = ns()
    for _ in range(a.runs):
        t, c, f = once()
        total.append(t)
        if c is not None:
            ctor.append(c)
            full.append(f)
    wall = ns() - w0
    u = {k: (v - u0[k]) / a.runs for k, v in usage().items()}
    res = {"total_ms": summary(total), "cpu_ms_per_run": u["user_ms"] + u["sys_ms"],
           "user_ms_per_run": u["user_ms"], "sys_ms_per_run": u["sys_ms"],
           "minflt_per_run": u["minflt"], "cpu_per_wall": (u["user_ms"] + u["sys_ms"]) * a.runs * 1e6 / wall}
    # The request-handler pattern: the same runs with GAP_S of idle time before each (the
    # sleep is outside the timer); CPU per run is the process's over the loop, sleeps included.
    gap = []
    u0 = usage()
    for _ in range(a.runs):
        time.sleep(GAP_S)
        gap.append(once()[0])
    u = {k: (v - u0[k]) / a.runs for k, v in usage().items()}
    res["gap_total_ms"] = summary(gap)
    res["gap_cpu_ms_per_run"] = u["user_ms"] + u["sys_ms"]
    if ctor:
        res["ctor_ms"] = summary(ctor)
        res["with_drop_ms"] = summary(full)
        res["guest_python"] = guest_version(eryx, limits)
        res["version"] = eryx.__version__
        if hasattr(eryx, "ready_interpreters"):   # goeryx's pool of ready interpreters
            res["ready"] = eryx.ready_interpreters()
    return res


def w_session(system, a):
    if system == "native":
        g = {"__name__": "__main__"}

        def run():
            exec(compile(ASSIGN, "<user>", "exec"), g)
    else:
        eryx, _ = load_eryx()
        s = eryx.Session(execution_timeout_ms=TIMEOUT_MS)

        def run():
            s.execute(ASSIGN)
    for _ in range(a.warmup):
        run()
    samples = []
    for _ in range(a.runs):
        t0 = ns()
        run()
        samples.append(ns() - t0)
    if system != "native":
        assert text_of(s.execute("print(x)").stdout) == "1"
    return {"us": summary(samples, 1e3)}


def w_compute(system, a):
    src = open(a.compute_file).read()
    text = compute_text(src, a.repeat)
    if system == "native":
        import contextlib
        import io
        buf = io.StringIO()
        c0, t0 = cpu_ns(), ns()
        with contextlib.redirect_stdout(buf):
            exec(compile(text, "<user>", "exec"), {"__name__": "__main__"})
        wall, cpu = ns() - t0, cpu_ns() - c0
        out = buf.getvalue()
    else:
        eryx, limits = load_eryx()
        eryx.Sandbox(resource_limits=limits).execute(HELLO)   # runtime loaded before timing
        sb = eryx.Sandbox(resource_limits=limits)
        c0, t0 = cpu_ns(), ns()
        r = sb.execute(text)
        wall, cpu = ns() - t0, cpu_ns() - c0
        out = text_of(r.stdout)
    parts = json.loads(out.strip().splitlines()[-1])
    # process CPU of the whole run (interpreter start, warm-up round and the timed rounds) per round
    return {"parts_s": parts, "execute_wall_s": wall / 1e9, "cpu_s_per_round": cpu / 1e9 / (a.repeat + 1)}


def w_rss(system, a):
    import gc
    eryx, _ = load_eryx()
    keep = [eryx.Session(execution_timeout_ms=TIMEOUT_MS)]      # warm-up session, kept alive
    keep[0].execute(ASSIGN)
    gc.collect()
    time.sleep(0.5)
    before = rss_kib()
    for _ in range(a.sessions):
        s = eryx.Session(execution_timeout_ms=TIMEOUT_MS)
        s.execute(ASSIGN)
        keep.append(s)
    gc.collect()
    time.sleep(0.5)
    after = rss_kib()
    return {"rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
            "per_session_mib": (after - before) / 1024 / a.sessions, "sessions": a.sessions}


def w_threads(system, a):
    import threading
    if system == "native":
        cmd = [sys.executable, "-I", "-c", HELLO]

        def once():
            out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout
            assert out == b"1\n"
    else:
        eryx, limits = load_eryx()

        def once():
            r = eryx.Sandbox(resource_limits=limits).execute(HELLO)
            assert text_of(r.stdout) == "1"
    # warm-up, including from two threads at once
    for _ in range(5):
        once()
    ws = [threading.Thread(target=lambda: [once() for _ in range(3)]) for _ in range(2)]
    [t.start() for t in ws]
    [t.join() for t in ws]
    # The VM's speed drifts within seconds: the thread counts take turns in short windows (as
    # in bench/instant.py), so that drift does not pass for a difference in scaling.
    def window(n, seconds):
        counts = [0] * n
        errors = []
        start = threading.Barrier(n + 1)
        deadline = [0]
        sched = [None] * n

        def loop(i):
            start.wait()
            s0, w0 = schedstat(), ns()
            try:
                while ns() < deadline[0]:
                    once()
                    counts[i] += 1
            except Exception as e:   # reported, and the row is then invalid
                errors.append(repr(e))
            s1, w1 = schedstat(), ns()
            if s0 and s1:
                sched[i] = (s1[0] - s0[0], s1[1] - s0[1], w1 - w0)
        ts = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
        [t.start() for t in ts]
        deadline[0] = ns() + int(seconds * 1e9)
        c0 = cpu_ns()
        t0 = ns()
        start.wait()
        [t.join() for t in ts]
        wall = ns() - t0
        cpu = cpu_ns() - c0
        if errors:
            raise RuntimeError(f"{n} threads: {errors[0]}")
        return sum(counts), wall, cpu, [x for x in sched if x]

    acc = {n: [0, 0, 0, [0, 0, 0]] for n in a.threads}  # runs, wall, cpu, (on CPU, runnable, wall)
    rounds = max(1, a.rounds)
    for r in range(rounds):
        for n in (a.threads if r % 2 == 0 else a.threads[::-1]):
            runs, wall, cpu, sched = window(n, a.seconds / rounds)
            acc[n][:3] = [acc[n][0] + runs, acc[n][1] + wall, acc[n][2] + cpu]
            for x in sched:
                acc[n][3] = [p + q for p, q in zip(acc[n][3], x)]
    res = {}
    for n, (runs, wall, cpu, (on_cpu, runnable, twall)) in acc.items():
        res[str(n)] = {"runs": runs, "wall_s": wall / 1e9, "runs_per_s": runs / (wall / 1e9),
                       "cpu_per_wall": cpu / wall}
        if twall:
            # Where the calling threads' time went (/proc/thread-self/schedstat): on a CPU, ready
            # but waiting for one (load from elsewhere), or blocked (a lock, the GIL, a wait):
            # a scaling loss with little "blocked" is the machine, not contention.
            res[str(n)].update(on_cpu=on_cpu / twall, waiting_for_cpu=runnable / twall,
                               blocked=max(0.0, 1 - (on_cpu + runnable) / twall))
    return res


def w_factory(system, a):
    """(7) A jinja2 SandboxFactory (imports + setup_code, the same for both systems; the details
    and more rows: bench/factory.py): create_sandbox()+execute(render) p50, the run making its
    own Environment and template, and rendering the template captured by setup_code."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import _packages
    sys.path.insert(0, HERE)
    import factory as fb
    eryx, limits = load_eryx()
    tmp = tempfile.mkdtemp(prefix="eryx-bench-factory-")
    f = eryx.SandboxFactory(packages=[*_packages.wheels("jinja2"), _packages.markupsafe_tgz(tmp)],
                            imports=["jinja2"], setup_code=fb.SETUP_TEMPLATE)
    res = {}
    for key, code in (("render_ms", fb.RENDER), ("captured_ms", fb.RENDER_CAPTURED)):
        samples = []
        for i in range(a.warmup + a.runs):
            t0 = ns()
            sb = f.create_sandbox(resource_limits=limits)
            out = sb.execute(code).stdout
            del sb
            if i >= a.warmup:
                samples.append(ns() - t0)
            assert text_of(out) == fb.RENDERED, out
        res[key] = summary(samples)
    return res


WORKERS = {"latency": w_latency, "session": w_session, "compute": w_compute, "rss": w_rss,
           "threads": w_threads, "factory": w_factory}

# (4) runs as `python -I -c FIRST_SANDBOX` so that nothing but `time` is imported before `eryx`;
# the native baseline is `python -I -c 'print(1)'`. The driver times each process spawn to exit.
FIRST_SANDBOX = f"""import time
t0 = time.perf_counter_ns()
import eryx
t1 = time.perf_counter_ns()
sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(execution_timeout_ms={TIMEOUT_MS}, max_memory_bytes={MEMORY_BYTES}))
t2 = time.perf_counter_ns()
r = sb.execute({HELLO!r})
t3 = time.perf_counter_ns()
out = r.stdout.decode() if isinstance(r.stdout, bytes) else r.stdout
assert out.rstrip("\\n") == "1", out
import json
print("BENCHJSON " + json.dumps({{"import_ms": (t1 - t0) / 1e6, "ctor_ms": (t2 - t1) / 1e6,
                                 "execute_ms": (t3 - t2) / 1e6, "total_ms": (t3 - t0) / 1e6}}))
"""


def worker_main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True, choices=sorted(WORKERS))
    ap.add_argument("--system", required=True, choices=SYSTEMS)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    ap.add_argument("--compute-file", default=COMPUTE_FILE)
    a = ap.parse_args(argv)
    share = cpu_share()
    res = WORKERS[a.worker](a.system, a)
    res["cpu_share"] = [share, cpu_share()]
    sys.stdout.write("BENCHJSON " + json.dumps(res) + "\n")


# =============================================================================== driver side

NOTES = [
    ("1", "Sandbox()+execute('print(1)') in one warm process, after {warmup} warm-ups, {runs} runs; "
          "dropping the sandbox (del) is outside the main timer and shown apart. CPU per run and page faults: "
          "getrusage (all threads, background work included, plus child processes) over the timed runs / runs. "
          "native: a fresh `python -I -c 'print(1)'` process per run. '2 ms gaps': the same {runs} runs "
          "again, each after time.sleep(0.002) (outside the timer), as a request handler sees them; its CPU "
          "per run is the process's over that loop."),
    ("2", "Session.execute('x = 1') in one session, after {swarmup} warm-ups, {sruns} runs. "
          "native: exec(compile('x = 1')) in a dict."),
    ("3", "bench/compute.py (3M-iteration int loop, fib(25), str/dict work), loaded with exec; one "
          "warm-up round, then {repeat} rounds timed with time.perf_counter inside the interpreter under "
          "test (sandbox: one execute in a fresh Sandbox), in {passes} fresh processes per system; the "
          "best round per part. Process CPU per round: process CPU time of a whole execute (interpreter "
          "start and warm-up included) / (rounds + 1), the lower of the {passes} processes."),
    ("4", "a fresh `python -I -c` process doing `import eryx` + Sandbox() + first execute('print(1)'); "
          "4a/4b time that in-process from just before the import, 4c/4d time the process from spawn "
          "to exit (native: `python -I -c 'print(1)'`). Medians of {first_warm} warm-cache processes "
          "(after one discarded) and {first_cold} empty-cache ones. Empty cache: GOERYX_CACHE_DIR and "
          "TMPDIR point at new empty dirs (goeryx keeps its compiled code in GOERYX_CACHE_DIR, pyeryx "
          "its compiled code and stdlib in $TMPDIR/eryx-embedded); the kernel page cache stays warm."),
    ("5", "(VmRSS after - before) / {sessions}: {sessions} Sessions each after one execute('x = 1'), "
          "all kept alive, one warm-up Session created before 'before'."),
    ("6", "N threads each looping Sandbox()+execute('print(1)') for {seconds:g} s, in 10 windows per N "
          "that alternate with the other N (so that a drift of the machine's speed does not pass for a "
          "scaling difference); runs/s = all runs / wall. native: a fresh process per run. The shares of the "
          "calling threads' wall time spent runnable but waiting for a CPU (other load) and blocked (locks, the "
          "GIL, waits) come from /proc/thread-self/schedstat: a low 2-thread ratio with a low blocked share "
          "means a busy machine, not contention."),
    ("7", "a SandboxFactory of jinja2 3.1.4 + MarkupSafe (pure) with imports=['jinja2'] and setup_code "
          "making an Environment and a template; {factory_runs} runs of create_sandbox()+execute() after "
          "3 warm-ups: the run's own Environment().from_string().render(), then the captured template's "
          "render(). bench/factory.py has the build, load, size, memory and sympy rows."),
]


def sh_setup():
    p = subprocess.run(["bash", os.path.join(HERE, "setup.sh")], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"bench/setup.sh failed (exit {p.returncode})")
    env = {}
    for line in p.stdout.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            env[k] = v
    return env


def run_worker(py, kind, system, args, env=None, timeout=600):
    """Spawn one fresh worker; returns (result dict or None, error string or None, wall seconds)."""
    if kind == "first":
        cmd = [py, "-I", "-c", HELLO if system == "native" else FIRST_SANDBOX]
    else:
        cmd = [py, "-I", os.path.abspath(__file__), "--worker", kind, "--system", system, *args]
    t0 = time.perf_counter_ns()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, timeout=timeout, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s", timeout
    wall = (time.perf_counter_ns() - t0) / 1e9
    for line in p.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):]), None, wall
    if kind == "first" and system == "native" and p.returncode == 0 and p.stdout == "1\n":
        return {}, None, wall
    err = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return None, f"exit {p.returncode}: {err}", wall


def median(v):
    return pct(v, 50)


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(a, pys, reasons):
    """Run every measurement; returns {kind: {system: result}} and {kind: {system: error}}."""
    R = {k: {} for k in WORKERS}
    E = {}
    loads = []
    base = [s for s in SYSTEMS if pys.get(s)]
    rot = [0]

    def order():
        """The systems, rotated by one for each measurement, so that none is always first."""
        k = rot[0] % len(base)
        rot[0] += 1
        return base[k:] + base[:k]

    def one(kind, system, args, env=None, key=None):
        loads.append(loadavg())
        res, err, wall = run_worker(pys[system], kind, system, args, env=env)
        key = key or kind
        if err:
            log(f"  {key}/{system}: FAILED: {err}")
            E.setdefault(key, {})[system] = err
        else:
            log(f"  {key}/{system}: done in {wall:.1f} s")
        return res, wall

    log("(1) Sandbox()+execute latency")
    for s in order():
        R["latency"][s], _ = one("latency", s, ["--runs", str(a.runs), "--warmup", str(a.warmup)])
    log("(2) Session.execute latency")
    for s in order():
        R["session"][s], _ = one("session", s, ["--runs", str(a.session_runs), "--warmup", str(a.session_warmup)])
    log("(3) compute")
    if os.path.exists(COMPUTE_FILE):
        # a.passes fresh processes per system, interleaved; the best of all of them counts, so a
        # burst of load from elsewhere during one pass does not decide the row
        passes = {}
        for _ in range(a.passes):
            for s in order():
                res, _ = one("compute", s, ["--repeat", str(a.repeat)])
                if res:
                    passes.setdefault(s, []).append(res)
        for s, runs in passes.items():
            parts = {k: min(r["parts_s"][k] for r in runs) for k in runs[0]["parts_s"]}
            R["compute"][s] = {"parts_s": parts, "cpu_s_per_round": min(r["cpu_s_per_round"] for r in runs),
                               "passes": runs, "cpu_share": [x for r in runs for x in r["cpu_share"]]}
    else:
        reasons["compute"] = "bench/compute.py is missing"
    log("(4) first sandbox in a fresh process")
    R["first_warm"], R["first_cold"] = {}, {}
    for s in order():
        # warm: the caches the user has, primed by one discarded process
        one("first", s, [], key="first_warm")
        runs = []
        for _ in range(a.first_warm):
            res, wall = one("first", s, [], key="first_warm")
            if res is not None:
                res["process_wall_ms"] = wall * 1e3
                runs.append(res)
        if runs:
            R["first_warm"][s] = {k: median([r[k] for r in runs]) for k in runs[0]}
            R["first_warm"][s]["n"] = len(runs)
            R["first_warm"][s]["process_wall_ms_all"] = [r["process_wall_ms"] for r in runs]
        if s == "native":
            continue
        runs = []
        for _ in range(a.first_cold):
            tmp = tempfile.mkdtemp(prefix="eryx-bench-cold-")
            env = dict(os.environ, GOERYX_CACHE_DIR=os.path.join(tmp, "goeryx"), TMPDIR=os.path.join(tmp, "tmp"))
            os.makedirs(env["TMPDIR"])
            try:
                res, wall = one("first", s, [], env=env, key="first_cold")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if res is not None:
                res["process_wall_ms"] = wall * 1e3
                runs.append(res)
        if runs:
            R["first_cold"][s] = {k: median([r[k] for r in runs]) for k in runs[0]}
            R["first_cold"][s]["n"] = len(runs)
            R["first_cold"][s]["total_ms_all"] = [r["total_ms"] for r in runs]
    log("(5) RSS per idle Session")
    for s in order():
        if s != "native":
            R["rss"][s], _ = one("rss", s, ["--sessions", str(a.sessions)])
    log("(6) threads throughput")
    for s in order():
        R["threads"][s], _ = one("threads", s, ["--seconds", str(a.seconds), "--threads", "1,2"])
    log("(7) SandboxFactory: jinja2")
    for s in order():
        if s != "native":
            R["factory"][s], _ = one("factory", s, ["--runs", str(a.factory_runs), "--warmup", "3"])
    for k in R:
        R[k] = {s: v for s, v in R[k].items() if v is not None}
    return R, E, [x for x in loads if x is not None]


def build_rows(R):
    """(id, label, unit, {system: value}, lower_is_better)"""
    def get(kind, path):
        out = {}
        for s, v in R.get(kind, {}).items():
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if v is not None:
                out[s] = v
        return out

    rows = [
        ("1", "Sandbox()+execute p50", "ms", get("latency", ["total_ms", "p50"]), True),
        ("1", "Sandbox()+execute p90", "ms", get("latency", ["total_ms", "p90"]), True),
        ("1", "Sandbox()+execute p99", "ms", get("latency", ["total_ms", "p99"]), True),
        ("1", "Sandbox()+execute p50, 2 ms gaps", "ms", get("latency", ["gap_total_ms", "p50"]), True),
        ("1", "Sandbox()+execute p99, 2 ms gaps", "ms", get("latency", ["gap_total_ms", "p99"]), True),
        ("1", "  CPU per run, 2 ms gaps", "ms", get("latency", ["gap_cpu_ms_per_run"]), True),
        ("1", "  of which Sandbox() p50", "ms", get("latency", ["ctor_ms", "p50"]), True),
        ("1", "  incl. dropping the sandbox, p50", "ms", get("latency", ["with_drop_ms", "p50"]), True),
        ("1", "  CPU per run (user+sys)", "ms", get("latency", ["cpu_ms_per_run"]), True),
        ("1", "  of which kernel (sys)", "ms", get("latency", ["sys_ms_per_run"]), True),
        ("1", "  minor page faults per run", "count", get("latency", ["minflt_per_run"]), True),
        ("2", "Session.execute('x = 1') p50", "us", get("session", ["us", "p50"]), True),
        ("2", "Session.execute('x = 1') p99", "us", get("session", ["us", "p99"]), True),
    ]
    for part in ("loop", "fib", "strdict", "total"):
        rows.append(("3", f"compute {part}", "s", get("compute", ["parts_s", part]), True))
    rows.append(("3", "  process CPU per round", "s", get("compute", ["cpu_s_per_round"]), True))
    rows += [
        ("4a", "first sandbox, warm cache", "ms", get("first_warm", ["total_ms"]), True),
        ("4a", "  of which import eryx", "ms", get("first_warm", ["import_ms"]), True),
        ("4b", "first sandbox, empty cache", "ms", get("first_cold", ["total_ms"]), True),
        ("4c", "fresh process wall, warm cache", "ms", get("first_warm", ["process_wall_ms"]), True),
        ("4d", "fresh process wall, empty cache", "ms", get("first_cold", ["process_wall_ms"]), True),
        ("5", "RSS per idle Session", "MiB", get("rss", ["per_session_mib"]), True),
        ("6", "throughput, 1 thread", "runs/s", get("threads", ["1", "runs_per_s"]), False),
        ("6", "throughput, 2 threads", "runs/s", get("threads", ["2", "runs_per_s"]), False),
    ]
    scal = {}
    for s, v in R.get("threads", {}).items():
        if v.get("1", {}).get("runs_per_s") and v.get("2"):
            scal[s] = v["2"]["runs_per_s"] / v["1"]["runs_per_s"]
    rows.append(("6", "  2-thread / 1-thread", "x", scal, False))
    rows.append(("6", "  2 threads: share of time waiting for a CPU", "x",
                 get("threads", ["2", "waiting_for_cpu"]), True))
    rows.append(("6", "  2 threads: share of time blocked", "x", get("threads", ["2", "blocked"]), True))
    rows += [
        ("7", "jinja2 factory: create_sandbox()+execute(render) p50", "ms",
         get("factory", ["render_ms", "p50"]), True),
        ("7", "  rendering a template captured by setup_code, p50", "ms",
         get("factory", ["captured_ms", "p50"]), True),
    ]
    return rows


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(a, b):
    if a is None or b is None or not b:
        return "-"
    return f"{a / b:.2f}"


def render_table(rows):
    head = ["#", "measurement", "unit", "goeryx", "pyeryx", "native", "go/py", "go/native"]
    body = []
    for rid, label, unit, vals, lower in rows:
        g, p, n = vals.get("goeryx"), vals.get("pyeryx"), vals.get("native")
        body.append([rid, label + ("" if lower else " (higher=better)"), unit, fmt(g), fmt(p), fmt(n), ratio(g, p), ratio(g, n)])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    right = {3, 4, 5, 6, 7}

    def line(r):
        return "| " + " | ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                                 for i, c in enumerate(r)) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), sep] + [line(r) for r in body])


def notes_text(a):
    vals = dict(runs=a.runs, warmup=a.warmup, sruns=a.session_runs, swarmup=a.session_warmup,
                repeat=a.repeat, passes=a.passes, first_warm=a.first_warm, first_cold=a.first_cold,
                sessions=a.sessions, seconds=a.seconds, factory_runs=getattr(a, "factory_runs", "?"))
    out = [f"({k}) {v.format(**vals)}" for k, v in NOTES]
    out.append("Ratios are goeryx ÷ other: above 1 means goeryx takes longer / uses more, except on "
               "rows marked higher=better (throughput) where above 1 means goeryx is faster. "
               "Percentiles: linear interpolation between closest ranks. Timers: time.perf_counter_ns. "
               f"Both sandboxes: ResourceLimits(execution_timeout_ms={TIMEOUT_MS}, "
               f"max_memory_bytes={MEMORY_BYTES >> 20} MiB); Sessions: execution_timeout_ms={TIMEOUT_MS} "
               "only (pyeryx's Session takes no ResourceLimits).")
    return out


def update_readme(table, header, notes):
    path = os.path.join(HERE, "README.md")
    begin, end = "<!-- bench:latest:begin -->", "<!-- bench:latest:end -->"
    try:
        text = open(path).read()
    except OSError:
        return False
    if begin not in text or end not in text:
        return False
    block = (f"{begin}\n{header}\n\n{table}\n\n" + "\n".join(f"- {n}" for n in notes) +
             f"\n\n![latency plot](latency.png)\n{end}")
    pre, rest = text.split(begin, 1)
    post = rest.split(end, 1)[1]
    with open(path, "w") as f:
        f.write(pre + block + post)
    return True


def driver_main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions: a smoke test, not a benchmark")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of goeryx,pyeryx,native")
    ap.add_argument("--no-write", action="store_true",
                    help="print only: no results/*.json, latest.json, README table or plot")
    ap.add_argument("--render", metavar="REPORT.json",
                    help="measure nothing: publish a saved report (bench/latest.json, README table, plot)")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as f:
            report = json.load(f)
        print_report(report)
        publish(report, sh_setup(), write_history=False)
        return
    a.runs, a.warmup = (30, 5) if a.quick else (200, 20)
    a.session_runs, a.session_warmup = (100, 10) if a.quick else (1000, 100)
    a.repeat, a.passes = (1, 1) if a.quick else (3, 2)
    a.first_warm, a.first_cold = (1, 1) if a.quick else (5, 3)
    a.sessions = 10 if a.quick else 50
    a.seconds = 1.0 if a.quick else 5.0
    a.factory_runs = 5 if a.quick else 30
    wanted = set(a.systems.split(","))

    t_start = time.perf_counter()
    log("setup (bench/setup.sh)")
    env = sh_setup()
    reasons = {}
    pys = {"goeryx": env.get("GOERYX_PY"), "pyeryx": env.get("PYERYX_PY"), "native": env.get("NATIVE")}
    if env.get("PYERYX_ERROR"):
        reasons["pyeryx"] = env["PYERYX_ERROR"]
        pys["pyeryx"] = None
        print(f"NOTE: pyeryx is not available, measuring the others only: {env['PYERYX_ERROR']}", file=sys.stderr)
    for s in SYSTEMS:
        if s not in wanted:
            pys[s] = None
    R, E, loads = measure(a, pys, reasons)
    elapsed = time.perf_counter() - t_start

    now = datetime.datetime.now()
    host = socket.gethostname()
    ncpu = os.cpu_count()
    wheel = env.get("GOERYX_WHEEL", "")
    versions = {
        "goeryx": R["latency"].get("goeryx", {}).get("version"),
        "goeryx_guest_python": R["latency"].get("goeryx", {}).get("guest_python"),
        "goeryx_wheel": os.path.basename(wheel),
        "goeryx_wheel_sha256": _sha256(wheel) if wheel else None,
        "pyeryx": R["latency"].get("pyeryx", {}).get("version"),
        "pyeryx_guest_python": R["latency"].get("pyeryx", {}).get("guest_python"),
        "native": subprocess.run([env["NATIVE"], "-c", "import sys; print(sys.version.split()[0])"],
                                 stdout=subprocess.PIPE, text=True).stdout.strip(),
        "compute_py_sha256": _sha256(COMPUTE_FILE) if os.path.exists(COMPUTE_FILE) else None,
    }
    rows = build_rows(R)
    max_load = max(loads) if loads else None
    shares = sorted(x for kind in R.values() for v in kind.values() if isinstance(v, dict)
                    for x in v.get("cpu_share", []))
    share = (median(shares), shares[0]) if shares else None
    sysdesc = []
    for name in ("goeryx", "pyeryx"):
        if versions[name]:
            sysdesc.append(f"{name} {versions[name]} (guest Python {versions[name + '_guest_python']})")
    header = (f"{now:%Y-%m-%d %H:%M}, host `{host}`, {ncpu} cores ({cpu_model()}), "
              + ", ".join(sysdesc) + f", host/native CPython {versions['native']}; run took {elapsed:.0f} s"
              + (" (--quick: not a benchmark)" if a.quick else "")
              + (f"; load average up to {max_load:.1f} during the run" if max_load is not None else "")
              + (f"; CPU share of one thread: median {share[0]:.2f}, min {share[1]:.2f} (1.00 = idle machine)"
                 if share else ""))
    problems = []
    for kind, errs in E.items():
        for s, e in errs.items():
            problems.append(f"{kind}/{s} failed: {e}")
    for k, v in reasons.items():
        problems.append(f"{k}: {v}")
    if (share and share[0] < 0.9) or (max_load is not None and ncpu and max_load > 0.5 * ncpu):
        problems.append(f"the machine was busy (1-minute load average up to {max_load:.1f} on {ncpu} cores; "
                        f"a spinning thread got {share[0] if share else float('nan'):.0%} of a core, median): "
                        "other processes competed for the CPU, so wall-clock numbers are inflated and noisy; "
                        "the 'process CPU' rows are less affected")

    report = {"date": now.isoformat(timespec="seconds"), "host": host, "cpus": ncpu, "cpu": cpu_model(),
              "quick": a.quick, "elapsed_s": elapsed, "load_avg_1min": loads,
              "cpu_share": {"median": share[0], "min": share[1]} if share else None, "versions": versions,
              "limits": {"execution_timeout_ms": TIMEOUT_MS, "max_memory_bytes": MEMORY_BYTES},
              "params": {k: getattr(a, k) for k in ("runs", "warmup", "session_runs", "session_warmup",
                                                    "repeat", "passes", "first_warm", "first_cold", "sessions", "seconds",
                                                    "factory_runs")},
              "header": header, "results": R, "errors": E, "unavailable": reasons, "warnings": problems,
              "table": [{"id": r[0], "measurement": r[1].strip(), "unit": r[2], "lower_is_better": r[4], **r[3]}
                        for r in rows],
              "notes": notes_text(a)}
    print_report(report)
    if not a.no_write:
        publish(report, env, write_history=True)


def print_report(report):
    print()
    print(report["header"])
    print()
    print(render_table(build_rows(report["results"])))
    print()
    for n in report["notes"]:
        print(n)
    for p in report["warnings"]:
        print("WARNING: " + p)


def publish(report, env, write_history):
    """results/<date>-<host>.json (history, not in git), latest.json, and unless --quick the README
    table and the plot."""
    paths = [os.path.join(HERE, "latest.json")]
    if write_history:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        date = datetime.datetime.fromisoformat(report["date"])
        paths.insert(0, os.path.join(HERE, "results", f"{date:%Y-%m-%dT%H%M%S}-{report['host']}.json"))
    for path in paths:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    print("\nwrote " + " and ".join(os.path.relpath(p, REPO) for p in paths))
    if report["quick"]:
        print("--quick: bench/README.md and bench/latency.png left alone")
        return
    table = render_table(build_rows(report["results"]))
    if update_readme(table, report["header"], report["notes"] + [f"**Warning:** {p}" for p in report["warnings"]]):
        print("updated the table in bench/README.md")
    if env.get("PLOT_ERROR"):
        print(f"WARNING: no plot: {env['PLOT_ERROR']}")
        return
    p = subprocess.run([env["PLOT_PY"], os.path.join(HERE, "plot.py"), os.path.join(HERE, "latest.json"),
                        os.path.join(HERE, "latency.png")])
    print("wrote bench/latency.png" if p.returncode == 0 else "WARNING: bench/plot.py failed")


def _sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker_main(sys.argv[1:])
    else:
        driver_main()
