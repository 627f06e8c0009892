"""Ready interpreters: Sandbox runs start on interpreters prepared in the background (issue 13)."""

import subprocess
import sys
import time

import eryx


def _wait(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return False


READY_CHILD = """
import time, eryx
limits = eryx.ResourceLimits(max_memory_bytes=200 << 20)
eryx.Sandbox(resource_limits=limits).execute("print(1)")  # the pool refills for this config
end = time.monotonic() + 20
while eryx.ready_interpreters()["ready"] < 2 and time.monotonic() < end:
    time.sleep(0.005)
hits = eryx.ready_interpreters()["hits"]
r1 = eryx.Sandbox(resource_limits=limits).execute(
    "import os\\nx = 1\\nopen('/scratch/f', 'w').write('s')\\nos.environ['LEAK'] = '1'\\nprint(os.getcwd())")
r2 = eryx.Sandbox(resource_limits=limits).execute(
    "import os\\nprint('x' in globals(), os.path.exists('/scratch/f'), 'LEAK' in os.environ)")
s = eryx.ready_interpreters()
print(r1.stdout, "|", r2.stdout, "|", s["size"], s["hits"] - hits, sorted(s), s["image_bytes"] > 1 << 20)
"""


def test_runs_start_on_ready_interpreters_and_share_nothing():
    p = _child(READY_CHILD, GOERYX_READY_INTERPRETERS="2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == (
        "/scratch | False False False | 2 2 "
        "['expired', 'hits', 'image_bytes', 'made', 'misses', 'ready', 'size'] True"
    ), p.stdout


def test_off_by_default():
    assert eryx.ready_interpreters()["size"] == 0


def _child(code, **env):
    import os

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, **env},
    )


def test_size_zero_from_the_environment():
    p = _child(
        "import eryx\n"
        "for _ in range(3): assert eryx.Sandbox().execute('print(6*7)').stdout == '42'\n"
        "s = eryx.ready_interpreters()\n"
        "print(s['size'], s['ready'], s['hits'], s['made'])",
        GOERYX_READY_INTERPRETERS="0",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "0", "0", "0"]


def test_bad_size_is_an_initialization_error():
    p = _child(
        "import eryx\n"
        "try:\n"
        "    eryx.Sandbox()\n"
        "except eryx.InitializationError as e:\n"
        "    print('IE', e)\n",
        GOERYX_READY_INTERPRETERS="lots",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("IE GOERYX_READY_INTERPRETERS must be an integer from 0 to 64"), p.stdout
