"""Hostile use of volumes and of the VFS: host file I/O on behalf of the guest must never block
past the run's deadline or Close. Each case runs in its own process (``run_case``), so a
regression fails here instead of hanging the suite."""

import os

from _harness import run_case

# A loop of large writes: a few bytecode boundaries per 64 MiB, so the guest's own ticks come
# seconds apart; the deadline has to be noticed inside the writes.
WRITE_LOOP = """
buf = b'x' * (64 << 20)
with open(PATH, 'wb') as f:
    while True:
        f.seek(0)
        f.write(buf)
"""


def test_fifo_in_volume_is_refused_at_once(tmp_path):
    """Opening a FIFO used to block the host call until a writer appeared, ignoring the
    timeout. It raises PermissionError at once."""
    os.mkfifo(tmp_path / "p")
    out = run_case(f"""
        import time, eryx
        sb = eryx.Sandbox(volumes=[({str(tmp_path)!r}, '/mnt/v', False)],
                          resource_limits=eryx.ResourceLimits(execution_timeout_ms=2000))
        start = time.monotonic()
        try:
            sb.execute("open('/mnt/v/p').read()")
            outcome = 'no error'
        except Exception as e:
            outcome = f'{{type(e).__name__}}: {{e}}'
        report(outcome=outcome, elapsed=time.monotonic() - start)
    """, wall_s=30, max_rss_mib=1024)
    found = out.check()
    assert found["outcome"].startswith("ExecutionError"), found
    assert "PermissionError: [Errno 2] Permission denied: '/mnt/v/p'" in found["outcome"], found
    assert found["elapsed"] < 1.5, found


def test_fifo_volume_host_path_is_refused(tmp_path):
    """A FIFO as the host path of a volume fails construction instead of blocking."""
    os.mkfifo(tmp_path / "p")
    out = run_case(f"""
        import eryx
        try:
            eryx.Session(volumes=[({str(tmp_path / "p")!r}, '/mnt/p', True)])
            outcome = 'no error'
        except Exception as e:
            outcome = f'{{type(e).__name__}}: {{e}}'
        report(outcome=outcome)
    """, wall_s=30, max_rss_mib=1024)
    found = out.check()
    assert found["outcome"].startswith("InitializationError: volume host path cannot be mounted"), found
    assert "not a regular file" in found["outcome"], found


def test_write_loop_to_volume_ends_at_the_deadline(tmp_path):
    """Gigabytes written to an rw volume in a loop: a 5 s timeout used to be overrun by
    seconds. The run ends within about a second of the deadline."""
    out = run_case(f"""
        import time, eryx
        sb = eryx.Sandbox(volumes=[({str(tmp_path)!r}, '/mnt/v', False)],
                          resource_limits=eryx.ResourceLimits(execution_timeout_ms=5000))
        start = time.monotonic()
        try:
            sb.execute("PATH = '/mnt/v/big'\\n" + {WRITE_LOOP!r})
            outcome = 'no error'
        except Exception as e:
            outcome = type(e).__name__
        report(outcome=outcome, elapsed=time.monotonic() - start)
    """, wall_s=30, max_rss_mib=1536)
    found = out.check()
    assert found["outcome"] == "TimeoutError", found
    assert found["elapsed"] < 6.5, found
    assert (tmp_path / "big").stat().st_size <= 64 << 20


def test_write_loop_to_store_ends_at_the_deadline():
    """The same loop on a large in-memory store."""
    out = run_case(f"""
        import time, eryx
        s = eryx.Session(vfs=eryx.VfsStorage(max_bytes=1 << 30), execution_timeout_ms=2000)
        start = time.monotonic()
        try:
            s.execute("PATH = '/data/big'\\n" + {WRITE_LOOP!r})
            outcome = 'no error'
        except Exception as e:
            outcome = type(e).__name__
        report(outcome=outcome, elapsed=time.monotonic() - start)
    """, wall_s=30, max_rss_mib=1536)
    found = out.check()
    assert found["outcome"] == "TimeoutError", found
    assert found["elapsed"] < 3.5, found


def test_close_from_another_thread_ends_a_write_loop(tmp_path):
    """Session.close() from another thread stops a run that is busy writing a volume."""
    out = run_case(f"""
        import threading, time, eryx
        s = eryx.Session(volumes=[({str(tmp_path)!r}, '/mnt/v', False)])
        closed_at = []
        def closer():
            time.sleep(1)
            closed_at.append(time.monotonic())
            s.close()
        threading.Thread(target=closer).start()
        try:
            s.execute("PATH = '/mnt/v/big'\\n" + {WRITE_LOOP!r})
            outcome = 'no error'
        except Exception as e:
            outcome = f'{{type(e).__name__}}: {{e}}'
        report(outcome=outcome, after_close=time.monotonic() - closed_at[0])
    """, wall_s=30, max_rss_mib=1536)
    found = out.check()
    assert found["outcome"] == "CancelledError: Session was closed during execution", found
    assert found["after_close"] < 1.5, found
