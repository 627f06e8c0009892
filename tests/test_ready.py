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


def test_runs_start_on_ready_interpreters_and_share_nothing():
    limits = eryx.ResourceLimits(max_memory_bytes=200 << 20)
    eryx.Sandbox(resource_limits=limits).execute("print(1)")  # the pool refills for this config
    size = eryx.ready_interpreters()["size"]
    assert size == 2  # the default
    assert _wait(lambda: eryx.ready_interpreters()["ready"] == size), eryx.ready_interpreters()
    hits = eryx.ready_interpreters()["hits"]
    r = eryx.Sandbox(resource_limits=limits).execute(
        "import os\nx = 1\nopen('/scratch/f', 'w').write('s')\nos.environ['LEAK'] = '1'\nprint(os.getcwd())"
    )
    assert r.stdout == "/scratch"
    r = eryx.Sandbox(resource_limits=limits).execute(
        "import os\nprint('x' in globals(), os.path.exists('/scratch/f'), 'LEAK' in os.environ)"
    )
    assert r.stdout == "False False False"
    stats = eryx.ready_interpreters()
    assert stats["hits"] == hits + 2, stats
    assert set(stats) == {"size", "ready", "hits", "misses", "made", "expired", "image_bytes"}
    assert stats["image_bytes"] > 1 << 20


def _child(code, **env):
    import os

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, **env},
    )


def test_size_from_the_environment():
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
