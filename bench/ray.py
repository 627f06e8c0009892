#!/usr/bin/env python3
"""Benchmark of eryx.ray (issue 17): SandboxPool.map against a local Sandbox in the same run,
Ray's own per-call cost, scaling from 1 to 2 actors, and a map with an actor killed halfway.

    .venv/bin/python bench/ray.py               # 5 rounds, ~2-4 minutes; a local Ray cluster
    .venv/bin/python bench/ray.py --rounds 1 --runs 500   # quicker

Every figure is measured in this process on one local cluster (`ray.init(num_cpus=2)`). The
pools live through the whole benchmark and each round runs every measurement once, seconds
apart (Ray's no-op call, local, 1 actor, 2 actors, ...); each ratio pairs figures of the same
round. The table gives the median over the rounds and the range, and the load average before
each round. Wall-clock figures on a shared machine swing with its load; the CPU rows (CPU time
of every process involved: this driver, the actors, and Ray's own processes, from /proc) much
less, and "cores the benchmark got" says how much of the machine it had.
"""
import argparse
import os
import subprocess
import sys
import time

# This file is named ray.py: take its own directory off the path, so that `import ray` finds Ray.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import ray  # noqa: E402

import eryx  # noqa: E402
from eryx.ray import SandboxPool  # noqa: E402


def codes(n):
    return [f"print({i})" for i in range(n)]


