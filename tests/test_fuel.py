"""LATER SLICE: fuel metering (API.md §2.1 fuel, §8.2 fuel_limit, §8.3).

Enable with ERYX_TEST_LATER=fuel (see conftest.py).
"""

import pytest

import eryx
from _eryxtest import MAX_INT64, STATE_LOST_SUFFIX, make_sandbox

LOOP = "x = 0\nfor i in range(20000):\n    x += i\nprint(x)"


def test_fuel_consumed_is_reported_and_deterministic():
    with make_sandbox(max_fuel=MAX_INT64) as sb:
        a = sb.execute(LOOP)
        b = sb.execute(LOOP)
    assert isinstance(a.fuel_consumed, int)
    assert a.fuel_consumed > 0
    assert a.fuel_consumed == b.fuel_consumed
    assert "fuel_consumed=" + str(a.fuel_consumed) in repr(a)


def test_more_work_costs_more_fuel():
    with make_sandbox(max_fuel=MAX_INT64) as sb:
        small = sb.execute("x = sum(range(100))").fuel_consumed
        big = sb.execute("x = sum(range(100000))").fuel_consumed
    assert big > small


def test_waiting_costs_no_fuel():
    with make_sandbox(max_fuel=MAX_INT64) as sb:
        short = sb.execute("import time\ntime.sleep(0)").fuel_consumed
        long = sb.execute("import time\ntime.sleep(0.3)").fuel_consumed
    assert long < short * 1.5 + 10000


def test_out_of_fuel():
    # the timeout only keeps the test from hanging where fuel is not metered
    # (a run is charged from its request: compiling `print(1)` costs about 250 000 units)
    with make_sandbox(max_fuel=1_000_000, execution_timeout_ms=5000) as sb:
        with pytest.raises(eryx.ResourceLimitError) as ei:
            sb.execute("while True:\n    pass")
        assert ei.value.limit == "max_fuel"
        assert str(ei.value) == "execution ran out of fuel (max_fuel=1000000)"
        # each run gets a fresh budget
        assert sb.execute("print(1)").stdout == "1"


def test_no_metering_by_default(sandbox):
    assert sandbox.execute("x = 1").fuel_consumed is None


def test_session_fuel_limit_and_reset_on_exhaustion():
    # the timeout only keeps the test from hanging where fuel is not metered
    with eryx.Session(max_fuel=MAX_INT64, execution_timeout_ms=5000) as s:
        assert s.fuel_limit == MAX_INT64
        s.execute("a = 1")
        s.fuel_limit = 100000
        assert s.fuel_limit == 100000
        with pytest.raises(eryx.ResourceLimitError) as ei:
            s.execute("while True:\n    pass")
        assert ei.value.state_lost is True
        assert str(ei.value) == "execution ran out of fuel (max_fuel=100000)" + STATE_LOST_SUFFIX
        assert s.execution_count == 0
        s.fuel_limit = None
        assert s.execute("print('a' in globals())").stdout == "False"
        assert s.execute("x = 1").fuel_consumed is None
