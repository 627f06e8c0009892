"""Evaluate model-written code on a Ray cluster with eryx.ray (API.md §14).

Needs `pip install 'goeryx[ray]'` on every node (the same goeryx and Ray versions everywhere).

A multi-node cluster:

    # on the head node
    ray start --head --port=6379 --num-cpus=8
    # on every other node
    ray start --address=HEAD_IP:6379 --num-cpus=8
    # anywhere in the cluster (or RAY_ADDRESS=HEAD_IP:6379)
    python examples/ray_cluster.py --address HEAD_IP:6379 --actors-per-node 1

Without --address (and RAY_ADDRESS) it starts a local one-node Ray instance, which is how to try
it on a laptop.

Ray 2.5x turns on token authentication in `ray start`: every node and the driver need the same
token (~/.ray/auth_token or RAY_AUTH_TOKEN), and a driver that connects by address may need
RAY_AUTH_MODE=token in its environment.

What to size:
- actors per node: each actor is one Ray worker process holding one goeryx runtime (~180 MB RSS,
  ~140 MB PSS once warm). Runs are threads inside it and release the GIL, so one actor per node
  (or one per 4-8 cores) is enough; more actors only add processes.
- sandboxes per actor: runs at once in one actor. CPU-bound code: the actor's CPUs. Code that
  waits on callbacks or the network: more.
- memory per sandbox: a run holds its guest's memory while it runs: ~20 MiB for small snippets
  (ExecuteResult.peak_memory_bytes tells), never more than ResourceLimits.max_memory_bytes
  (128 MiB by default). Reserve actor memory = 200 MB + sandboxes_per_actor x that cap, so that
  Ray never packs more actors on a node than it can hold.
"""

from __future__ import annotations

import argparse
import os
import time

import ray

import eryx
import eryx.ray

# A reward function's shape: run a candidate solution against its tests, report what passed.
CANDIDATE = """
def solve(n):
    return sum(i * i for i in range({k}))  # a model's attempt: right only when k == n
tests = [(n, sum(i * i for i in range(n))) for n in (3, 10, 100)]
result = sum(solve(n) == want for n, want in tests) / len(tests)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                        help="the cluster's address (HEAD_IP:6379); default: a local instance")
    parser.add_argument("--actors-per-node", type=int, default=1)
    parser.add_argument("--sandboxes-per-actor", type=int, default=None,
                        help="default: the CPUs of a node divided by --actors-per-node")
    parser.add_argument("--max-memory-mb", type=int, default=128,
                        help="ResourceLimits.max_memory_bytes of each run, in MiB")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(include_dashboard=False)

    nodes = [n for n in ray.nodes() if n["Alive"]]
    cpus_per_node = min(int(n["Resources"].get("CPU", 1)) for n in nodes)
    per_actor = args.sandboxes_per_actor or max(1, cpus_per_node // args.actors_per_node)
    cap = args.max_memory_mb * 2**20
    pool = eryx.ray.SandboxPool(
        num_actors=len(nodes) * args.actors_per_node,
        sandboxes_per_actor=per_actor,
        resource_limits=eryx.ResourceLimits(max_memory_bytes=cap, execution_timeout_ms=5_000),
        actor_options={
            "num_cpus": per_actor,
            "memory": 200 * 2**20 + per_actor * cap,
            "scheduling_strategy": "SPREAD",  # one actor per node first
        },
    )
    print(f"{len(nodes)} node(s): {pool.num_actors} actors x {per_actor} sandboxes "
          f"= {pool.capacity} runs in flight")

    codes = [CANDIDATE.format(k=(100 if i % 3 else i % 7)) for i in range(args.runs)]
    with pool:
        start = time.perf_counter()
        scores = []
        for r in pool.map(codes, return_exceptions=True):
            # A candidate that crashes, loops or eats memory scores 0.
            scores.append(0.0 if isinstance(r, Exception) else r.result)
        elapsed = time.perf_counter() - start
    print(f"{len(scores)} runs in {elapsed:.2f} s: {len(scores) / elapsed:,.0f} runs/s; "
          f"mean score {sum(scores) / len(scores):.3f}")


if __name__ == "__main__":
    main()