class CPU:
    """CPU seconds used between start() and stop() by this process (driver), by the pool's
    actor processes, and by the rest of Ray (raylet, GCS, idle workers): every descendant of
    this process, since ray.init started the local cluster. Read from /proc."""

    TICK = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _stat(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / CPU.TICK  # ppid, utime+stime

    def _sample(self):
        procs = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    procs[int(entry)] = self._stat(entry)
                except (OSError, IndexError, ValueError):
                    pass
        me = os.getpid()
        children = {}
        for pid, (ppid, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        driver = sum(os.times()[:2])
        actors = rest = waited = 0.0
        todo = list(children.get(me, []))
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    name = f.read(200)
            except OSError:
                continue
            if b"_PoolActor" in name or b"Noop" in name:
                actors += procs[pid][1]
                waited += self._run_delay(pid)
            else:
                rest += procs[pid][1]
        return driver, actors, rest, waited, self._busy() - driver - actors - rest

    @staticmethod
    def _busy():
        """CPU seconds every process of the machine used so far (/proc/stat, idle and iowait
        excluded): minus ours, what the other processes used."""
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return (sum(fields[:8]) - fields[3] - fields[4]) / CPU.TICK

    @staticmethod
    def _run_delay(pid):
        """Seconds the threads of a process spent runnable but waiting for a CPU (schedstat)."""
        total = 0
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return 0.0
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                pass
        return total / 1e9

    def start(self):
        self.t0 = self._sample()

    def stop(self, n):
        t1 = self._sample()
        # ms per run: driver, actors, rest of Ray, the actors' wait for a CPU, other processes
        return [(b - a) / n * 1e3 for a, b in zip(self.t0, t1)]


@ray.remote(num_cpus=0)
class Noop:
    def call(self, x):
        return x


def ray_call_cost(n, cpu):
    """Ray's own cost per actor call, nothing else: a no-op actor method."""
    actor = Noop.remote()
    ray.get([actor.call.remote(i) for i in range(50)])
    start = time.perf_counter()
    for i in range(n // 4):
        ray.get(actor.call.remote(i))
    sync_ms = (time.perf_counter() - start) / (n // 4) * 1e3
    cpu.start()
    start = time.perf_counter()
    pending = []
    for i in range(n):  # 8 calls in flight, as a pool keeps its actors busy
        if len(pending) >= 8:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done)
        pending.append(actor.call.remote(i))
    ray.get(pending)
    piped_ms = (time.perf_counter() - start) / n * 1e3
    cpu_ms = sum(cpu.stop(n)[:3])
    ray.kill(actor)
    return sync_ms, piped_ms, cpu_ms


def local_run(n):
    """Sandbox()+execute in this process, one after another: wall and process CPU per run."""
    for code in codes(20):
        eryx.Sandbox().execute(code)
    start, cpu0 = time.perf_counter(), time.process_time()
    for code in codes(n):
        eryx.Sandbox().execute(code)
    return (time.perf_counter() - start) / n * 1e3, (time.process_time() - cpu0) / n * 1e3


def local_reuse(n):
    """execute on one Sandbox, as an actor does: wall and process CPU per run."""
    sandbox = eryx.Sandbox()
    start, cpu0 = time.perf_counter(), time.process_time()
    for code in codes(n):
        sandbox.execute(code)
    return (time.perf_counter() - start) / n * 1e3, (time.process_time() - cpu0) / n * 1e3


_WORKER = """
import sys, time, eryx
sandbox = eryx.Sandbox()
for i in range(50):
    sandbox.execute("pass")
print("ready", flush=True)
sys.stdin.readline()
end, n = time.perf_counter() + float(sys.argv[1]), 0
while time.perf_counter() < end:
    sandbox.execute(f"print({n})")
    n += 1
print(n, flush=True)
"""


def local_processes(k, seconds=2.0):
    """The machine's own scaling, without Ray: k plain processes each running execute on one
    Sandbox for `seconds`, started together. Total runs/s."""
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(seconds)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(k)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        total = sum(int(p.stdout.readline()) for p in procs)
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)
    return total / seconds


def pool_map(pool, n, cpu, max_batch=None):
    """runs/s of map over n snippets, and CPU ms per run (driver, actors, rest of Ray)."""
    if max_batch is not None:
        pool._MAX_BATCH = max_batch  # the previous design: one actor call per run
    try:
        pool.map(codes(100))  # the batch size is measured afresh by every map
        cpu.start()
        start = time.perf_counter()
        results = pool.map(codes(n))
        elapsed = time.perf_counter() - start
        split = cpu.stop(n)
    finally:
        pool.__dict__.pop("_MAX_BATCH", None)
    assert [r.stdout for r in results] == [str(i) for i in range(n)]
    return n / elapsed, split


def killed_halfway(n):
    pool = SandboxPool(num_actors=2, sandboxes_per_actor=1, max_retries=3)
    try:
        pool.map(codes(200))
        got = []
        start = time.perf_counter()
        for r in pool.imap(codes(n)):
            got.append(r.stdout)
            if len(got) == n // 2:
                ray.kill(pool.actors[0])  # the pool replaces it and retries its batches
        elapsed = time.perf_counter() - start
        return sorted(got, key=int) == [str(i) for i in range(n)], elapsed  # completion order
    finally:
        pool.close()


def rng(values, fmt):
    """median (min-max) over the rounds."""
    values = sorted(values)
    mid = values[len(values) // 2] if len(values) % 2 else sum(values[len(values) // 2 - 1:][:2]) / 2
    lo, hi = fmt.format(values[0]), fmt.format(values[-1])
    return fmt.format(mid) if lo == hi else f"{fmt.format(mid)} ({lo} to {hi})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000, help="snippets per map (default 2000)")
    ap.add_argument("--rounds", type=int, default=5, help="repetitions of every measurement")
    args = ap.parse_args()
    n = args.runs
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cpu = CPU()
    rows = {k: [] for k in ("load", "sync", "piped", "callcpu", "local", "localcpu", "reuse", "reusecpu", "proc1", "proc2", "one",
                            "onecpu", "unbatched", "unbatchedcpu", "onetwo", "onetwocpu", "two", "twocpu")}
    # Every pool lives through the rounds, so that the maps of a round run seconds apart. Ray's
    # num_cpus is bookkeeping only (it pins no core): the pools reserve none, so that all fit
    # on the 2 logical CPUs at once.
    zero = {"num_cpus": 0}
    one = SandboxPool(num_actors=1, sandboxes_per_actor=1, actor_options=zero)
    onetwo = SandboxPool(num_actors=1, sandboxes_per_actor=2, actor_options=zero)
    two = SandboxPool(num_actors=2, sandboxes_per_actor=1, actor_options=zero)
    try:
        for _ in range(args.rounds):
            rows["load"].append(os.getloadavg()[0])
            sync_ms, piped_ms, call_cpu = ray_call_cost(n, cpu)
            rows["sync"].append(sync_ms)
            rows["piped"].append(piped_ms)
            rows["callcpu"].append(call_cpu)
            local_ms, local_cpu = local_run(min(n, 1000))
            rows["local"].append(local_ms)
            rows["localcpu"].append(local_cpu)
            rows["proc1"].append(local_processes(1))
            rows["proc2"].append(local_processes(2))
            reuse_ms, reuse_cpu = local_reuse(min(n, 1000))
            rows["reuse"].append(reuse_ms)
            rows["reusecpu"].append(reuse_cpu)
            for key, pool, max_batch in (("one", one, None), ("two", two, None),
                                         ("unbatched", one, 1), ("onetwo", onetwo, None)):
                rate, split = pool_map(pool, n, cpu, max_batch)
                rows[key].append(rate)
                rows[key + "cpu"].append(split)
        for pool in (one, onetwo, two):
            pool.close()
        complete, killed_s = killed_halfway(n)
    finally:
        ray.shutdown()

    r = rows
    local_rate = [1e3 / x for x in r["local"]]
    overhead = [1e3 / one - loc for one, loc in zip(r["one"], r["local"])]
    overhead_unb = [1e3 / one - loc for one, loc in zip(r["unbatched"], r["local"])]
    cpu_over = [sum(s[:3]) - loc for s, loc in zip(r["onecpu"], r["localcpu"])]
    cpu_over_reuse = [sum(s[:3]) - loc for s, loc in zip(r["onecpu"], r["reusecpu"])]
    cpu_over_unb = [sum(s[:3]) - loc for s, loc in zip(r["unbatchedcpu"], r["localcpu"])]
    scale = [two / one for two, one in zip(r["two"], r["one"])]
    cores_one = [sum(s[:3]) / 1e3 * rate for s, rate in zip(r["onecpu"], r["one"])]
    cores_two = [sum(s[:3]) / 1e3 * rate for s, rate in zip(r["twocpu"], r["two"])]
    scale_per_core = [(two / c2) / (one / c1) for two, c2, one, c1 in
                      zip(r["two"], cores_two, r["one"], cores_one)]
    proc_scale = [b / a for a, b in zip(r["proc1"], r["proc2"])]
    scale_12 = [two / one for two, one in zip(r["two"], r["onetwo"])]

    def split(key):
        return " / ".join(rng(p, "{:.2f}") for p in list(zip(*r[key]))[:3])

    def others(key, rates):
        # cores the machine's other processes used meanwhile
        return rng([s[4] / 1e3 * rate for s, rate in zip(r[key], rates)], "{:.2f}")

    def waited(key, rates):
        # share of the wall time the actors' threads waited, runnable, for a CPU
        return rng([s[3] / 1e3 * rate for s, rate in zip(r[key], rates)], "{:.2f}")

    print(f"eryx.ray benchmark: {n} `print(i)` snippets per map, {args.rounds} round(s); "
          f"load average before each round: {', '.join(f'{x:.1f}' for x in r['load'])} "
          f"(after: {os.getloadavg()[0]:.1f}) on {os.cpu_count()} cores\n")
    print("| measurement | value (range over rounds) | unit | baseline in the same round | ratio |")
    print("|---|---:|---|---:|---:|")
    print(f"| Ray actor call, no-op, one at a time | {rng(r['sync'], '{:.2f}')} | ms/call | - | - |")
    print(f"| Ray actor call, no-op, 8 in flight | {rng(r['piped'], '{:.2f}')} | ms/call | - | - |")
    print(f"| Ray actor call, no-op: CPU, all processes | {rng(r['callcpu'], '{:.2f}')} | ms/call | - | - |")
    print(f"| local Sandbox()+execute, sequential | {rng(local_rate, '{:,.0f}')} | runs/s | - | - |")
    print(f"| local Sandbox()+execute: CPU | {rng(r['localcpu'], '{:.2f}')} | ms/run | - | - |")
    print(f"| local execute on one Sandbox (as an actor runs): wall / CPU | {rng(r['reuse'], '{:.2f}')} / {rng(r['reusecpu'], '{:.2f}')} | ms/run | - | - |")
    print(f"| map, 1 actor x 1 sandbox (batched) | {rng(r['one'], '{:,.0f}')} | runs/s | local | "
          f"{rng([a / b for a, b in zip(r['one'], local_rate)], '{:.2f}')} |")
    print(f"| map, 1 actor x 1 sandbox, one call per run (previous design) | {rng(r['unbatched'], '{:,.0f}')} | runs/s | batched | "
          f"{rng([a / b for a, b in zip(r['unbatched'], r['one'])], '{:.2f}')} |")
    print(f"| **pool overhead per run, wall** (1 actor x 1, minus local) | {rng(overhead, '{:.2f}')} | ms | 0.3 (target) | "
          f"{rng([x / 0.3 for x in overhead], '{:.2f}')} |")
    print(f"| pool overhead per run, wall, one call per run | {rng(overhead_unb, '{:.2f}')} | ms | - | - |")
    print(f"| CPU per run in the pool: driver / actor / rest of Ray | {split('onecpu')} | ms | "
          f"{rng(r['localcpu'], '{:.2f}')} (local) | - |")
    print(f"| **pool overhead per run, CPU** (all processes, minus local) | {rng(cpu_over, '{:.2f}')} | ms | 0.3 (target) | "
          f"{rng([x / 0.3 for x in cpu_over], '{:.2f}')} |")
    print(f"| pool overhead per run, CPU, vs execute on one Sandbox | {rng(cpu_over_reuse, '{:.2f}')} | ms | 0.3 (target) | "
          f"{rng([x / 0.3 for x in cpu_over_reuse], '{:.2f}')} |")
    print(f"| CPU per run, one call per run: driver / actor / rest of Ray | {split('unbatchedcpu')} | ms | - | - |")
    print(f"| pool overhead per run, CPU, one call per run | {rng(cpu_over_unb, '{:.2f}')} | ms | - | - |")
    print(f"| map, 1 actor x 2 sandboxes | {rng(r['onetwo'], '{:,.0f}')} | runs/s | - | - |")
    print(f"| map, 2 actors x 1 sandbox | {rng(r['two'], '{:,.0f}')} | runs/s | - | - |")
    print(f"| **2 actors x 1 vs 1 actor x 1** | {rng(scale, '{:.2f}')} | x | 1.6 (target) | - |")
    print(f"| without Ray: 2 processes vs 1, each execute on one Sandbox in a loop | {rng(proc_scale, '{:.2f}')} | x | "
          f"{rng(r['proc1'], '{:,.0f}')} runs/s (1 process) | - |")
    print(f"| 2 actors vs 1 actor, relative to 2 processes vs 1 in the same round | "
          f"{rng([a / b for a, b in zip(scale, proc_scale)], '{:.2f}')} | x | 1.0 (Ray scales as the machine) | - |")
    print(f"| cores the benchmark got (CPU of all its processes / wall), 1 actor x 1 | {rng(cores_one, '{:.2f}')} | cores | 1 | - |")
    print(f"| cores the benchmark got, 2 actors x 1 | {rng(cores_two, '{:.2f}')} | cores | 2 | - |")
    print(f"| cores other processes used meanwhile, 1 actor x 1 / 2 actors x 1 | {others('onecpu', r['one'])} / {others('twocpu', r['two'])} | cores | 0 | - |")
    print(f"| actor threads runnable but waiting for a CPU, 1 actor x 1 | {waited('onecpu', r['one'])} | x wall | 0 | - |")
    print(f"| actor threads runnable but waiting for a CPU, 2 actors x 1 | {waited('twocpu', r['two'])} | x wall | 0 | - |")
    print(f"| 2 actors x 1 vs 1 actor x 1, runs per core obtained | {rng(scale_per_core, '{:.2f}')} | x | 1.0 (perfect) | - |")
    print(f"| 2 actors x 1 vs 1 actor x 2 | {rng(scale_12, '{:.2f}')} | x | - | - |")
    print(f"| CPU per run, 2 actors x 1: driver / actors / rest of Ray | {split('twocpu')} | ms | - | - |")
    print(f"| CPU per run, 1 actor x 2: driver / actor / rest of Ray | {split('onetwocpu')} | ms | - | - |")
    two_s = sorted(n / x for x in r["two"])[len(r["two"]) // 2]
    print(f"| map of {n} with an actor killed halfway (2 actors x 1) | {killed_s:.2f} | s | "
          f"{two_s:.2f} (no kill, median) | all results: {complete} |")
    print("\nmap sends runs in batches (up to 64 per actor call, ~100 ms of work each); "
          "bench/README.md has the scaling model.")


if __name__ == "__main__":
    main()
