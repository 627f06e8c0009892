"""Pure-Python compute workload used to compare the guest runtime with native CPython.

Parts (seconds each, measured with time.perf_counter inside the interpreter under test):
  loop     the runtime probe's 3M-iteration integer loop
  fib      recursive fib(25)
  strdict  string formatting, dict updates, join/split over 200k items
`run(repeat)` returns the best time of each part over `repeat` rounds, plus "loop+fib" (the
figure the runtime target is stated in) and "total". Run as a script it prints that as JSON:

    python3 bench/compute.py [--repeat N]
"""
import json
import sys
import time


def part_loop():
    s = 0
    for i in range(3000000):
        s += i * i % 7
    return s


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def part_fib():
    return fib(25)


def part_strdict():
    d = {}
    for i in range(200000):
        k = "key%d" % (i % 5000)
        d[k] = d.get(k, 0) + len(k)
    s = ",".join(f"{k}={v}" for k, v in d.items())
    words = s.split(",")
    counts = {}
    for w in words * 20:
        head = w.partition("=")[0].upper()
        counts[head] = counts.get(head, 0) + 1
    return len(counts) + sum(len(w) for w in words)


PARTS = (("loop", part_loop, 5999999), ("fib", part_fib, 75025), ("strdict", part_strdict, None))


def run(repeat=1):
    best = {}
    for _ in range(repeat):
        for name, fn, want in PARTS:
            t0 = time.perf_counter()
            got = fn()
            dt = time.perf_counter() - t0
            if want is not None and got != want:
                raise AssertionError(f"{name}: {got} != {want}")
            best[name] = min(dt, best.get(name, dt))
    out = {k: round(v, 4) for k, v in best.items()}
    out["loop+fib"] = round(best["loop"] + best["fib"], 4)
    out["total"] = round(sum(best.values()), 4)
    return out


if __name__ == "__main__":
    repeat = 1
    if "--repeat" in sys.argv:
        repeat = int(sys.argv[sys.argv.index("--repeat") + 1])
    print(json.dumps(run(repeat)))
