"""Run one adversarial case in a child process, under a wall-clock and a memory bound.

A hostile guest that hangs the host or aborts it must fail *its* test, not the whole pytest
process (nor CI's time limit). Each case is a Python script run by the test's interpreter in a
fresh process; the parent samples the child's resident memory and thread count from /proc and
kills it when it passes either bound. The script reports what it observed by printing one JSON
object as the last line of its stdout (``report(...)``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any

# Prepended to every case: `report` prints the case's findings as the last stdout line.
_PRELUDE = """\
import json as _json, sys as _sys
def report(**fields):
    _sys.stdout.write("\\n" + _json.dumps(fields) + "\\n")
    _sys.stdout.flush()
"""


@dataclass
class Outcome:
    """What happened to the child process."""

    returncode: int | None
    stdout: str
    stderr: str
    elapsed_s: float
    peak_rss_mib: float
    peak_threads: int
    killed: str | None = None  # "wall" or "rss" when the harness killed the child
    report: dict[str, Any] = field(default_factory=dict)

    def check(self) -> dict[str, Any]:
        """The case's report; fails with the child's stderr when it was killed, crashed or
        reported nothing."""
        if self.killed:
            raise AssertionError(
                f"killed by the harness ({self.killed} bound) after {self.elapsed_s:.1f} s, "
                f"peak RSS {self.peak_rss_mib:.0f} MiB, {self.peak_threads} threads\n"
                f"stderr:\n{self.stderr[-4000:]}")
        if self.returncode != 0:
            raise AssertionError(
                f"child exited with {self.returncode}\nstderr:\n{self.stderr[-4000:]}")
        if not self.report:
            raise AssertionError(f"child reported nothing\nstdout:\n{self.stdout[-2000:]}")
        return self.report


def _proc_status(pid: int) -> tuple[float, int]:
    """(VmRSS in MiB, Threads) of pid, or (0, 0) once it is gone."""
    rss, threads = 0.0, 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads


def run_case(script: str, *, wall_s: float = 60.0, max_rss_mib: float = 2048.0,
             env: dict[str, str] | None = None) -> Outcome:
    """Runs the dedented script in a new interpreter (the one running the tests) and returns
    its Outcome. The child is killed when it runs longer than wall_s or its resident memory
    passes max_rss_mib."""
    code = _PRELUDE + textwrap.dedent(script)
    child_env = dict(os.environ)
    child_env.update(env or {})
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env, cwd=os.path.dirname(os.path.abspath(__file__)))
    # Pipes are drained by threads so that a chatty child cannot block on a full pipe.
    import threading

    chunks: dict[str, list[str]] = {"out": [], "err": []}

    def drain(stream, key):
        for line in stream:
            chunks[key].append(line)

    readers = [threading.Thread(target=drain, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=drain, args=(proc.stderr, "err"), daemon=True)]
    for t in readers:
        t.start()
    peak_rss, peak_threads, killed = 0.0, 0, None
    while proc.poll() is None:
        rss, threads = _proc_status(proc.pid)
        peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
        if rss > max_rss_mib:
            killed = "rss"
        elif time.monotonic() - start > wall_s:
            killed = "wall"
        if killed:
            proc.kill()
            break
        time.sleep(0.05)
    proc.wait()
    elapsed = time.monotonic() - start
    for t in readers:
        t.join(timeout=5)
    out, err = "".join(chunks["out"]), "".join(chunks["err"])
    report: dict[str, Any] = {}
    lines = out.strip().splitlines()
    if lines and not killed:
        try:
            report = json.loads(lines[-1])
        except ValueError:
            report = {}
    return Outcome(proc.returncode, out, err, elapsed, peak_rss, peak_threads, killed, report)
