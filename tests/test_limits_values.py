"""ResourceLimits as a value object (API.md §2, §12)."""

import copy
import pickle

import pytest

import eryx
from _eryxtest import DEFAULT_LIMITS_REPR, MAX_INT64, MAX_UINT32

FIELDS = ["execution_timeout_ms", "callback_timeout_ms", "max_memory_bytes",
          "max_callback_invocations", "max_fuel", "max_vfs_bytes"]

DEFAULTS = {
    "execution_timeout_ms": 30000,
    "callback_timeout_ms": 10000,
    "max_memory_bytes": 134217728,
    "max_callback_invocations": 1000,
    "max_fuel": None,
    "max_vfs_bytes": None,
}

# field -> (min, max)
RANGES = {
    "execution_timeout_ms": (1, MAX_INT64),
    "callback_timeout_ms": (1, MAX_INT64),
    "max_memory_bytes": (1, MAX_INT64),
    "max_callback_invocations": (0, MAX_UINT32),
    "max_fuel": (1, MAX_INT64),
    "max_vfs_bytes": (0, MAX_INT64),
}

CUSTOM = {
    "execution_timeout_ms": 1234,
    "callback_timeout_ms": 567,
    "max_memory_bytes": 64 * 1024 * 1024,
    "max_callback_invocations": 7,
    "max_fuel": 10**9,
    "max_vfs_bytes": 4096,
}


def test_defaults():
    lim = eryx.ResourceLimits()
    for name, value in DEFAULTS.items():
        assert getattr(lim, name) == value, name
        assert type(getattr(lim, name)) is type(value), name


def test_default_repr_and_str_exact():
    lim = eryx.ResourceLimits()
    assert repr(lim) == DEFAULT_LIMITS_REPR
    assert str(lim) == DEFAULT_LIMITS_REPR


def test_custom_values_and_repr():
    lim = eryx.ResourceLimits(**CUSTOM)
    for name, value in CUSTOM.items():
        assert getattr(lim, name) == value
    assert repr(lim) == (
        "ResourceLimits(execution_timeout_ms=1234, callback_timeout_ms=567, "
        "max_memory_bytes=67108864, max_callback_invocations=7, max_fuel=1000000000, "
        "max_vfs_bytes=4096)"
    )


def test_unlimited_sets_all_fields_to_none():
    lim = eryx.ResourceLimits.unlimited()
    assert isinstance(lim, eryx.ResourceLimits)
    for name in FIELDS:
        assert getattr(lim, name) is None, name
    assert repr(lim) == (
        "ResourceLimits(execution_timeout_ms=None, callback_timeout_ms=None, "
        "max_memory_bytes=None, max_callback_invocations=None, max_fuel=None, "
        "max_vfs_bytes=None)"
    )
    # a staticmethod: callable through an instance as well, returning a new object
    other = eryx.ResourceLimits().unlimited()
    assert other == lim
    assert other is not lim


@pytest.mark.parametrize("name", FIELDS)
def test_none_is_accepted_for_every_field(name):
    lim = eryx.ResourceLimits(**{name: None})
    assert getattr(lim, name) is None
    lim = eryx.ResourceLimits()
    setattr(lim, name, None)
    assert getattr(lim, name) is None


@pytest.mark.parametrize("name", FIELDS)
def test_setters_round_trip(name):
    lim = eryx.ResourceLimits()
    setattr(lim, name, CUSTOM[name])
    assert getattr(lim, name) == CUSTOM[name]
    expected = dict(DEFAULTS, **{name: CUSTOM[name]})
    assert lim == eryx.ResourceLimits(**expected)


@pytest.mark.parametrize("name", FIELDS)
def test_range_bounds_accepted(name):
    lo, hi = RANGES[name]
    assert getattr(eryx.ResourceLimits(**{name: lo}), name) == lo
    assert getattr(eryx.ResourceLimits(**{name: hi}), name) == hi


