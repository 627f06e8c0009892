#!/usr/bin/env python3
"""Benchmark of eryx.ray (issue 17): runs/s of SandboxPool.map against a local Sandbox in the
same run, scaling from 1 to 2 actors, and a map with an actor killed halfway.

    .venv/bin/python bench/ray.py             # about a minute; starts a local Ray cluster
    .venv/bin/python bench/ray.py --runs 500  # quicker

Every figure is measured in this process, one after another, on a fresh local cluster
(`ray.init(num_cpus=2)`); the machine's load average is printed with them.
"""
import argparse
import os
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


def local_rate(n):
    start = time.perf_counter()
    for code in codes(n):
        eryx.Sandbox().execute(code)
    return n / (time.perf_counter() - start)


def pool_rate(n, num_actors, per_actor):
    with_pool = SandboxPool(num_actors=num_actors, sandboxes_per_actor=per_actor)
    try:
        with_pool.map(codes(min(n, 50)))  # warm-up: actors' runtimes opened
        start = time.perf_counter()
        results = with_pool.map(codes(n))
        elapsed = time.perf_counter() - start
        assert [r.stdout for r in results] == [str(i) for i in range(n)]
        return n / elapsed
    finally:
        with_pool.close()


def killed_halfway(n):
    pool = SandboxPool(num_actors=2, sandboxes_per_actor=1, max_retries=3)
    try:
        pool.map(codes(20))
        seen = 0
        start = time.perf_counter()
        got = []
        for r in pool.imap(codes(n)):
            got.append(r.stdout)
            seen += 1
            if seen == n // 2:
                ray.kill(pool._actors[0])  # the pool replaces it and retries its runs
        elapsed = time.perf_counter() - start
        return sorted(got, key=int) == [str(i) for i in range(n)], elapsed  # imap: completion order
    finally:
        pool.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000, help="snippets per map (default 2000)")
    args = ap.parse_args()
    n = args.runs
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        local = local_rate(min(n, 1000))
        one = pool_rate(n, 1, 2)
        two = pool_rate(n, 2, 1)
        complete, killed_s = killed_halfway(n)
    finally:
        ray.shutdown()
    load = os.getloadavg()[0]
    per_local = 1000 / local
    per_one = 1000 / one
    print(f"eryx.ray benchmark, {n} `print(i)` snippets per map, load average {load:.2f}\n")
    print("| measurement | value | unit | baseline | ratio |")
    print("|---|---:|---|---:|---:|")
    print(f"| local Sandbox()+execute, sequential | {local:,.0f} | runs/s | - | - |")
    print(f"| map, 1 actor x 2 sandboxes | {one:,.0f} | runs/s | {local:,.0f} (local) | {one / local:.2f} |")
    print(f"| map, 2 actors x 1 sandbox | {two:,.0f} | runs/s | {one:,.0f} (1 actor) | {two / one:.2f} |")
    print(f"| time per run, 1 actor | {per_one:.2f} | ms | {per_local:.2f} (local) | {per_one / per_local:.2f} |")
    print(f"| pool overhead per run (1 actor - local) | {per_one - per_local:.2f} | ms | 0.3 (target, batch 64) | {(per_one - per_local) / 0.3:.2f} |")
    print(f"| map of {n} with an actor killed halfway | {killed_s:.2f} | s | - | all results: {complete} |")
    print("\nOne Ray actor call per run: the overhead per run is a Ray task round trip "
          "(no batching of runs per call yet).")


if __name__ == "__main__":
    main()
