"""What the limits do at run time (API.md §2.1, §6.6, §8.3)."""

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

import eryx
from _eryxtest import STATE_LOST_SUFFIX, Timer, make_sandbox, run

TIMEOUT_MS = 300
DEADLINE = TIMEOUT_MS / 1000
# "within about 1 s of the deadline": allow some scheduling slack on 2 cores.
SLACK = 1.5

HARD_LOOP = """
while True:
    try:
        while True:
            pass
    except BaseException:
        pass
"""

MiB = 1024 * 1024


# ---------------------------------------------------------------------------
# execution timeout


def test_busy_loop_times_out():
    sb = make_sandbox(execution_timeout_ms=TIMEOUT_MS)
    try:
        with Timer() as t, pytest.raises(eryx.TimeoutError) as ei:
            sb.execute("while True:\n    pass")
        exc = ei.value
        assert str(exc) == f"execution timed out after {TIMEOUT_MS} ms"
        assert isinstance(exc, eryx.EryxError)
        assert isinstance(exc, TimeoutError)
        assert isinstance(exc, OSError)
        assert exc.errno is None
        assert exc.strerror is None
        assert DEADLINE - 0.02 <= t.elapsed <= DEADLINE + SLACK
        # the sandbox keeps working
        assert sb.execute("print('after')").stdout == "after"
    finally:
        sb.close()


def test_timeout_caught_by_builtin_except_timeouterror():
    sb = make_sandbox(execution_timeout_ms=TIMEOUT_MS)
    try:
        try:
            sb.execute("while True:\n    pass")
        except TimeoutError as exc:  # the builtin name
            assert type(exc) is eryx.TimeoutError
        else:
            pytest.fail("no timeout")
    finally:
        sb.close()


def test_timeout_during_sleep():
    sb = make_sandbox(execution_timeout_ms=TIMEOUT_MS)
    try:
        with Timer() as t, pytest.raises(eryx.TimeoutError) as ei:
            sb.execute("import time\ntime.sleep(10)")
        assert str(ei.value) == f"execution timed out after {TIMEOUT_MS} ms"
        assert DEADLINE - 0.02 <= t.elapsed <= DEADLINE + SLACK
    finally:
        sb.close()


def test_timeout_during_asyncio_sleep():
    sb = make_sandbox(execution_timeout_ms=TIMEOUT_MS)
    try:
        with Timer() as t, pytest.raises(eryx.TimeoutError):
            sb.execute("import asyncio\nawait asyncio.sleep(10)")
        assert t.elapsed <= DEADLINE + SLACK
    finally:
        sb.close()


def test_code_that_swallows_the_interrupt_is_stopped_hard():
    sb = make_sandbox(execution_timeout_ms=TIMEOUT_MS)
    try:
        with Timer() as t, pytest.raises(eryx.TimeoutError) as ei:
            sb.execute(HARD_LOOP)
        assert str(ei.value) == f"execution timed out after {TIMEOUT_MS} ms"
        # cooperative interrupt at the deadline, hard stop 1 s later
        assert t.elapsed <= DEADLINE + 1.0 + SLACK
        assert sb.execute("print('alive')").stdout == "alive"
    finally:
        sb.close()


def test_timeout_with_more_busy_guests_than_cores():
    n = (os.cpu_count() or 2) + 1
    sandboxes = [make_sandbox(execution_timeout_ms=TIMEOUT_MS) for _ in range(n)]

    def busy(sb):
        with Timer() as t:
            try:
                sb.execute("while True:\n    pass")
            except eryx.TimeoutError as exc:
                return str(exc), t.elapsed
        return "no timeout", None

    try:
        with Timer() as total, ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(busy, sandboxes))
    finally:
        for sb in sandboxes:
            sb.close()
    for msg, _elapsed in results:
        assert msg == f"execution timed out after {TIMEOUT_MS} ms"
    assert total.elapsed <= DEADLINE + SLACK + 1.0


def test_timeouts_of_concurrent_runs_are_independent():
    """A per-run deadline: a long-timeout run is not cut short by a short one."""
    short = make_sandbox(execution_timeout_ms=TIMEOUT_MS)
    long = make_sandbox(execution_timeout_ms=5000)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            f_long = pool.submit(long.execute, "import time\ntime.sleep(0.8)\nprint('done')")
            f_short = pool.submit(short.execute, "while True:\n    pass")
            with pytest.raises(eryx.TimeoutError):
                f_short.result()
            assert f_long.result().stdout == "done"
    finally:
        short.close()
        long.close()