@pytest.mark.parametrize("name", FIELDS)
def test_range_violations_raise_value_error(name):
    lo, hi = RANGES[name]
    for bad in (lo - 1, hi + 1, -(2**70)):
        expected = f"{name} must be between {lo} and {hi}, got {bad}"
        with pytest.raises(ValueError) as ei:
            eryx.ResourceLimits(**{name: bad})
        assert str(ei.value) == expected
        lim = eryx.ResourceLimits()
        with pytest.raises(ValueError) as ei:
            setattr(lim, name, bad)
        assert str(ei.value) == expected
        assert getattr(lim, name) == DEFAULTS[name]


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("bad,tname", [(True, "bool"), (False, "bool"), (1.5, "float"),
                                       (1000.0, "float"), ("1000", "str")])
def test_wrong_types_raise_type_error(name, bad, tname):
    expected = f"{name} must be an int or None, not {tname}"
    with pytest.raises(TypeError) as ei:
        eryx.ResourceLimits(**{name: bad})
    assert str(ei.value) == expected
    lim = eryx.ResourceLimits()
    with pytest.raises(TypeError) as ei:
        setattr(lim, name, bad)
    assert str(ei.value) == expected


def test_max_fuel_messages_from_contract():
    with pytest.raises(TypeError, match=r"^max_fuel must be an int or None, not float$"):
        eryx.ResourceLimits(max_fuel=1.0)
    with pytest.raises(ValueError,
                       match=r"^max_fuel must be between 1 and 9223372036854775807, got 0$"):
        eryx.ResourceLimits(max_fuel=0)


def test_keyword_only_and_unknown_arguments():
    with pytest.raises(TypeError):
        eryx.ResourceLimits(1000)
    with pytest.raises(TypeError):
        eryx.ResourceLimits(timeout_ms=1000)


def test_equality_compares_all_fields():
    assert eryx.ResourceLimits() == eryx.ResourceLimits()
    assert eryx.ResourceLimits(**CUSTOM) == eryx.ResourceLimits(**CUSTOM)
    assert not (eryx.ResourceLimits() != eryx.ResourceLimits())
    for name in FIELDS:
        changed = eryx.ResourceLimits(**{name: CUSTOM[name]})
        assert changed != eryx.ResourceLimits(), name
        assert not (changed == eryx.ResourceLimits()), name
    assert eryx.ResourceLimits() != object()
    assert eryx.ResourceLimits() != repr(eryx.ResourceLimits())


def test_unhashable():
    with pytest.raises(TypeError):
        hash(eryx.ResourceLimits())
    with pytest.raises(TypeError):
        {eryx.ResourceLimits()}


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy,
                                    lambda o: pickle.loads(pickle.dumps(o)),
                                    lambda o: pickle.loads(pickle.dumps(o, protocol=0))])
def test_copy_deepcopy_pickle(copier):
    lim = eryx.ResourceLimits(**CUSTOM)
    dup = copier(lim)
    assert type(dup) is eryx.ResourceLimits
    assert dup == lim
    assert dup is not lim
    dup.max_fuel = 5
    assert lim.max_fuel == CUSTOM["max_fuel"]
    assert copier(eryx.ResourceLimits.unlimited()) == eryx.ResourceLimits.unlimited()


def test_sandbox_takes_a_copy():
    lim = eryx.ResourceLimits(execution_timeout_ms=4321)
    sb = eryx.Sandbox(resource_limits=lim)
    try:
        lim.execution_timeout_ms = 1
        lim.max_memory_bytes = 1
        assert "execution_timeout_ms=4321" in repr(sb)
        assert "max_memory_bytes=134217728" in repr(sb)
        assert sb.execute("print(1)").stdout == "1"
    finally:
        sb.close()


def test_session_takes_a_copy_and_exposes_a_read_only_copy():
    lim = eryx.ResourceLimits(execution_timeout_ms=4321, max_vfs_bytes=1000)
    s = eryx.Session(resource_limits=lim)
    try:
        lim.execution_timeout_ms = 1
        assert s.resource_limits == eryx.ResourceLimits(execution_timeout_ms=4321,
                                                        max_vfs_bytes=1000)
        got = s.resource_limits
        got.execution_timeout_ms = 99
        assert s.resource_limits.execution_timeout_ms == 4321
        assert s.execution_timeout_ms == 4321
        with pytest.raises(AttributeError):
            s.resource_limits = eryx.ResourceLimits()
    finally:
        s.close()
