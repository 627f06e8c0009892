"""Errors of a run carry what the run printed, and every result and exception pickles
(API.md §1.1; issue 18 item 4)."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest

import eryx


def _limits(**kw):
    return eryx.ResourceLimits(**kw)


def test_timeout_error_carries_output():
    sb = eryx.Sandbox(resource_limits=_limits(execution_timeout_ms=300))
    with pytest.raises(eryx.TimeoutError) as ei:
        sb.execute("import sys\nprint('before')\nprint('warn', file=sys.stderr)\nwhile True: pass")
    assert ei.value.stdout == "before"
    assert ei.value.stderr == "warn"


def test_hard_stopped_timeout_carries_output():
    s = eryx.Session(execution_timeout_ms=300)
    with pytest.raises(eryx.TimeoutError) as ei:
        s.execute("print('partial')\nwhile True:\n    try:\n        while True: pass\n    except BaseException: pass")
    assert ei.value.state_lost
    assert ei.value.stdout == "partial"


def test_resource_limit_errors_carry_output():
    sb = eryx.Sandbox(resource_limits=_limits(max_memory_bytes=64 << 20))
    with pytest.raises(eryx.ResourceLimitError) as ei:
        sb.execute("print('allocating')\nx = bytearray(10**9)")
    assert ei.value.limit == "max_memory_bytes"
    assert ei.value.stdout == "allocating"
    sb = eryx.Sandbox(resource_limits=_limits(max_fuel=5_000_000))
    with pytest.raises(eryx.ResourceLimitError) as ei:
        sb.execute("print('spinning')\nwhile True: pass")
    assert ei.value.limit == "max_fuel"
    assert ei.value.stdout == "spinning"


def test_cancelled_error_carries_output():
    sb = eryx.Sandbox()
    threading.Timer(0.3, sb.close).start()
    with pytest.raises(eryx.CancelledError) as ei:
        sb.execute("print('started', flush=True)\nwhile True: pass")
    assert ei.value.stdout == "started"


def test_execution_error_stderr_is_the_traceback():
    with pytest.raises(eryx.ExecutionError) as ei:
        eryx.Sandbox().execute("print('x')\n1/0")
    assert ei.value.stdout == "x"
    assert ei.value.stderr == str(ei.value)
    assert ei.value.stderr.endswith("ZeroDivisionError: division by zero")


def test_error_output_is_scrubbed():
    sb = eryx.Sandbox(secrets={"KEY": {"value": "s3cret"}},
                      resource_limits=_limits(execution_timeout_ms=300))
    with pytest.raises(eryx.TimeoutError) as ei:
        sb.execute("import os\nprint(os.environ['KEY'])\nwhile True: pass")
    assert ei.value.stdout == "[REDACTED]"


def test_errors_not_raised_by_a_run_have_empty_output():
    e = eryx.EryxError("m")
    assert (e.stdout, e.stderr, e.state_lost) == ("", "", False)


EXCEPTIONS = [
    eryx.EryxError("m", state_lost=True, stdout="o", stderr="e"),
    eryx.ExecutionError("tb", exc_type="ValueError", stdout="o", stderr="tb", state_lost=True),
    eryx.InitializationError("init"),
    eryx.ResourceLimitError("mem", limit="max_memory_bytes", state_lost=True, stdout="o"),
    eryx.CancelledError("closed", stdout="o", stderr="e"),
    eryx.TimeoutError("execution timed out after 5 ms", state_lost=True, stdout="o", stderr="e"),
]


def _fields(e):
    return (type(e), str(e), e.args, dict(vars(e)))


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("op", [copy.copy, copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e)),
                                lambda e: pickle.loads(pickle.dumps(e, protocol=0))])
def test_exceptions_round_trip_with_every_field(exc, op):
    assert _fields(op(exc)) == _fields(exc)


def _run_in_worker(code):
    import eryx

    return eryx.Sandbox(resource_limits=eryx.ResourceLimits(execution_timeout_ms=300)).execute(code)


def test_results_and_errors_cross_process_boundaries():
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        r = pool.submit(_run_in_worker, "print('hi')\nresult = [1, 2]").result(timeout=120)
        assert (r.stdout, r.result) == ("hi", [1, 2])
        with pytest.raises(eryx.TimeoutError) as ei:
            pool.submit(_run_in_worker, "print('slow')\nwhile True: pass").result(timeout=120)
        assert ei.value.stdout == "slow"
        assert str(ei.value) == "execution timed out after 300 ms"