def test_except_exception_does_not_catch_the_interrupt_and_finally_runs():
    s = eryx.Session(execution_timeout_ms=TIMEOUT_MS)
    try:
        s.execute("caught = False\nfinalised = False")
        with pytest.raises(eryx.TimeoutError) as ei:
            run(s, """
                try:
                    while True:
                        pass
                except Exception:
                    caught = True
                finally:
                    finalised = True
            """)
        assert ei.value.state_lost is False
        assert str(ei.value) == f"execution timed out after {TIMEOUT_MS} ms"
        assert s.execute("print(caught, finalised)").stdout == "False True"
    finally:
        s.close()


def test_finally_runs_on_timeout_observed_through_shared_vfs():
    store = eryx.VfsStorage()
    sb = eryx.Sandbox(vfs=store, resource_limits=eryx.ResourceLimits(
        execution_timeout_ms=TIMEOUT_MS))
    try:
        with pytest.raises(eryx.TimeoutError):
            run(sb, """
                import time
                try:
                    time.sleep(10)
                finally:
                    with open('/data/finally.txt', 'w') as f:
                        f.write('ran')
            """)
        assert store.read_file("finally.txt") == b"ran"
    finally:
        sb.close()


def test_no_timeout_when_none():
    sb = make_sandbox(execution_timeout_ms=None)
    try:
        r = sb.execute("import time\ntime.sleep(0.4)\nprint('slept')")
        assert r.stdout == "slept"
    finally:
        sb.close()


# ---------------------------------------------------------------------------
# memory cap


def test_memory_error_can_be_caught_by_the_guest():
    sb = make_sandbox(max_memory_bytes=64 * MiB)
    try:
        r = run(sb, """
            try:
                x = bytearray(200 * 1024 * 1024)
                print('allocated')
            except MemoryError:
                print('caught')
            y = bytearray(1024)
            print(len(y))
        """)
        assert r.stdout == "caught\n1024"
        assert r.peak_memory_bytes <= 64 * MiB
    finally:
        sb.close()


def test_growth_is_refused_at_the_cap():
    sb = make_sandbox(max_memory_bytes=64 * MiB)
    try:
        r = run(sb, """
            chunks = []
            try:
                while True:
                    chunks.append(bytearray(1024 * 1024))
            except MemoryError:
                n = len(chunks)
                chunks.clear()
            print(0 < n < 64)
        """)
        assert r.stdout == "True"
        assert 32 * MiB < r.peak_memory_bytes <= 64 * MiB
    finally:
        sb.close()


def test_cap_is_rounded_down_to_whole_pages():
    cap = 64 * MiB + 1000
    sb = make_sandbox(max_memory_bytes=cap)
    try:
        r = run(sb, """
            chunks = []
            try:
                while True:
                    chunks.append(bytearray(256 * 1024))
            except MemoryError:
                chunks.clear()
        """)
        assert r.peak_memory_bytes <= 64 * MiB
        assert r.peak_memory_bytes % 65536 == 0
    finally:
        sb.close()


def test_uncaught_memory_error_raises_resource_limit_error():
    sb = make_sandbox(max_memory_bytes=64 * MiB)
    try:
        with pytest.raises(eryx.ResourceLimitError) as ei:
            sb.execute("x = bytearray(200 * 1024 * 1024)")
        exc = ei.value
        assert exc.limit == "max_memory_bytes"
        assert str(exc) == (
            "memory limit exceeded: the guest needed more than max_memory_bytes=67108864")
        assert isinstance(exc, eryx.EryxError)
        assert not isinstance(exc, eryx.ExecutionError)
        # the sandbox keeps working
        assert sb.execute("print('ok')").stdout == "ok"
    finally:
        sb.close()


def test_other_failure_after_refused_growth_is_resource_limit_error():
    sb = make_sandbox(max_memory_bytes=64 * MiB)
    try:
        with pytest.raises(eryx.ResourceLimitError) as ei:
            run(sb, """
                try:
                    x = bytearray(200 * 1024 * 1024)
                except MemoryError:
                    pass
                raise ValueError('later failure')
            """)
        assert ei.value.limit == "max_memory_bytes"
    finally:
        sb.close()


