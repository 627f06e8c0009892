"""Input validation of first-slice arguments (API.md §12, §1.1)."""

import pytest

import eryx
from _eryxtest import MAX_INT64


@pytest.fixture(params=["sandbox", "session"])
def target(request):
    obj = eryx.Sandbox() if request.param == "sandbox" else eryx.Session()
    try:
        yield obj
    finally:
        obj.close()


# ---------------------------------------------------------------------------
# code


@pytest.mark.parametrize("bad,tname", [(b"print(1)", "bytes"), (None, "NoneType"),
                                       (123, "int"), (["print(1)"], "list"),
                                       (bytearray(b"x"), "bytearray")])
def test_code_must_be_str(target, bad, tname):
    with pytest.raises(TypeError) as ei:
        target.execute(bad)
    assert str(ei.value) == f"code must be str, not {tname}"


@pytest.mark.parametrize("code", ["\x00", "print(1)\x00", "x = '\x00'"])
def test_code_with_nul(target, code):
    with pytest.raises(ValueError) as ei:
        target.execute(code)
    assert str(ei.value) == "code contains NUL characters"


@pytest.mark.parametrize("code,pos", [("x = '\ud800'", 5), ("\udfff", 0),
                                      ("print('ok')\n# \udc80", 14)])
def test_code_with_lone_surrogate(target, code, pos):
    with pytest.raises(ValueError) as ei:
        target.execute(code)
    assert str(ei.value) == f"code is not valid Unicode: lone surrogate at position {pos}"


def test_surrogate_pairs_written_as_escapes_are_fine(target):
    r = target.execute("print('\\U0001F600' == '\U0001F600')")
    assert r.stdout == "True"


def test_rejected_code_does_not_count_in_session():
    s = eryx.Session()
    try:
        for bad in ("\x00", "'\ud800'"):
            with pytest.raises(ValueError):
                s.execute(bad)
        with pytest.raises(TypeError):
            s.execute(b"pass")
        assert s.execution_count == 0
        assert repr(s) == "Session(execution_count=0)"
    finally:
        s.close()


def test_closed_check_and_validation_on_closed_objects():
    sb = eryx.Sandbox()
    sb.close()
    with pytest.raises(ValueError, match="^Sandbox is closed$"):
        sb.execute("pass")
    s = eryx.Session()
    s.close()
    with pytest.raises(ValueError, match="^Session is closed$"):
        s.execute("pass")


# ---------------------------------------------------------------------------
# object arguments


@pytest.mark.parametrize("kwargs", [
    {"resource_limits": {"execution_timeout_ms": 5}},
    {"resource_limits": 5000},
    {"resource_limits": "ResourceLimits()"},
    {"network": True},
    {"network": {"allowed_hosts": []}},
    {"network": eryx.ResourceLimits()},
    {"vfs": "store"},
    {"vfs": eryx.NetConfig()},
])
@pytest.mark.parametrize("cls", ["Sandbox", "Session"])
def test_object_arguments_must_have_the_right_class(cls, kwargs):
    with pytest.raises(TypeError):
        getattr(eryx, cls)(**kwargs)


@pytest.mark.parametrize("cls", ["Sandbox", "Session"])
def test_none_means_default_for_object_arguments(cls):
    obj = getattr(eryx, cls)(resource_limits=None, network=None, vfs=None,
                             result_variable=None)
    try:
        assert obj.execute("result = 1").result == 1
    finally:
        obj.close()


@pytest.mark.parametrize("cls", ["Sandbox", "Session"])
def test_constructors_are_keyword_only(cls):
    with pytest.raises(TypeError):
        getattr(eryx, cls)(None)


# ---------------------------------------------------------------------------
# result_variable


@pytest.mark.parametrize("bad", ["", "1abc", "with space", "class", "None", "True",
                                 "a-b", "a.b", "lambda"])
@pytest.mark.parametrize("cls", ["Sandbox", "Session"])
def test_result_variable_must_be_a_non_keyword_identifier(cls, bad):
    with pytest.raises(ValueError) as ei:
        getattr(eryx, cls)(result_variable=bad)
    assert "result_variable" in str(ei.value)


@pytest.mark.parametrize("bad", [5, b"result", ["result"]])
def test_result_variable_type(bad):
    with pytest.raises(TypeError):
        eryx.Sandbox(result_variable=bad)


