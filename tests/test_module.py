"""Module surface and exceptions (API.md §1.1-1.2)."""

import builtins
import importlib
import importlib.resources
import re

import pytest

import eryx

EXPECTED_ALL = [
    "CallbackRegistry", "CancelledError", "EryxError", "ExecuteResult",
    "ExecutionError", "GUEST_PYTHON_VERSION", "InitializationError", "MCPManager", "NetConfig",
    "ResourceLimitError", "ResourceLimits", "Sandbox", "SandboxFactory", "Session",
    "TimeoutError", "VfsStorage", "__version__", "ready_interpreters",
]

PUBLIC_CLASSES = [
    "CallbackRegistry", "CancelledError", "EryxError", "ExecuteResult",
    "ExecutionError", "InitializationError", "MCPManager", "NetConfig", "ResourceLimitError",
    "ResourceLimits", "Sandbox", "SandboxFactory", "Session", "TimeoutError",
    "VfsStorage",
]

# PEP 440 canonical public/local version regex (PEP 440, Appendix B).
PEP440 = re.compile(
    r"""^\s*v?(?:(?:(?P<epoch>[0-9]+)!)?(?P<release>[0-9]+(?:\.[0-9]+)*)
    (?P<pre>[-_\.]?(?P<pre_l>(a|b|c|rc|alpha|beta|pre|preview))[-_\.]?(?P<pre_n>[0-9]+)?)?
    (?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_\.]?(?P<post_l>post|rev|r)[-_\.]?(?P<post_n2>[0-9]+)?))?
    (?P<dev>[-_\.]?(?P<dev_l>dev)[-_\.]?(?P<dev_n>[0-9]+)?)?)
    (?:\+(?P<local>[a-z0-9]+(?:[-_\.][a-z0-9]+)*))?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)


def test_all_is_exact():
    assert isinstance(eryx.__all__, (list, tuple))
    assert sorted(eryx.__all__) == sorted(EXPECTED_ALL)
    assert len(eryx.__all__) == len(set(eryx.__all__))


def test_every_name_in_all_exists():
    for name in EXPECTED_ALL:
        assert hasattr(eryx, name), name
    ns = {}
    exec("from eryx import *", ns)
    assert set(ns) - {"__builtins__"} == set(EXPECTED_ALL)


def test_version_is_pep440():
    v = eryx.__version__
    assert isinstance(v, str)
    assert PEP440.match(v), v
    parts = v.split(".")
    assert len(parts) >= 2
    int(parts[0])
    int(parts[1])
    assert parts[0].isdigit() and parts[1].isdigit(), v


def test_guest_python_version_constant():
    assert isinstance(eryx.GUEST_PYTHON_VERSION, str)
    assert eryx.GUEST_PYTHON_VERSION == "3.13.5"


def test_guest_python_version_matches_guest(sandbox):
    r = sandbox.execute(
        "import platform, sys\n"
        "print(platform.python_version())\n"
        "print(sys.version_info >= (3, 12))\n"
    )
    assert r.stdout == f"{eryx.GUEST_PYTHON_VERSION}\nTrue"


@pytest.mark.parametrize("name", PUBLIC_CLASSES)
def test_public_class_module_is_eryx(name):
    cls = getattr(eryx, name)
    assert isinstance(cls, type)
    assert cls.__module__ == "eryx"
    assert cls.__name__ == name


def test_exception_hierarchy():
    assert issubclass(eryx.EryxError, Exception)
    assert not issubclass(eryx.EryxError, OSError)
    for name in ("ExecutionError", "InitializationError", "ResourceLimitError",
                 "CancelledError", "TimeoutError"):
        cls = getattr(eryx, name)
        assert issubclass(cls, eryx.EryxError), name
    # the four plain ones are not builtin TimeoutError / OSError
    for name in ("ExecutionError", "InitializationError", "ResourceLimitError",
                 "CancelledError"):
        cls = getattr(eryx, name)
        assert not issubclass(cls, OSError), name
    # the exceptions are distinct classes
    assert len({eryx.ExecutionError, eryx.InitializationError, eryx.ResourceLimitError,
                eryx.CancelledError, eryx.TimeoutError}) == 5


def test_timeout_error_bases_and_name():
    assert eryx.TimeoutError is not builtins.TimeoutError
    assert eryx.TimeoutError.__bases__ == (eryx.EryxError, builtins.TimeoutError)
    assert eryx.TimeoutError.__name__ == "TimeoutError"
    assert issubclass(eryx.TimeoutError, OSError)


def test_timeout_error_caught_by_builtin_except_clauses():
    with pytest.raises(TimeoutError):
        raise eryx.TimeoutError("execution timed out after 5 ms")
    try:
        raise eryx.TimeoutError("execution timed out after 5 ms")
    except OSError as exc:
        assert exc.errno is None
        assert exc.strerror is None
        assert str(exc) == "execution timed out after 5 ms"
        assert exc.args == ("execution timed out after 5 ms",)
    try:
        raise eryx.TimeoutError("x")
    except eryx.EryxError as exc:
        assert type(exc) is eryx.TimeoutError


@pytest.mark.parametrize("name", ["EryxError", "ExecutionError", "InitializationError",
                                  "ResourceLimitError", "CancelledError", "TimeoutError"])
def test_exceptions_carry_one_string_argument(name):
    cls = getattr(eryx, name)
    exc = cls("some message")
    assert str(exc) == "some message"
    assert exc.args == ("some message",)


def test_private_native_module_exists():
    mod = importlib.import_module("eryx._eryx")
    assert mod.__name__ == "eryx._eryx"


def test_package_is_typed():
    root = importlib.resources.files("eryx")
    assert (root / "py.typed").is_file()


def test_execute_result_cannot_be_constructed():
    with pytest.raises(TypeError):
        eryx.ExecuteResult()
    with pytest.raises(TypeError):
        eryx.ExecuteResult(stdout="x", stderr="")

