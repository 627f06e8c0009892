#!/usr/bin/env python3
"""Benchmark for the issue "Instant sandboxes": start-up latency, timeout firing latency,
memory and throughput of goeryx, through the public `eryx` API.

    .venv/bin/python bench/instant.py                   # about 70 s
    .venv/bin/python bench/instant.py --json out.json   # also write the full report as JSON
    .venv/bin/python bench/instant.py --quick           # smoke test (few repetitions)
    .venv/bin/python bench/instant.py --only timeouts,throughput

Every section runs in a fresh worker process (this file with --worker, the same interpreter,
`-I`, cwd a temporary directory) so that sections do not disturb each other's memory or warm
state. Each worker records the CPU other processes used meanwhile (/proc/stat busy time minus its
own; above 0.25 cores the section counts as disturbed) and the share of a core a spinning thread
got before and after its measurement (1.00 on an idle machine); the driver records the 1-minute
load average around every worker. Wall-clock numbers taken under load are inflated; the CPU-time
rows are less affected. Baselines (a fresh native `python -I -c 'print(1)'` process, a native
`exec`) are measured in the same run; the ratio column is value / baseline. See bench/README.md.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ns = time.perf_counter_ns

HELLO = "print(1)"
ASSIGN = "x = 1"
# Other processes using more than this many cores during a measurement make it "disturbed".
BUSY_OTHERS = 0.25
TIMEOUT_MS = 300          # the execution timeout of the timeout-latency rows
SLEEP_S = 10              # what the guests wait for, far beyond the timeout

# What a timed-out guest does (the timeout rows). Each code starts with print("S"): the host
# timestamps that first output chunk (on_stdout), which is within a fraction of a millisecond
# after the run's start (the deadline's origin); imports come after it, inside the 300 ms.
TIMEOUT_KINDS = [
    # key, label, code after the marker, busy (keeps a core busy), target ms
    ("loop", "Python loop `while True: pass`", "while True: pass", True, 100),
    ("sleep", "`time.sleep(10)`", "import time\ntime.sleep(10)", False, 100),
    ("callback", "host callback sleeping 10 s (sync fn)", "await slow()", False, 100),
    ("asyncio", "`await asyncio.sleep(10)`", "import asyncio\nawait asyncio.sleep(10)", False, 100),
    ("cloop", "C-level loop `sum(range(10**12))`", "sum(range(10**12))", True, 1000),
    # not in the list: an async host function awaiting asyncio.sleep(10)
    ("acallback", "host callback sleeping 10 s (async fn)", "await aslow()", False, 100),
]



# ======================================================================= helpers (both sides)

def pct(values, p):
    """Percentile by linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    if not s:
        return None
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(v):
    return pct(v, 50)


def summary(samples_ns, scale=1e6):
    v = [x / scale for x in samples_ns]
    return {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
            "min": min(v), "max": max(v), "mean": sum(v) / len(v)}


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class OtherCPU:
    """CPU used by other processes over a window: the machine's busy time (/proc/stat: user,
    nice, system, irq, softirq, steal) minus this process's own CPU time (all its threads), in
    cores (1.0 = one core fully used by others). It tells a measurement disturbed by other
    processes from one that merely loaded the machine itself, which the load average cannot."""

    def __init__(self):
        self.t0, self.busy0, self.own0 = ns(), self.busy(), self.own()

    @staticmethod
    def own():
        import resource
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))

    @staticmethod
    def busy():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")

    def cores(self):
        b = self.busy()
        if b is None or self.busy0 is None:
            return None
        wall = (ns() - self.t0) / 1e9
        return max(0.0, (b - self.busy0 - (self.own() - self.own0)) / wall)