@pytest.mark.parametrize("good", ["out", "_private", "résultat", "match", "x1"])
def test_result_variable_accepts_identifiers(good):
    sb = eryx.Sandbox(result_variable=good)
    try:
        assert sb.execute(f"{good} = [1]").result == [1]
    finally:
        sb.close()


# ---------------------------------------------------------------------------
# Session integer arguments


@pytest.mark.parametrize("name", ["execution_timeout_ms", "max_fuel"])
def test_session_integer_arguments(name):
    with pytest.raises(ValueError) as ei:
        eryx.Session(**{name: 0})
    assert str(ei.value) == f"{name} must be between 1 and {MAX_INT64}, got 0"
    with pytest.raises(ValueError) as ei:
        eryx.Session(**{name: MAX_INT64 + 1})
    assert str(ei.value) == f"{name} must be between 1 and {MAX_INT64}, got {MAX_INT64 + 1}"
    for bad, tname in ((1.5, "float"), (True, "bool"), ("10", "str")):
        with pytest.raises(TypeError) as ei:
            eryx.Session(**{name: bad})
        assert str(ei.value) == f"{name} must be an int or None, not {tname}"


def test_max_fuel_contract_messages_on_session():
    with pytest.raises(TypeError) as ei:
        eryx.Session(max_fuel=2.0)
    assert str(ei.value) == "max_fuel must be an int or None, not float"
    with pytest.raises(ValueError) as ei:
        eryx.Session(max_fuel=0)
    assert str(ei.value) == "max_fuel must be between 1 and 9223372036854775807, got 0"


def test_session_execution_timeout_property_validation(session):
    with pytest.raises(ValueError) as ei:
        session.execution_timeout_ms = 0
    assert str(ei.value) == f"execution_timeout_ms must be between 1 and {MAX_INT64}, got 0"
    with pytest.raises(TypeError) as ei:
        session.execution_timeout_ms = 2.5
    assert str(ei.value) == "execution_timeout_ms must be an int or None, not float"
    with pytest.raises(TypeError):
        session.execution_timeout_ms = False
    assert session.execution_timeout_ms is None
    session.execution_timeout_ms = MAX_INT64
    assert session.execution_timeout_ms == MAX_INT64


def test_validation_happens_before_guest_work():
    """Bad arguments are reported even when another argument would fail later."""
    with pytest.raises(TypeError):
        eryx.Sandbox(resource_limits=eryx.ResourceLimits(max_memory_bytes=1), network="bad")
    with pytest.raises(TypeError):
        eryx.Session(resource_limits=eryx.ResourceLimits(max_memory_bytes=1), vfs=123)


# ---------------------------------------------------------------------------
# vfs_mount_path


@pytest.mark.parametrize("bad", ["/", "data", "./data", ""])
def test_vfs_mount_path_values(bad):
    store = eryx.VfsStorage()
    with pytest.raises(ValueError):
        eryx.Session(vfs=store, vfs_mount_path=bad)


@pytest.mark.parametrize("reserved", [
    "/usr/local/lib/python3.13", "/usr/local/lib/python3.13/json", "/usr/local/lib",
    "/usr/local", "/usr/local/bin", "/usr", "/usr/", "//usr/local", "/usr/./local/lib",
])
def test_vfs_mount_path_cannot_overlay_the_python_installation(reserved):
    """A mount at, above or below the guest prefix would shadow the stdlib."""
    with pytest.raises(ValueError, match="overlaps the guest's Python installation under "
                                         "'/usr/local'"):
        eryx.Session(vfs=eryx.VfsStorage(), vfs_mount_path=reserved)


def test_vfs_mount_path_next_to_the_python_installation():
    with eryx.Session(vfs=eryx.VfsStorage(), vfs_mount_path="/usr/share/data") as s:
        assert s.execute("import json; print(json.dumps([1]))").stdout == "[1]"


def test_vfs_mount_path_without_vfs():
    with pytest.raises(ValueError):
        eryx.Session(vfs_mount_path="/mnt/x")


def test_vfs_mount_path_type():
    with pytest.raises(TypeError):
        eryx.Session(vfs=eryx.VfsStorage(), vfs_mount_path=5)


def test_vfs_mount_path_nul():
    with pytest.raises(ValueError):
        eryx.Session(vfs=eryx.VfsStorage(), vfs_mount_path="/mnt/a\x00b")