def test_failure_without_refused_growth_is_execution_error():
    sb = make_sandbox(max_memory_bytes=64 * MiB)
    try:
        with pytest.raises(eryx.ExecutionError):
            sb.execute("x = bytearray(1024)\nraise ValueError('plain')")
    finally:
        sb.close()


@pytest.mark.parametrize("cap", [1, 65536, 1024 * 1024])
def test_cap_too_small_to_start_sandbox(cap):
    with pytest.raises(eryx.InitializationError) as ei:
        sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(max_memory_bytes=cap))
        try:
            sb.execute("pass")
        finally:
            sb.close()
    m = re.fullmatch(
        rf"max_memory_bytes={cap} is below the (\d+) bytes the guest interpreter needs to start",
        str(ei.value))
    assert m, str(ei.value)
    assert int(m.group(1)) > cap


def test_cap_too_small_to_start_is_raised_at_construction():
    with pytest.raises(eryx.InitializationError):
        eryx.Sandbox(resource_limits=eryx.ResourceLimits(max_memory_bytes=1024 * 1024))


def test_cap_too_small_to_start_session():
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.Session(resource_limits=eryx.ResourceLimits(max_memory_bytes=1024 * 1024))
    assert re.fullmatch(
        r"max_memory_bytes=1048576 is below the \d+ bytes the guest interpreter needs to start",
        str(ei.value)), str(ei.value)


def test_no_memory_cap_allows_large_allocation():
    sb = make_sandbox(max_memory_bytes=None)
    try:
        r = sb.execute("x = bytearray(200 * 1024 * 1024)\nprint(len(x))")
        assert r.stdout == str(200 * MiB)
        assert r.peak_memory_bytes > 200 * MiB
    finally:
        sb.close()


# ---------------------------------------------------------------------------
# sessions after limit failures (§8.3)


def test_session_memory_error_keeps_state():
    s = eryx.Session(resource_limits=eryx.ResourceLimits(execution_timeout_ms=None,
                                                         max_memory_bytes=64 * MiB))
    try:
        s.execute("kept = 'yes'")
        with pytest.raises(eryx.ResourceLimitError) as ei:
            s.execute("big = bytearray(200 * 1024 * 1024)")
        assert ei.value.limit == "max_memory_bytes"
        assert ei.value.state_lost is False
        assert s.execute("print(kept)").stdout == "yes"
        assert s.execution_count == 3
    finally:
        s.close()


def test_session_hard_stop_loses_state():
    s = eryx.Session(execution_timeout_ms=TIMEOUT_MS)
    try:
        s.execute("a = 1")
        with Timer() as t, pytest.raises(eryx.TimeoutError) as ei:
            s.execute("b = 2\n" + HARD_LOOP)
        exc = ei.value
        assert exc.state_lost is True
        assert str(exc) == f"execution timed out after {TIMEOUT_MS} ms" + STATE_LOST_SUFFIX
        assert t.elapsed <= DEADLINE + 1.0 + SLACK
        assert s.execution_count == 0
        r = s.execute("print('a' in globals(), 'b' in globals())")
        assert r.stdout == "False False"
        assert s.execution_count == 1
    finally:
        s.close()


@pytest.mark.parametrize("code", [
    "sum(range(10 ** 15))",                      # a loop inside C, no bytecode boundary
    "import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')",  # catastrophic backtracking in C
])
def test_long_running_c_code_is_stopped_hard(code):
    sb = make_sandbox(execution_timeout_ms=TIMEOUT_MS)
    try:
        with Timer() as t, pytest.raises(eryx.TimeoutError) as ei:
            sb.execute(code)
        assert str(ei.value) == f"execution timed out after {TIMEOUT_MS} ms"
        assert t.elapsed <= DEADLINE + 1.0 + SLACK
        assert sb.execute("print('alive')").stdout == "alive"
    finally:
        sb.close()


def test_session_c_level_loop_loses_state():
    s = eryx.Session(execution_timeout_ms=TIMEOUT_MS)
    try:
        s.execute("a = 1")
        with pytest.raises(eryx.TimeoutError) as ei:
            s.execute("sum(range(10 ** 15))")
        assert ei.value.state_lost is True
        assert str(ei.value).endswith(STATE_LOST_SUFFIX)
        assert s.execute("print('a' in globals())").stdout == "False"
    finally:
        s.close()