def log(msg):
    print(f"[instant {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ============================================================================== worker side

def steal_seconds():
    """CPU time the hypervisor gave to others while this VM's vCPUs wanted to run (/proc/stat
    steal), in seconds summed over the vCPUs; None where unknown."""
    try:
        with open("/proc/stat") as f:
            v = f.readline().split()
        return int(v[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_share(seconds=0.25):
    """CPU time / wall time of a pure-Python spin on this thread (about 1.0 when idle)."""
    c0, w0 = time.thread_time_ns(), ns()
    x = 0
    while ns() - w0 < seconds * 1e9:
        x += 1
    return (time.thread_time_ns() - c0) / (ns() - w0)


def memory_kib():
    """VmRSS (and its parts) from /proc/self/status; Rss, Pss, ... from smaps_rollup.

    VmRSS counts a page once per mapping: every linear memory maps the interpreter image
    copy-on-write from one memfd, so pages shared by several interpreters are counted several
    times. Pss divides each page by the number of its mappings: the memory actually used."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Private_Clean",
                         "Private_Dirty", "Shared_Clean", "Shared_Dirty"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def settle():
    import gc
    gc.collect()
    time.sleep(0.3)


def w_latency(eryx, a):
    """Sandbox()+execute('print(1)') in a warm process; a fresh native process as baseline."""
    def once():
        r = eryx.Sandbox().execute(HELLO)
        assert r.stdout == "1", r.stdout
    for _ in range(a.warmup):
        once()
    samples = []
    c0 = time.process_time_ns()
    t0 = ns()
    for _ in range(a.runs):
        t = ns()
        once()
        samples.append(ns() - t)
    wall = ns() - t0
    cpu = time.process_time_ns() - c0
    native = []
    cmd = [sys.executable, "-I", "-c", HELLO]
    for i in range(a.native_runs + 2):
        t = ns()
        out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout
        if i >= 2:                                  # 2 warm-ups
            native.append(ns() - t)
        assert out == b"1\n"
    return {"sandbox_execute_ms": summary(samples), "cpu_per_run_ms": cpu / a.runs / 1e6,
            "cpu_per_wall": cpu / wall, "native_process_ms": summary(native)}


def w_session(eryx, a):
    """Session() construction; Session.execute('x = 1'); native exec as the floor."""
    for _ in range(a.warmup):
        eryx.Session().close()
    ctor = []
    for _ in range(a.session_new):
        t = ns()
        s = eryx.Session()
        ctor.append(ns() - t)
        s.close()                                   # not timed
    s = eryx.Session()
    for _ in range(100):
        s.execute(ASSIGN)
    ex = []
    for _ in range(a.session_runs):
        t = ns()
        s.execute(ASSIGN)
        ex.append(ns() - t)
    assert s.execute("print(x)").stdout == "1"
    s.close()
    code = compile(ASSIGN, "<native>", "exec")
    native = []
    g = {}
    for i in range(a.session_runs + 100):
        t = ns()
        exec(code, g)
        if i >= 100:
            native.append(ns() - t)
    return {"session_new_ms": summary(ctor), "session_execute_us": summary(ex, 1e3),
            "native_exec_us": summary(native, 1e3)}


def w_timeouts(eryx, a):
    """Time from the deadline to the exception, alone and with 3 guests at once."""
    limits = eryx.ResourceLimits(execution_timeout_ms=TIMEOUT_MS, callback_timeout_ms=600_000)
    neighbour_limits = eryx.ResourceLimits(execution_timeout_ms=TIMEOUT_MS + 700)
    releases = []                                   # events that end the sync callbacks' sleeps
    lock = threading.Lock()

    def slow():
        ev = threading.Event()
        with lock:
            releases.append(ev)
        ev.wait(SLEEP_S)                            # a 10 s sleep, cut short after the trial

    async def aslow():
        import asyncio
        await asyncio.sleep(SLEEP_S)

    callbacks = [{"name": "slow", "fn": slow}, {"name": "aslow", "fn": aslow}]

    def one(code, out, barrier=None, lim=limits):
        """Runs code (which must time out); appends a sample dict to out."""
        mark = []
        sb = eryx.Sandbox(resource_limits=lim, callbacks=callbacks,
                          on_stdout=lambda chunk: mark or mark.append(ns()))
        if barrier is not None:
            barrier.wait()
        t_call = ns()
        err = None
        try:
            sb.execute('print("S")\n' + code)
            err = "no exception"
        except eryx.TimeoutError:
            pass
        except Exception as e:                      # reported; the row then fails
            err = f"{type(e).__name__}: {e}"
        t_exc = ns()
        sb.close()
        deadline_ms = TIMEOUT_MS
        out.append({"from_output_ms": (t_exc - mark[0]) / 1e6 - deadline_ms if mark else None,
                    "from_call_ms": (t_exc - t_call) / 1e6 - deadline_ms, "error": err})

    def release():
        with lock:
            for ev in releases:
                ev.set()
            releases.clear()

    res = {}
    one("pass\nwhile True: pass", [])               # warm-up
    for key, label, code, busy, target in TIMEOUT_KINDS:
        alone = []
        for _ in range(a.timeout_trials):
            one(code, alone)
            release()
        conc = []
        for _ in range(a.timeout_conc_trials):
            # three guests of this kind; a waiting kind gets two busy neighbours (with a longer
            # timeout) so that more guests are busy than there are cores when its deadline comes
            n_neigh = 0 if busy else 2
            barrier = threading.Barrier(3 + n_neigh)
            sink = []
            ts = [threading.Thread(target=one, args=(code, conc, barrier)) for _ in range(3)]
            ts += [threading.Thread(target=one, args=("while True: pass", sink, barrier, neighbour_limits))
                   for _ in range(n_neigh)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            release()
        res[key] = {"label": label, "busy": busy, "target_ms": target, "alone": alone, "concurrent": conc}
    return res


def w_session_state(eryx, a):
    """A Session keeps its state after a cooperative interrupt (and loses it after a hard stop)."""
    out = {}
    s = eryx.Session(execution_timeout_ms=TIMEOUT_MS)
    s.execute("x = 1\ny = []")
    lost = None
    try:
        s.execute("x = 2\ny.append(1)\ntry:\n    while True: pass\nfinally:\n    z = 3")
        kind = "no exception"
    except eryx.TimeoutError as e:
        kind, lost = "TimeoutError", e.state_lost
    after = s.execute("print(x, y, z)").stdout
    out["cooperative"] = {"exception": kind, "state_lost": lost, "after": after,
                          "execution_count": s.execution_count,
                          "kept": kind == "TimeoutError" and lost is False and after == "2 [1] 3"
                          and s.execution_count == 3}
    try:
        s.execute("import time\nw = 5\ntime.sleep(10)")
        kind = "no exception"
    except eryx.TimeoutError as e:
        kind, lost = "TimeoutError", e.state_lost
    after = s.execute("print(x, w)").stdout
    out["sleep"] = {"exception": kind, "state_lost": lost, "after": after,
                    "kept": kind == "TimeoutError" and lost is False and after == "2 5"}
    try:
        s.execute("sum(range(10**12))")
        kind = "no exception"
    except eryx.TimeoutError as e:
        kind, lost = "TimeoutError", e.state_lost
    r = s.execute("print('x' in globals())").stdout
    out["hard_stop"] = {"exception": kind, "state_lost": lost, "x_defined_after": r,
                        "execution_count_after": s.execution_count}
    s.close()
    return out


def w_memory(eryx, a):
    """RSS/PSS over many sequential Sandbox()+execute('print(1)')."""
    for _ in range(a.warmup):
        eryx.Sandbox().execute(HELLO)
    settle()
    points = [{"runs": 0, **memory_kib()}]
    marks = sorted({m for m in (1000, 2000, 5000, a.mem_runs) if m <= a.mem_runs})
    t0 = ns()
    c0 = time.process_time_ns()
    done = 0
    for m in marks:
        while done < m:
            r = eryx.Sandbox().execute(HELLO)
            assert r.stdout == "1"
            done += 1
        points.append({"runs": done, "t_s": (ns() - t0) / 1e9, **memory_kib()})
    wall = ns() - t0
    cpu = time.process_time_ns() - c0
    settle()
    points.append({"runs": done, "settled": True, **memory_kib()})
    return {"points": points, "runs": done, "wall_s": wall / 1e9, "cpu_per_run_ms": cpu / done / 1e6}


def w_sessions_rss(eryx, a):
    """Memory per idle Session: 50 Sessions, each after one execute, all kept alive."""
    keep = [eryx.Session()]
    keep[0].execute(ASSIGN)
    settle()
    before = memory_kib()
    for _ in range(a.sessions):
        s = eryx.Session()
        s.execute(ASSIGN)
        keep.append(s)
    settle()
    after = memory_kib()
    per = {k: (after[k] - before[k]) / 1024 / a.sessions for k in after if k in before}
    for s in keep:
        s.close()
    return {"sessions": a.sessions, "before_kib": before, "after_kib": after, "per_session_mib": per}


def w_throughput(eryx, a):
    """N threads (N = 1, 2) each looping Sandbox()+execute('print(1)').

    The speed of a shared VM drifts by tens of percent within seconds, which a 5 s run of one
    thread followed by a 5 s run of two would take for a difference in scaling. So the two are
    interleaved: a.rounds windows of a.seconds / a.rounds per N, the order alternating every
    round; each N's figures sum its windows, and every round also gives its own 2/1 ratio."""
    def once():
        r = eryx.Sandbox().execute(HELLO)
        assert r.stdout == "1"
    for _ in range(a.warmup):
        once()
    ws = [threading.Thread(target=lambda: [once() for _ in range(a.warmup)]) for _ in range(2)]
    [t.start() for t in ws]
    [t.join() for t in ws]

    def window(n, seconds):
        counts = [0] * n
        errors = []
        start = threading.Barrier(n + 1)
        deadline = [0]

        def loop(i):
            start.wait()
            try:
                while ns() < deadline[0]:
                    once()
                    counts[i] += 1
            except Exception as e:
                errors.append(repr(e))
        ts = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
        [t.start() for t in ts]
        others = OtherCPU()
        steal0 = steal_seconds()
        deadline[0] = ns() + int(seconds * 1e9)
        c0 = time.process_time_ns()
        t0 = ns()
        start.wait()
        [t.join() for t in ts]
        wall = ns() - t0
        cpu = time.process_time_ns() - c0
        steal1 = steal_seconds()
        if errors:
            raise RuntimeError(f"{n} threads: {errors[0]}")
        oc = others.cores()
        steal = None if steal0 is None or steal1 is None else (steal1 - steal0) * 1e9
        return counts, wall, cpu, None if oc is None else oc * wall, steal

    rounds = max(1, a.rounds)
    acc = {n: {"counts": [0] * n, "wall": 0, "cpu": 0, "others": 0.0, "steal": 0.0,
               "load_before": loadavg()} for n in (1, 2)}
    ratios = []
    for r in range(rounds):
        speed = {}
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):
            counts, wall, cpu, others, steal = window(n, a.seconds / rounds)
            x = acc[n]
            x["steal"] = None if steal is None or x["steal"] is None else x["steal"] + steal
            x["counts"] = [c + d for c, d in zip(x["counts"], counts)]
            x["wall"] += wall
            x["cpu"] += cpu
            x["others"] = None if others is None or x["others"] is None else x["others"] + others
            speed[n] = sum(counts) / wall
        ratios.append(speed[2] / speed[1])
    res = {}
    for n, x in acc.items():
        runs = sum(x["counts"])
        res[str(n)] = {"runs": runs, "per_thread": x["counts"], "wall_s": x["wall"] / 1e9,
                       "runs_per_s": runs / (x["wall"] / 1e9), "cpu_per_wall": x["cpu"] / x["wall"],
                       "cpu_per_run_ms": x["cpu"] / runs / 1e6,
                       "others_cores": None if x["others"] is None else x["others"] / x["wall"],
                       "steal_cores": None if x["steal"] is None else x["steal"] / x["wall"],
                       "load_before": x["load_before"], "load_after": loadavg()}
    res["round_ratios"] = ratios
    return res


WORKERS = {"latency": w_latency, "session": w_session, "timeouts": w_timeouts,
           "session_state": w_session_state, "memory": w_memory, "sessions_rss": w_sessions_rss,
           "throughput": w_throughput}

# The first sandbox of a process: `python -I -c FIRST`, timed inside the child from before the
# import (only `time` is imported earlier).
FIRST = f"""import time
t0 = time.perf_counter_ns()
import eryx
t1 = time.perf_counter_ns()
r = eryx.Sandbox().execute({HELLO!r})
t2 = time.perf_counter_ns()
assert r.stdout == "1", r.stdout
import json
print("BENCHJSON " + json.dumps({{"import_ms": (t1 - t0) / 1e6, "first_execute_ms": (t2 - t1) / 1e6,
                                 "total_ms": (t2 - t0) / 1e6}}))
"""


def add_args(ap):
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--native-runs", type=int, default=30)
    ap.add_argument("--session-new", type=int, default=200)
    ap.add_argument("--session-runs", type=int, default=2000)
    ap.add_argument("--timeout-trials", type=int, default=5)
    ap.add_argument("--timeout-conc-trials", type=int, default=3)
    ap.add_argument("--mem-runs", type=int, default=10_000)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--first-warm", type=int, default=7)


def worker_main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True, choices=sorted(WORKERS))
    add_args(ap)
    a = ap.parse_args(argv)
    share0 = cpu_share()
    load0 = loadavg()
    import eryx
    t = ns()
    others = OtherCPU()
    res = WORKERS[a.worker](eryx, a)
    res["others_cores"] = others.cores()
    res["worker_wall_s"] = (ns() - t) / 1e9
    res["cpu_share"] = [share0, cpu_share()]
    res["load_in_worker"] = [load0, loadavg()]
    print("BENCHJSON " + json.dumps(res), flush=True)


# ============================================================================== driver side

def run_child(py, args, env=None, timeout=1200):
    """Runs a child in a temporary cwd; returns (parsed BENCHJSON, stderr, wall_ms)."""
    with tempfile.TemporaryDirectory(prefix="goeryx-instant-") as cwd:
        t = ns()
        p = subprocess.run([py, "-I", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        wall = (ns() - t) / 1e6
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("BENCHJSON "):
            if p.returncode != 0:
                break
            return json.loads(line[len("BENCHJSON "):]), p.stderr, wall
    tail = "\n".join((p.stderr.strip().splitlines() or ["no output"])[-15:])
    raise RuntimeError(f"{' '.join(args[:3])}: exit {p.returncode}\n{tail}")


def first_sandbox(py, a):
    """First Sandbox in a new process: median of N with the user's (warm) cache, one with an
    empty cache; and a native `python -I -c 'print(1)'` process as the baseline."""
    warm, warm_wall = [], []
    run_child(py, ["-c", FIRST])                    # primes the page cache; discarded
    for _ in range(a.first_warm):
        r, _, wall = run_child(py, ["-c", FIRST])
        warm.append(r)
        warm_wall.append(wall)
    native = []
    for i in range(a.first_warm + 1):
        t = ns()
        subprocess.run([py, "-I", "-c", HELLO], stdout=subprocess.PIPE, check=True)
        if i:
            native.append((ns() - t) / 1e6)
    cache = tempfile.mkdtemp(prefix="goeryx-instant-cache-")
    try:
        env = dict(os.environ, GOERYX_CACHE_DIR=cache)
        cold, stderr, cold_wall = run_child(py, ["-c", FIRST], env=env)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cache) for f in fs)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    compiled_note = "compiled the guest runtime" in stderr
    return {"warm": warm, "warm_total_ms": median([r["total_ms"] for r in warm]),
            "warm_import_ms": median([r["import_ms"] for r in warm]),
            "warm_process_wall_ms": median(warm_wall),
            "empty": cold, "empty_process_wall_ms": cold_wall, "empty_stderr": stderr.strip().splitlines(),
            "empty_cache_bytes": size,
            "empty_stderr_says_compiled": compiled_note,
            "empty_check_ok": cold["total_ms"] <= 1000 or compiled_note,
            "native_process_ms": median(native),
            "cache_dir": os.environ.get("GOERYX_CACHE_DIR") or "default"}


SECTIONS = ["latency", "session", "first", "timeouts", "session_state", "memory", "sessions_rss",
            "throughput"]


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if unit == "count" or (isinstance(v, int) and not isinstance(v, bool)):
        return f"{v:,}"
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


def build_rows(R, ncpu):
    """(section, measurement, value, unit, baseline, ratio, target, ok) rows."""
    rows = []

    def row(sec, name, value, unit, base=None, target=None, ok=None, ratio=None, others=None):
        if ratio is None and base not in (None, 0) and value is not None:
            ratio = value / base
        res = R.get(sec) or {}
        rows.append({"section": sec, "measurement": name, "value": value, "unit": unit,
                     "baseline": base, "ratio": ratio, "target": target, "ok": ok,
                     "load": res.get("_load_before"),
                     "others": others if others is not None else res.get("others_cores")})

    if "latency" in R:
        L = R["latency"]
        s, nat = L["sandbox_execute_ms"], L["native_process_ms"]["p50"]
        row("latency", f"Sandbox()+execute p50 (n={s['n']})", s["p50"], "ms", nat, "<= 2 (DESIGN-NOTES)",
            s["p50"] <= 2)
        row("latency", "Sandbox()+execute p90", s["p90"], "ms", nat)
        row("latency", "Sandbox()+execute p99", s["p99"], "ms", nat)
        row("latency", "  CPU per run (process, all threads)", L["cpu_per_run_ms"], "ms")
    if "session" in R:
        S = R["session"]
        row("session", f"new Session() p50 (n={S['session_new_ms']['n']})", S["session_new_ms"]["p50"], "ms",
            (R.get("latency") or {}).get("native_process_ms", {}).get("p50"))
        e = S["session_execute_us"]
        row("session", f"Session.execute('x = 1') p50 (n={e['n']})", e["p50"], "us", S["native_exec_us"]["p50"])
        row("session", "Session.execute('x = 1') p99", e["p99"], "us", S["native_exec_us"]["p99"])
    if "first" in R:
        F = R["first"]
        n = len(F["warm"])
        row("first", f"first Sandbox, warm cache (median of {n})", F["warm_total_ms"], "ms",
            F["native_process_ms"], "<= 150 (coldstart.sh)", F["warm_total_ms"] <= 150)
        row("first", "  of which import eryx", F["warm_import_ms"], "ms")
        row("first", "  process wall, spawn to exit", F["warm_process_wall_ms"], "ms", F["native_process_ms"])
        row("first", "first Sandbox, empty cache (1 run)", F["empty"]["total_ms"], "ms", F["native_process_ms"],
            "stderr says compiled (if > 1 s)", F["empty_check_ok"])
    if "timeouts" in R:
        T = R["timeouts"]
        for key, label, _, busy, target in TIMEOUT_KINDS:
            if key not in T:
                continue
            for mode, tag in (("alone", "alone"), ("concurrent", "3 at once" + ("" if busy else " +2 busy"))):
                samples = T[key][mode]
                errs = [x["error"] for x in samples if x["error"]]
                lat = [x["from_output_ms"] for x in samples if x["from_output_ms"] is not None]
                worst = max(lat) if lat else None
                ok = (not errs) and worst is not None and worst <= target
                row("timeouts", f"timeout {label}, {tag}: median (n={len(samples)})", median(lat) if lat else None,
                    "ms")
                row("timeouts", f"  max" + (f" [{errs[0]}]" if errs else ""), worst, "ms",
                    target=f"<= {target}", ok=ok)
    if "session_state" in R:
        st = R["session_state"]
        row("session_state", "Session keeps state after cooperative interrupt (loop)",
            "yes" if st["cooperative"]["kept"] else "no", "", target="yes", ok=st["cooperative"]["kept"])
        row("session_state", "Session keeps state after cooperative interrupt (sleep)",
            "yes" if st["sleep"]["kept"] else "no", "", target="yes", ok=st["sleep"]["kept"])
        h = st["hard_stop"]
        row("session_state", "  after a hard stop (C loop): state_lost", str(h["state_lost"]), "")
    if "memory" in R:
        M = R["memory"]
        pts = [p for p in M["points"] if not p.get("settled")]
        start, k1, end = pts[0], next((p for p in pts if p["runs"] == 1000), None), pts[-1]
        for p, tag in ((start, "at start (after warm-up)"), (k1, "after 1,000"), (end, f"after {end['runs']:,}")):
            if p is None or (p is end and p is k1):
                continue
            row("memory", f"Sandbox runs: VmRSS {tag}", p["VmRSS"] / 1024, "MiB", start["VmRSS"] / 1024)
            if "Pss" in p:
                row("memory", f"Sandbox runs: PSS {tag}", p["Pss"] / 1024, "MiB", start["Pss"] / 1024)
        row("memory", f"  CPU per run over the {M['runs']:,}", M["cpu_per_run_ms"], "ms")
    if "sessions_rss" in R:
        P = R["sessions_rss"]
        per = P["per_session_mib"]
        row("sessions_rss", f"VmRSS per idle Session ({P['sessions']})", per.get("VmRSS"), "MiB")
        row("sessions_rss", f"PSS per idle Session ({P['sessions']})", per.get("Pss"), "MiB")
    if "throughput" in R:
        X = R["throughput"]
        one, two = X["1"]["runs_per_s"], X["2"]["runs_per_s"]
        o1, o2 = X["1"]["others_cores"], X["2"]["others_cores"]
        disturbed = max(o1 or 0, o2 or 0) > BUSY_OTHERS
        row("throughput", "throughput, 1 thread", one, "runs/s", others=o1)
        row("throughput", "throughput, 2 threads", two, "runs/s", one, others=o2)
        row("throughput", "  2 threads / 1 thread" + (" (machine busy: inconclusive)" if disturbed else ""),
            two / one, "x", target=f">= 1.8 ({ncpu} cores)", ok=None if disturbed else two / one >= 1.8,
            others=max(o1 or 0, o2 or 0))
        if X.get("round_ratios"):
            rr = sorted(X["round_ratios"])
            row("throughput", f"  2 threads / 1 thread, per round ({len(rr)}): median (min..max)",
                f"{statistics.median(rr):.2f} ({rr[0]:.2f}..{rr[-1]:.2f})", "x", others=o2)
        row("throughput", "  cores used (process CPU / wall), 1 / 2 threads",
            f"{X['1']['cpu_per_wall']:.2f} / {X['2']['cpu_per_wall']:.2f}", "", others=o2)
        if o2 is not None:
            # Load-robust: did the two threads use the cores the other processes left? Near 1.0
            # nothing in the process serializes the runs (at least up to the cores left).
            left = max(0.01, min(2.0, ncpu - o2))
            row("throughput", f"  2 threads: cores used / cores left by others ({left:.2f})",
                X["2"]["cpu_per_wall"] / left, "x", others=o2)
        if X["1"].get("steal_cores") is not None and X["2"].get("steal_cores") is not None:
            # In a VM, time the hypervisor runs others on our vCPUs: counted in neither the
            # process's CPU time nor other processes' (it is in `others` too).
            row("throughput", "  hypervisor steal (cores), 1 / 2 threads",
                f"{X['1']['steal_cores']:.2f} / {X['2']['steal_cores']:.2f}", "", others=o2)
        row("throughput", "  CPU per run, 1 / 2 threads", f"{X['1']['cpu_per_run_ms']:.3f} / "
            f"{X['2']['cpu_per_run_ms']:.3f}", "ms", others=o2)
    return rows


def render(rows):
    head = ["measurement", "value", "unit", "baseline", "ratio", "target", "ok", "load", "others"]
    cells = [[r["measurement"], fmt(r["value"], r["unit"]), r["unit"], fmt(r["baseline"]),
              fmt(r["ratio"]), r["target"] or "", {True: "yes", False: "NO", None: ""}[r["ok"]],
              fmt(r["load"]), "-" if r["others"] is None else f"{r['others']:.2f}"] for r in rows]
    w = [max(len(str(x)) for x in col) for col in zip(head, *cells)]
    right = {1, 3, 4, 7, 8}
    def line(c):
        return "| " + " | ".join(str(x).rjust(w[i]) if i in right else str(x).ljust(w[i])
                                 for i, x in enumerate(c)) + " |"
    out = [line(head), "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    out += [line(c) for c in cells]
    return "\n".join(out)


NOTES = """\
- Every section ran in a fresh worker process (`python -I`); `load` is the 1-minute load average
  when its worker started (this benchmark's own threads count too); `others` is the CPU other
  processes used during the section, in cores (/proc/stat busy time minus this process's and its
  children's CPU time): above 0.25 the section was disturbed. Percentiles interpolate linearly;
  timers are time.perf_counter_ns.
- latency: 20 warm-ups, then Sandbox() + execute('print(1)') per run (stdout checked); CPU per run =
  process CPU time (all threads) over the timed loop / runs. Baseline: a fresh native
  `python -I -c 'print(1)'` process (same interpreter), p50 of 30.
- session: Session() timed alone (closed after, untimed); Session.execute('x = 1') after 100
  warm-ups. Baselines: the native process (Session()), exec(compile('x = 1')) in a dict (execute).
- first: `python -I -c` child doing import eryx + Sandbox().execute('print(1)'), timed inside the child
  from before the import; warm = the default GOERYX_CACHE_DIR (one discarded priming run);
  empty = a new temporary GOERYX_CACHE_DIR (its stderr must say the runtime was compiled when > 1 s).
- timeouts: execution_timeout_ms=300 (callback_timeout_ms=600000); latency = exception time - (time of
  the guest's first output chunk + 300 ms). The first output is the code's first statement, so this
  under-states by the code's compile time only (< 1 ms); `from_call_ms` in the JSON measures from
  the execute() call instead (includes interpreter creation: an upper bound). `3 at once`: three
  guests of the kind start together (barrier); for a waiting kind two busy `while True: pass`
  neighbours (timeout 1000 ms) run alongside too, so more guests are busy than there are cores.
- memory: VmRSS from /proc/self/status counts the image pages shared copy-on-write between
  interpreters once per mapping; PSS (smaps_rollup) divides them: the better measure. Per idle
  Session = (after - before) / 50 Sessions each after one execute('x = 1'), all alive.
- throughput: N threads each looping Sandbox()+execute('print(1)') for 5 s after a warm-up that
  also ran 2 threads at once, in 10 interleaved windows of 0.5 s per N (the order alternating), so
  that a drift of the machine's speed does not pass for a difference in scaling; runs/s = all runs
  of an N / its wall time; `per round` gives each round's own 2/1 ratio. With other processes busy the 2/1 ratio is
  inconclusive; `cores used / cores left by others` (min(2, cores - others)) then tells whether the
  two threads used what the machine left them (near 1.0: nothing in the process serializes them)."""


def main():
    ap = argparse.ArgumentParser(description="goeryx 'Instant sandboxes' benchmark")
    ap.add_argument("--json", metavar="PATH", help="also write the full report as JSON ('-' = stdout, "
                    "instead of the table)")
    ap.add_argument("--quick", action="store_true", help="few repetitions: a smoke test, not a benchmark")
    ap.add_argument("--only", help="comma-separated sections: " + ",".join(SECTIONS))
    ap.add_argument("--python", help="interpreter with eryx installed (default: this one if it can import "
                    "eryx, else .venv/bin/python)")
    add_args(ap)
    a = ap.parse_args()
    if a.quick:
        a.runs, a.warmup, a.native_runs, a.session_new, a.session_runs = 50, 5, 5, 20, 200
        a.timeout_trials, a.timeout_conc_trials, a.mem_runs, a.sessions = 2, 1, 1000, 10
        a.seconds, a.rounds, a.first_warm = 1.0, 2, 2
    py = a.python
    if not py:
        try:
            import eryx  # noqa: F401
            py = sys.executable
        except ImportError:
            py = os.path.join(REPO, ".venv", "bin", "python")
    sections = SECTIONS if not a.only else [s.strip() for s in a.only.split(",")]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown sections {bad}; known: {SECTIONS}")
    passthru = []
    for k in ("runs", "warmup", "native_runs", "session_new", "session_runs", "timeout_trials",
              "timeout_conc_trials", "mem_runs", "sessions", "seconds", "rounds"):
        passthru += [f"--{k.replace('_', '-')}", str(getattr(a, k))]
    ncpu = os.cpu_count()
    version = subprocess.run([py, "-I", "-c", "import eryx; print(eryx.__version__, eryx.GUEST_PYTHON_VERSION)"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    R, errors, loads = {}, {}, []
    t_start = time.time()
    for sec in sections:
        load0 = loadavg()
        loads.append(load0)
        log(f"{sec} (load {load0})")
        t = ns()
        try:
            if sec == "first":
                others = OtherCPU()
                res = first_sandbox(py, a)
                res["others_cores"] = others.cores()
            else:
                res, _, _ = run_child(py, [os.path.abspath(__file__), "--worker", sec, *passthru])
        except Exception as e:                      # reported; the other sections go on
            errors[sec] = str(e)
            log(f"{sec} FAILED: {e}")
            continue
        res["_load_before"] = load0
        res["_load_after"] = loadavg()
        loads.append(res["_load_after"])
        res["_wall_s"] = (ns() - t) / 1e9
        R[sec] = res
    rows = build_rows(R, ncpu)
    shares = sorted(x for v in R.values() for x in v.get("cpu_share", []))
    share = (median(shares), shares[0]) if shares else None
    known = [x for x in loads if x is not None]
    max_load = max(known) if known else None
    header = (f"{time.strftime('%Y-%m-%d %H:%M')}, host `{platform.node()}`, {ncpu} cores, goeryx {version[0]} "
              f"(guest Python {version[1]}), host Python {platform.python_version()}; took {time.time() - t_start:.0f} s"
              + (" (--quick: not a benchmark)" if a.quick else "")
              + (f"; 1-min load average {min(known):.2f}..{max_load:.2f}" if known else "")
              + (f"; CPU share of one thread: median {share[0]:.2f}, min {share[1]:.2f} (1.00 = idle)" if share else ""))
    warnings = [f"{k} failed: {v}" for k, v in errors.items()]
    busy = {sec: v["others_cores"] for sec, v in R.items() if (v.get("others_cores") or 0) > BUSY_OTHERS}
    if "throughput" in R:
        for n in ("1", "2"):
            o = R["throughput"][n]["others_cores"]
            if (o or 0) > BUSY_OTHERS:
                busy[f"throughput {n} thread(s)"] = o
    # The load average counts this benchmark's own threads: `others` and the spinning thread's
    # share decide; the load is only reported.
    if busy or (share and share[0] < 0.9):
        warnings.append("the machine was busy: other processes used "
                        + (", ".join(f"{v:.2f} cores during {k}" for k, v in busy.items()) or "little CPU")
                        + f"; 1-minute load average up to {max_load:.1f} on {ncpu} cores (this benchmark's own "
                        f"threads included); a spinning thread got {share[0] if share else float('nan'):.0%} of a "
                        "core, median. Disturbed wall-clock numbers are inflated and noisy; the CPU rows are "
                        "less affected")
    failed = [r["measurement"].strip() for r in rows if r["ok"] is False]
    report = {"header": header, "version": version, "cpus": ncpu, "quick": a.quick, "load_avg_1min": loads,
              "cpu_share": share, "params": {k: getattr(a, k) for k in vars(a) if k not in ("json", "only")},
              "rows": rows, "results": R, "errors": errors, "warnings": warnings, "targets_missed": failed}
    if a.json == "-":
        print(json.dumps(report, indent=1))
        return 1 if errors else 0
    print(header)
    print()
    print(render(rows))
    print()
    print(NOTES)
    if "first" in R:
        print("\nempty-cache child's stderr: " + (" | ".join(R["first"]["empty_stderr"]) or "(empty)"))
    if "throughput" in R:
        X = R["throughput"]
        print(f"throughput: 1-min load average before -> after: 1 thread {X['1']['load_before']:.2f} -> "
              f"{X['1']['load_after']:.2f}, 2 threads {X['2']['load_before']:.2f} -> {X['2']['load_after']:.2f}; "
              f"other processes used {X['1']['others_cores']:.2f} / {X['2']['others_cores']:.2f} cores")
    print()
    print("targets missed: " + (", ".join(failed) if failed else "none"))
    for w in warnings:
        print("WARNING: " + w)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"JSON report: {a.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker_main(sys.argv[1:])
    else:
        sys.exit(main())
