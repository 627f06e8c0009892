"""Tests of the native bridge itself, eryx._eryx (cbridge/, docs/BRIDGE.md), as installed.

Tests that need parts of the engine are gated by the part they need:

- ``vfs``: goeryx.VFS (vfs_* functions on a real store);
- ``runtime``: goeryx.OpenRuntime and a built guest runtime (sandboxes, sessions, hooks);
- ``callbacks``: host callbacks (``on_callback``), on top of ``runtime``;
- ``fuel``: fuel metering (``max_fuel``), on top of ``runtime``.

A part runs when it is in ``ENABLED_PARTS`` below (the lead adds it when the engine part lands)
or in the environment variable ``ERYX_BRIDGE_TESTS`` (comma-separated, or ``all``). The
runtime is read from ``$GOERYX_RUNTIME_DIR``, else from the installed package's ``_runtime``.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import eryx._eryx as _eryx

#: Engine parts whose tests run by default.
ENABLED_PARTS: set[str] = {"vfs", "runtime", "callbacks", "fuel"}

_env_parts = {p.strip() for p in os.environ.get("ERYX_BRIDGE_TESTS", "").split(",") if p.strip()}


def _enabled(part: str) -> bool:
    return part in ENABLED_PARTS or part in _env_parts or "all" in _env_parts


needs_vfs = pytest.mark.skipif(not _enabled("vfs"), reason="engine part 'vfs' not enabled")
needs_runtime = pytest.mark.skipif(
    not _enabled("runtime"), reason="engine part 'runtime' not enabled"
)
needs_callbacks = pytest.mark.skipif(
    not _enabled("callbacks"), reason="engine part 'callbacks' not enabled"
)
needs_fuel = pytest.mark.skipif(not _enabled("fuel"), reason="engine part 'fuel' not enabled")

INVALID = "invalid or closed eryx handle"
KINDS = {
    "eryx", "execution", "initialization", "resource_limit", "timeout", "cancelled",
    "value", "type", "os",
}
DETAIL_KEYS = {"exc_type", "stdout", "stderr", "limit", "state_lost", "errno"}
FUNCTIONS = {
    "open_runtime", "guest_python_version", "ready_stats", "vfs_new", "vfs_read", "vfs_write", "vfs_list",
    "vfs_remove", "vfs_stats", "sandbox_new", "sandbox_execute", "sandbox_close", "session_new",
    "session_execute", "session_reset", "session_clear_state", "session_snapshot",
    "session_restore", "session_set_limits", "session_execution_count", "session_close",
    "handle_free", "token_new", "token_cancel", "factory_new", "factory_load",
    "factory_from_bytes", "factory_to_bytes", "factory_size", "factory_save", "factory_imports",
    "factory_close",
}
BIG_HANDLE = 2**62


def runtime_dir() -> str:
    explicit = os.environ.get("GOERYX_RUNTIME_DIR")
    if explicit:
        return explicit
    import eryx

    return str(Path(eryx.__file__).resolve().parent / "_runtime")


def cache_dir() -> str:
    default = os.path.join(tempfile.gettempdir(), "goeryx-bridge-tests")
    return os.environ.get("GOERYX_CACHE_DIR") or default


def config(**extra) -> bytes:
    """A complete engine configuration (goeryx.Config) as JSON."""
    cfg = {
        "limits": {
            "execution_timeout_ms": 30000,
            "callback_timeout_ms": 10000,
            "max_memory_bytes": 128 << 20,
            "max_callback_invocations": 1000,
            "max_fuel": None,
            "max_vfs_bytes": None,
        },
        "scrub": {"stdout": False, "stderr": False, "result": False, "files": False},
    }
    limits = extra.pop("limits", {})
    cfg["limits"].update(limits)
    cfg.update(extra)
    return json.dumps(cfg).encode()


def busy(seconds: float) -> str:
    """Guest code that computes for the given wall-clock time."""
    return f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def echo_callbacks(*names: str) -> list[dict]:
    return [{"name": n, "description": f"{n} callback"} for n in names or ("echo",)]


def run_python(code: str) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (open_runtime is once per process)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir(),
    )


def assert_error_shape(exc: BaseException) -> tuple[str, str, dict]:
    assert type(exc) is _eryx.Error
    kind, message, details = exc.args
    assert kind in KINDS
    assert isinstance(message, str)
    assert isinstance(details, dict) and set(details) == DETAIL_KEYS
    assert details["exc_type"] is None or isinstance(details["exc_type"], str)
    assert isinstance(details["stdout"], str)
    assert isinstance(details["stderr"], str)
    assert details["limit"] is None or isinstance(details["limit"], str)
    assert isinstance(details["state_lost"], bool)
    assert details["errno"] is None or type(details["errno"]) is int
    return kind, message, details


def wait_refcount(obj, want: int, timeout: float = 5.0) -> int:
    """Waits until sys.getrefcount(obj), as seen by the caller, is want; returns the last count."""
    deadline = time.monotonic() + timeout
    while True:
        n = sys.getrefcount(obj) - 1  # not counting this function's own reference
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# The module and its Error class (no engine needed)


def test_module_shape():
    assert _eryx.__name__ == "eryx._eryx"
    assert _eryx.__doc__
    public = {n for n in dir(_eryx) if not n.startswith("_")}
    assert public == FUNCTIONS | {"Error"}
    for name in FUNCTIONS:
        fn = getattr(_eryx, name)
        assert callable(fn) and fn.__doc__, name
        assert fn.__text_signature__.startswith("($module"), name


def test_wheel_is_abi3():
    assert Path(_eryx.__file__).name.endswith(".abi3.so")


def test_extension_uses_only_the_3_11_stable_abi():
    # abi3info (a dependency of abi3audit) is generated from CPython's Misc/stable_abi.toml.
    abi3info = pytest.importorskip("abi3info")
    from abi3info.models import PyVersion

    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) not found")

    def symbols(*flags: str) -> set[str]:
        out = subprocess.run([nm, "-D", *flags, _eryx.__file__], capture_output=True, text=True,
                             check=True).stdout
        return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}

    assert "PyInit__eryx" in symbols("--defined-only")
    imported = {n for n in symbols("--undefined-only") if n.startswith(("Py", "_Py"))}
    stable = {sym.name: item for table in (abi3info.FUNCTIONS, abi3info.DATAS)
              for sym, item in table.items()}
    bad = sorted(n for n in imported if n not in stable or stable[n].added > PyVersion(3, 11))
    assert imported and not bad


def test_error_class():
    assert issubclass(_eryx.Error, Exception)
    assert _eryx.Error.__module__ == "eryx._eryx"
    assert _eryx.Error.__name__ == "Error"
    assert _eryx.Error.__doc__
    details = {"exc_type": None, "stdout": "", "stderr": "", "limit": None, "state_lost": False, "errno": None}
    exc = _eryx.Error("value", "bad", details)
    assert exc.args == ("value", "bad", details)
    assert_error_shape(exc)


def test_engine_error_shape():
    # An engine error crossing the bridge; its kind depends on how far the engine is.
    proc = run_python(
        """
        import json, eryx._eryx as m
        try:
            m.open_runtime("/nonexistent/goeryx-runtime", "")
        except m.Error as exc:
            print(json.dumps([type(exc).__name__, exc.args]))
        """
    )
    assert proc.returncode == 0, proc.stderr
    name, (kind, message, details) = json.loads(proc.stdout)
    assert name == "Error"
    assert_error_shape(_eryx.Error(kind, message, details))
    assert message


# ---------------------------------------------------------------------------------------------
# Handles (no engine needed beyond NewVFS)

HANDLE_CALLS = {
    "guest_python_version": lambda h: _eryx.guest_python_version(h),
    "ready_stats": lambda h: _eryx.ready_stats(h),
    "vfs_read": lambda h: _eryx.vfs_read(h, "/a"),
    "vfs_write": lambda h: _eryx.vfs_write(h, "/a", b"x"),
    "vfs_list": lambda h: _eryx.vfs_list(h, "/"),
    "vfs_remove": lambda h: _eryx.vfs_remove(h, "/a"),
    "vfs_stats": lambda h: _eryx.vfs_stats(h),
    "sandbox_new(rt)": lambda h: _eryx.sandbox_new(h, config(), 0, None, None),
    "sandbox_execute": lambda h: _eryx.sandbox_execute(h, "pass"),
    "sandbox_close": lambda h: _eryx.sandbox_close(h),
    "session_new(rt)": lambda h: _eryx.session_new(h, config(), 0, None, None),
    "session_execute": lambda h: _eryx.session_execute(h, "pass"),
    "session_reset": lambda h: _eryx.session_reset(h),
    "session_clear_state": lambda h: _eryx.session_clear_state(h),
    "session_snapshot": lambda h: _eryx.session_snapshot(h),
    "session_restore": lambda h: _eryx.session_restore(h, b"x"),
    "session_set_limits": lambda h: _eryx.session_set_limits(h, None, None),
    "session_execution_count": lambda h: _eryx.session_execution_count(h),
    "session_close": lambda h: _eryx.session_close(h),
    "handle_free": lambda h: _eryx.handle_free(h),
    "factory_new(rt)": lambda h: _eryx.factory_new(h, "{}"),
    "factory_load(rt)": lambda h: _eryx.factory_load(h, '{"path": "/nonexistent"}'),
    "factory_from_bytes(rt)": lambda h: _eryx.factory_from_bytes(h, b"x", "{}"),
    "factory_to_bytes": lambda h: _eryx.factory_to_bytes(h),
    "factory_size": lambda h: _eryx.factory_size(h),
    "factory_save": lambda h: _eryx.factory_save(h, "/nonexistent/f"),
    "factory_imports": lambda h: _eryx.factory_imports(h),
    "factory_close": lambda h: _eryx.factory_close(h),
}

# Calls that take a VFS handle (so a VFS handle is of the right kind for them).
VFS_CALLS = {"vfs_read", "vfs_write", "vfs_list", "vfs_remove", "vfs_stats", "handle_free"}


@pytest.mark.parametrize("call", sorted(HANDLE_CALLS))
@pytest.mark.parametrize("handle", [0, -1, BIG_HANDLE])
def test_unknown_handle(call, handle):
    with pytest.raises(ValueError) as info:
        HANDLE_CALLS[call](handle)
    assert str(info.value) == INVALID
    assert type(info.value) is ValueError


@pytest.mark.parametrize("call", sorted(set(HANDLE_CALLS) - VFS_CALLS))
def test_wrong_kind_of_handle(call):
    h = _eryx.vfs_new(1 << 20)
    try:
        with pytest.raises(ValueError, match=INVALID):
            HANDLE_CALLS[call](h)
    finally:
        _eryx.handle_free(h)


def test_bad_vfs_handle_in_sandbox_new():
    # The vfs argument is checked too (the runtime handle is invalid here as well).
    h = _eryx.vfs_new(1 << 20)
    _eryx.handle_free(h)
    with pytest.raises(ValueError, match=INVALID):
        _eryx.sandbox_new(BIG_HANDLE, config(), h, None, None)


def test_double_free():
    h = _eryx.vfs_new(1 << 20)
    assert _eryx.handle_free(h) is None
    with pytest.raises(ValueError, match=INVALID):
        _eryx.handle_free(h)
    with pytest.raises(ValueError, match=INVALID):
        _eryx.vfs_stats(h)


def test_handles_are_never_reused():
    seen = []
    for _ in range(50):
        h = _eryx.vfs_new(1024)
        assert type(h) is int and h >= 1
        seen.append(h)
        _eryx.handle_free(h)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_handles_from_many_threads_are_distinct():
    out: list[int] = []
    lock = threading.Lock()

    def work():
        hs = [_eryx.vfs_new(1024) for _ in range(200)]
        with lock:
            out.extend(hs)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == len(out) == 800
    for h in out:
        _eryx.handle_free(h)


def test_vfs_stats_shape():
    h = _eryx.vfs_new(4096)
    try:
        stats = _eryx.vfs_stats(h)
        assert type(stats) is tuple and len(stats) == 3
        assert all(type(x) is int for x in stats)
    finally:
        _eryx.handle_free(h)


# ---------------------------------------------------------------------------------------------
# Argument types (checked by the bridge: TypeError, never a crash)


@pytest.mark.parametrize(
    "call",
    [
        lambda: _eryx.vfs_new("1024"),
        lambda: _eryx.vfs_new(1.5),
        lambda: _eryx.handle_free("1"),
        lambda: _eryx.handle_free(None),
        lambda: _eryx.vfs_read(1, b"/path"),
        lambda: _eryx.vfs_read("1", "/path"),
        lambda: _eryx.vfs_write(1, "/a", "text is not bytes-like"),
        lambda: _eryx.vfs_write(1, "/a", 5),
        lambda: _eryx.sandbox_new(1, "config as str", 0, None, None),
        lambda: _eryx.sandbox_new(1, config(), 0, 5, None),
        lambda: _eryx.sandbox_new(1, config(), 0, None, "not callable"),
        lambda: _eryx.sandbox_new(1, config(), None, None, None),
        lambda: _eryx.session_new(1, config(), 0, None, object()),
        lambda: _eryx.sandbox_execute(1, b"code"),
        lambda: _eryx.session_restore(1, "text"),
        lambda: _eryx.session_set_limits(1, "10", None),
        lambda: _eryx.session_set_limits(1, None, 1.0),
        lambda: _eryx.open_runtime(b"/dir", "/cache"),
    ],
)
def test_argument_type_errors(call):
    with pytest.raises(TypeError):
        call()


def test_argument_count():
    with pytest.raises(TypeError):
        _eryx.vfs_read(1)
    with pytest.raises(TypeError):
        _eryx.sandbox_new(1, config(), 0, None)
    with pytest.raises(TypeError):
        _eryx.vfs_stats()


def test_integer_overflow():
    with pytest.raises(OverflowError):
        _eryx.handle_free(2**64)
    with pytest.raises(OverflowError):
        _eryx.session_set_limits(1, 2**63, None)


def test_hook_references_released_when_creation_fails():
    def on_output(stream, chunk):
        pass

    def on_callback(index, args_json, timeout_ms, run_token):
        return ("ok", "null")

    gc.collect()
    base_out, base_cb = sys.getrefcount(on_output), sys.getrefcount(on_callback)
    for _ in range(100):
        with pytest.raises(ValueError):
            _eryx.sandbox_new(BIG_HANDLE, config(), 0, on_output, on_callback)
        with pytest.raises(ValueError):
            _eryx.session_new(BIG_HANDLE, config(), 0, on_output, on_callback)
    assert sys.getrefcount(on_output) == base_out
    assert sys.getrefcount(on_callback) == base_cb


def test_buffer_released_after_call():
    data = bytearray(b"payload")
    for _ in range(10):
        with pytest.raises(ValueError):
            _eryx.vfs_write(BIG_HANDLE, "/a", data)
        with pytest.raises(ValueError):
            _eryx.session_restore(BIG_HANDLE, memoryview(data))
    data.extend(b" grows")  # a leaked buffer export would make this raise BufferError
    assert data == b"payload grows"


# ---------------------------------------------------------------------------------------------
# VFS (engine part "vfs")


@pytest.fixture
def vfs():
    h = _eryx.vfs_new(1 << 20)
    yield h
    _eryx.handle_free(h)


@needs_vfs
def test_vfs_roundtrip(vfs):
    assert _eryx.vfs_write(vfs, "/dir/a.bin", b"\x00\x01binary\xff") is None
    assert _eryx.vfs_read(vfs, "/dir/a.bin") == b"\x00\x01binary\xff"
    assert type(_eryx.vfs_read(vfs, "/dir/a.bin")) is bytes


@needs_vfs
@pytest.mark.parametrize("make", [bytes, bytearray, lambda b: memoryview(bytearray(b))])
def test_vfs_write_accepts_bytes_like(vfs, make):
    _eryx.vfs_write(vfs, "/b.txt", make(b"bytes-like"))
    assert _eryx.vfs_read(vfs, "/b.txt") == b"bytes-like"


@needs_vfs
def test_vfs_empty_and_large_files(vfs):
    _eryx.vfs_write(vfs, "/empty", b"")
    assert _eryx.vfs_read(vfs, "/empty") == b""
    big = os.urandom(900_000)
    _eryx.vfs_write(vfs, "/big", big)
    assert _eryx.vfs_read(vfs, "/big") == big


@needs_vfs
def test_vfs_non_ascii_paths(vfs):
    _eryx.vfs_write(vfs, "/données/ünï.txt", "héllo".encode())
    assert _eryx.vfs_read(vfs, "/données/ünï.txt").decode() == "héllo"
    assert "ünï.txt" in _eryx.vfs_list(vfs, "/données")


@needs_vfs
def test_vfs_list_remove_stats(vfs):
    _eryx.vfs_write(vfs, "/d/x", b"12345")
    _eryx.vfs_write(vfs, "/d/sub/y", b"678")
    listing = _eryx.vfs_list(vfs, "/d")
    assert type(listing) is list and listing == ["sub/", "x"]
    files, used, cap = _eryx.vfs_stats(vfs)
    assert (files, used, cap) == (2, 8, 1 << 20)
    assert _eryx.vfs_remove(vfs, "/d/x") is None
    assert _eryx.vfs_list(vfs, "/d") == ["sub/"]
    assert _eryx.vfs_stats(vfs)[:2] == (1, 3)


@needs_vfs
def test_vfs_missing_file_is_os_error(vfs):
    with pytest.raises(_eryx.Error) as info:
        _eryx.vfs_read(vfs, "/missing")
    kind, _message, details = assert_error_shape(info.value)
    assert kind == "os"
    assert details["errno"] == errno.ENOENT


@needs_vfs
def test_vfs_full_is_enospc():
    h = _eryx.vfs_new(100)
    try:
        with pytest.raises(_eryx.Error) as info:
            _eryx.vfs_write(h, "/big", b"x" * 101)
        kind, _message, details = assert_error_shape(info.value)
        assert kind == "os" and details["errno"] == errno.ENOSPC
    finally:
        _eryx.handle_free(h)


# ---------------------------------------------------------------------------------------------
# Runtime, sandboxes and sessions (engine part "runtime")


@pytest.fixture(scope="module")
def rt():
    if not _enabled("runtime"):
        pytest.skip("engine part 'runtime' not enabled")
    return _eryx.open_runtime(runtime_dir(), cache_dir())


class Recorder:
    """on_output / on_callback that record what they were called with, and on which thread."""

    def __init__(self, reply=None):
        self.output: list[tuple[int, str]] = []
        self.output_threads: set[int] = set()
        self.calls: list[tuple[int, str, int]] = []
        self.call_threads: set[int] = set()
        self.reply = reply or (lambda index, args_json, timeout_ms: ("ok", args_json))

    def on_output(self, stream, chunk):
        self.output_threads.add(threading.get_ident())
        self.output.append((stream, chunk))

    def on_callback(self, index, args_json, timeout_ms, run_token):
        self.call_threads.add(threading.get_ident())
        self.calls.append((index, args_json, timeout_ms))
        return self.reply(index, args_json, timeout_ms)


@pytest.fixture
def sandbox(rt):
    handles = []

    def make(cfg=None, on_output=None, on_callback=None, vfs=0):
        h = _eryx.sandbox_new(rt, cfg or config(), vfs, on_output, on_callback)
        handles.append(h)
        return h

    yield make
    for h in handles:
        try:
            _eryx.handle_free(h)
        except ValueError:
            pass


@pytest.fixture
def session(rt):
    handles = []

    def make(cfg=None, on_output=None, on_callback=None, vfs=0):
        h = _eryx.session_new(rt, cfg or config(), vfs, on_output, on_callback)
        handles.append(h)
        return h

    yield make
    for h in handles:
        try:
            _eryx.handle_free(h)
        except ValueError:
            pass


@needs_runtime
def test_open_runtime_once_per_process(rt):
    assert type(rt) is int and rt >= 1
    assert _eryx.open_runtime(runtime_dir(), cache_dir()) == rt
    # Later calls do no work: not even their arguments are looked at.
    assert _eryx.open_runtime("/nonexistent", "") == rt


@needs_runtime
def test_open_runtime_concurrent_first_calls():
    proc = run_python(
        f"""
        import threading, eryx._eryx as m
        out = []
        def go():
            out.append(m.open_runtime({runtime_dir()!r}, {cache_dir()!r}))
        ts = [threading.Thread(target=go) for _ in range(8)]
        for t in ts: t.start()
        for t in ts: t.join()
        print(len(out), len(set(out)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["8", "1"]


@needs_runtime
def test_runtime_handle_cannot_be_freed(rt):
    with pytest.raises(ValueError, match=INVALID):
        _eryx.handle_free(rt)
    assert _eryx.open_runtime(runtime_dir(), cache_dir()) == rt
    assert _eryx.guest_python_version(rt)


@needs_runtime
def test_ready_stats(rt):
    stats = json.loads(_eryx.ready_stats(rt))
    assert set(stats) == {"size", "ready", "hits", "misses", "made", "expired", "image_bytes"}
    assert all(type(v) is int and v >= 0 for v in stats.values()), stats


@needs_runtime
def test_guest_python_version(rt):
    version = _eryx.guest_python_version(rt)
    assert type(version) is str
    major, minor = version.split(".")[:2]
    assert int(major) == 3 and int(minor) >= 12


@needs_runtime
def test_sandbox_result_tuple(sandbox):
    h = sandbox()
    result = _eryx.sandbox_execute(h, 'print("hello")\nresult = 42\n')
    assert type(result) is tuple and len(result) == 8
    stdout, stderr, duration_ms, callbacks, peak, fuel, result_json, result_error = result
    assert "hello" in stdout and type(stdout) is str
    assert stderr == ""
    assert type(duration_ms) is float and duration_ms >= 0
    assert callbacks == 0 and type(callbacks) is int
    assert type(peak) is int and peak > 0
    assert fuel is None
    assert json.loads(result_json) == 42
    assert result_error is None


@needs_runtime
def test_result_error(sandbox):
    h = sandbox()
    *_, result_json, result_error = _eryx.sandbox_execute(h, "result = object()\n")
    assert result_json is None
    assert type(result_error) is str and result_error


@needs_runtime
@needs_fuel
def test_result_fuel(sandbox):
    h = sandbox(config(limits={"max_fuel": 2**63 - 1}))
    fuel = _eryx.sandbox_execute(h, "result = 1\n")[5]
    assert type(fuel) is int and fuel > 0


@needs_runtime
def test_execution_error(sandbox):
    h = sandbox()
    with pytest.raises(_eryx.Error) as info:
        _eryx.sandbox_execute(h, 'print("before")\nraise ValueError("boom")\n')
    kind, message, details = assert_error_shape(info.value)
    assert kind == "execution"
    assert "boom" in message
    assert details["exc_type"] == "ValueError"
    assert "before" in details["stdout"]
    assert details["errno"] is None and details["limit"] is None


@needs_runtime
def test_bad_config_is_value_error_and_releases_hooks(rt):
    rec = Recorder()
    gc.collect()
    base = sys.getrefcount(rec)
    for new in (_eryx.sandbox_new, _eryx.session_new):
        with pytest.raises(_eryx.Error) as info:
            new(rt, b"{not json", 0, rec.on_output, rec.on_callback)
        assert assert_error_shape(info.value)[0] == "value"
    gc.collect()
    assert sys.getrefcount(rec) == base


@needs_runtime
def test_output_streamed_on_the_calling_thread(sandbox):
    rec = Recorder()
    h = sandbox(config(stream_stdout=True, stream_stderr=True), on_output=rec.on_output)
    code = 'import sys\nprint("out")\nprint("err", file=sys.stderr)\n'
    stdout, stderr, *_ = _eryx.sandbox_execute(h, code)
    assert all(type(chunk) is str for _, chunk in rec.output)
    assert "".join(c for s, c in rec.output if s == 1) == "out\n"
    assert "".join(c for s, c in rec.output if s == 2) == "err\n"
    assert rec.output_threads == {threading.get_ident()}
    assert "out" in stdout and "err" in stderr  # still captured


@needs_runtime
def test_output_exception_is_unraisable(sandbox, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))

    def on_output(stream, chunk):
        raise RuntimeError("handler broke")

    h = sandbox(config(stream_stdout=True), on_output=on_output)
    stdout, *_ = _eryx.sandbox_execute(h, 'print("one")\nprint("two")\n')
    assert "one" in stdout and "two" in stdout
    assert seen and all(t is RuntimeError for t in seen)


@needs_runtime
@needs_callbacks
def test_callback_ok_on_another_thread(sandbox):
    rec = Recorder()
    h = sandbox(config(callbacks=echo_callbacks()), on_callback=rec.on_callback)
    result = _eryx.sandbox_execute(h, "result = await echo(x=1)\n")
    assert json.loads(result[6]) == {"x": 1}
    assert result[3] == 1
    [(index, args_json, timeout_ms)] = rec.calls
    assert index == 0 and json.loads(args_json) == {"x": 1} and timeout_ms == 10000
    assert threading.get_ident() not in rec.call_threads


@needs_runtime
@needs_callbacks
def test_callback_timeout_ms_zero_when_unlimited(sandbox):
    rec = Recorder()
    cfg = config(callbacks=echo_callbacks(), limits={"callback_timeout_ms": None})
    h = sandbox(cfg, on_callback=rec.on_callback)
    _eryx.sandbox_execute(h, "result = await echo(x=2)\n")
    assert rec.calls[0][2] == 0


BAD_REPLIES = {
    "exception": (lambda *a: (_ for _ in ()).throw(KeyError("nope")), "KeyError: 'nope'"),
    "raised": (lambda *a: ("raised", "ZeroDivisionError: division by zero"),
               "ZeroDivisionError: division by zero"),
    "not a tuple": (lambda *a: "ok", "TypeError"),
    "short tuple": (lambda *a: ("ok",), "TypeError"),
    "non-str payload": (lambda *a: ("ok", 5), "TypeError"),
    "unknown kind": (lambda *a: ("great", "{}"), "ValueError"),
    "lone surrogate": (lambda *a: ("ok", "\ud800"), "UnicodeEncodeError"),
}


@needs_runtime
@needs_callbacks
@pytest.mark.parametrize("case", sorted(BAD_REPLIES))
def test_callback_failures_become_raised(sandbox, case):
    reply, expected = BAD_REPLIES[case]
    rec = Recorder(reply)
    h = sandbox(config(callbacks=echo_callbacks()), on_callback=rec.on_callback)
    with pytest.raises(_eryx.Error) as info:
        _eryx.sandbox_execute(h, "result = await echo(x=1)\n")
    kind, message, details = assert_error_shape(info.value)
    assert kind == "execution"
    assert details["exc_type"] == "eryx_guest.CallbackError"
    assert expected in message


@needs_runtime
@needs_callbacks
def test_callback_not_json(sandbox):
    rec = Recorder(lambda *a: ("not_json", "set"))
    h = sandbox(config(callbacks=echo_callbacks()), on_callback=rec.on_callback)
    with pytest.raises(_eryx.Error) as info:
        _eryx.sandbox_execute(h, "result = await echo(x=1)\n")
    _, message, details = assert_error_shape(info.value)
    assert details["exc_type"] == "eryx_guest.CallbackError" and "set" in message


@needs_runtime
@needs_callbacks
def test_callback_reports_timeout(sandbox):
    rec = Recorder(lambda *a: ("timeout", ""))
    h = sandbox(config(callbacks=echo_callbacks()), on_callback=rec.on_callback)
    with pytest.raises(_eryx.Error) as info:
        _eryx.sandbox_execute(h, "result = await echo(x=1)\n")
    assert assert_error_shape(info.value)[2]["exc_type"] == "TimeoutError"


@needs_runtime
@needs_callbacks
def test_no_on_callback(sandbox):
    h = sandbox(config(callbacks=echo_callbacks()))
    with pytest.raises(_eryx.Error) as info:
        _eryx.sandbox_execute(h, "result = await echo(x=1)\n")
    assert "RuntimeError: no callbacks" in assert_error_shape(info.value)[1]


@needs_runtime
def test_gil_released_during_execute(sandbox):
    h = sandbox()
    out = {}
    t = threading.Thread(target=lambda: out.update(r=_eryx.sandbox_execute(h, busy(1.0))))
    start = time.monotonic()
    t.start()
    spins = 0
    while t.is_alive():
        spins += 1
    elapsed = time.monotonic() - start
    assert "r" in out and elapsed >= 0.9
    # With the GIL held for the whole call this thread could not have run at all.
    assert spins > 10_000


@needs_runtime
def test_concurrent_executes_overlap(sandbox):
    hs = [sandbox() for _ in range(2)]
    results = []
    threads = [
        threading.Thread(target=lambda h=h: results.append(_eryx.sandbox_execute(h, busy(1.0))))
        for h in hs
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    assert time.monotonic() - start < 1.8


@needs_runtime
@needs_callbacks
def test_callback_runs_python_while_caller_waits(sandbox):
    # The caller's thread is blocked in sandbox_execute; the callback needs the GIL on another
    # thread: this deadlocks unless the bridge released it.
    def reply(index, args_json, timeout_ms):
        time.sleep(0.2)  # a blocking callback
        return ("ok", json.dumps(sum(range(1000))))

    rec = Recorder(reply)
    h = sandbox(config(callbacks=echo_callbacks()), on_callback=rec.on_callback)
    result = _eryx.sandbox_execute(h, "result = await echo(x=1)\n")
    assert json.loads(result[6]) == 499500


@needs_runtime
@needs_callbacks
def test_callback_timeout_does_not_wait_for_python(sandbox):
    started, finish = threading.Event(), threading.Event()

    def slow(index, args_json, timeout_ms):
        started.set()
        finish.wait(10)
        return ("ok", "1")

    rec = Recorder(slow)
    gc.collect()
    base = sys.getrefcount(rec)
    cfg = config(callbacks=echo_callbacks(), limits={"callback_timeout_ms": 200})
    h = sandbox(cfg, on_callback=rec.on_callback)
    t0 = time.monotonic()
    with pytest.raises(_eryx.Error):
        _eryx.sandbox_execute(h, "result = await echo(x=1)\n")
    assert time.monotonic() - t0 < 5
    assert started.is_set()
    # Free the handle while the Python callback is still running: the bridge must keep the
    # callable alive until it returns, then release it.
    _eryx.handle_free(h)
    assert sys.getrefcount(rec) > base
    finish.set()
    assert wait_refcount(rec, base) == base


@needs_runtime
def test_hook_references_released_on_free(sandbox, session):
    rec = Recorder()
    gc.collect()
    base = sys.getrefcount(rec)
    for make in (sandbox, session):
        h = make(on_output=rec.on_output, on_callback=rec.on_callback)
        assert sys.getrefcount(rec) == base + 2  # two bound methods
        _eryx.handle_free(h)
        gc.collect()
        assert sys.getrefcount(rec) == base
        with pytest.raises(ValueError, match=INVALID):
            _eryx.handle_free(h)


@needs_runtime
def test_sandbox_close_keeps_the_handle(sandbox):
    h = sandbox()
    assert _eryx.sandbox_close(h) is None
    with pytest.raises(_eryx.Error) as info:  # an engine error, not ValueError
        _eryx.sandbox_execute(h, "pass\n")
    assert_error_shape(info.value)
    _eryx.sandbox_close(h)  # again: fine
    _eryx.handle_free(h)
    with pytest.raises(ValueError, match=INVALID):
        _eryx.sandbox_close(h)


@needs_runtime
def test_free_while_running_cancels(sandbox):
    h = sandbox()
    out = {}

    def run():
        try:
            out["result"] = _eryx.sandbox_execute(h, busy(5.0))
        except BaseException as exc:  # noqa: BLE001
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    _eryx.handle_free(h)
    t.join(5)
    assert not t.is_alive()
    assert assert_error_shape(out["error"])[0] == "cancelled"


@needs_runtime
def test_session_calls(session):
    h = session()
    assert _eryx.session_execution_count(h) == 0
    _eryx.session_execute(h, "x = 1\n")
    _eryx.session_execute(h, "y = 2\n")
    assert _eryx.session_execution_count(h) == 2
    data, skipped = _eryx.session_snapshot(h)
    assert type(data) is bytes and data
    assert type(skipped) is list and all(type(n) is str for n in skipped)
    assert _eryx.session_clear_state(h) is None
    assert _eryx.session_restore(h, data) is None
    assert _eryx.session_restore(h, bytearray(data)) is None
    assert _eryx.session_restore(h, memoryview(data)) is None
    assert _eryx.session_set_limits(h, 5000, None) is None
    assert _eryx.session_set_limits(h, None, None) is None
    assert _eryx.session_execute(h, "z = 4\n")[5] is None
    assert _eryx.session_reset(h) is None
    assert _eryx.session_execution_count(h) == 0
    assert _eryx.session_close(h) is None
    with pytest.raises(_eryx.Error):
        _eryx.session_execute(h, "pass\n")
    assert type(_eryx.session_execution_count(h)) is int  # the handle stays valid


@needs_runtime
def test_session_restore_garbage(session):
    h = session()
    with pytest.raises(_eryx.Error) as info:
        _eryx.session_restore(h, b"definitely not a snapshot")
    assert_error_shape(info.value)


@needs_runtime
@needs_fuel
def test_session_set_max_fuel(session):
    h = session()
    _eryx.session_set_limits(h, None, 2**63 - 1)
    assert type(_eryx.session_execute(h, "z = 3\n")[5]) is int
    _eryx.session_set_limits(h, None, None)
    assert _eryx.session_execute(h, "z = 4\n")[5] is None


@needs_runtime
@needs_vfs
def test_shared_vfs_outlives_its_handle(sandbox):
    store = _eryx.vfs_new(1 << 20)
    h = sandbox(vfs=store)
    _eryx.sandbox_execute(h, "pass\n")
    _eryx.handle_free(store)  # the sandbox keeps its store
    _eryx.sandbox_execute(h, "pass\n")


def test_cancel_token_lifecycle():
    t = _eryx.token_new()
    assert type(t) is int and t > 0
    _eryx.token_cancel(t)
    _eryx.token_cancel(t)  # cancelling twice is harmless
    _eryx.handle_free(t)
    for fn in (_eryx.token_cancel, _eryx.handle_free):
        with pytest.raises(ValueError, match="invalid or closed eryx handle"):
            fn(t)


# ---------------------------------------------------------------------------------------------
# SandboxFactory (API.md §10)


@needs_runtime
def test_factory_handles(rt, tmp_path):
    with pytest.raises(_eryx.Error) as info:
        _eryx.factory_new(rt, "not json")
    kind, message, _ = info.value.args
    assert kind == "value" and message.startswith("invalid factory specification: ")
    f = _eryx.factory_new(rt, json.dumps({"imports": ["decimal"]}))
    try:
        assert _eryx.factory_imports(f) == ["decimal"]
        data = _eryx.factory_to_bytes(f)
        assert _eryx.factory_size(f) == len(data)
        # sandbox_new and session_new take a factory handle in place of the runtime's
        sb = _eryx.sandbox_new(f, config(), 0, None, None)
        out = _eryx.sandbox_execute(sb, "import sys\nprint('decimal' in sys.modules)")
        assert out[0] == "True"
        _eryx.handle_free(sb)
        g = _eryx.factory_from_bytes(rt, memoryview(data), "{}")
        _eryx.factory_save(g, str(tmp_path / "f"))
        assert (tmp_path / "f").read_bytes() == data
        _eryx.factory_close(g)
        with pytest.raises(_eryx.Error, match="SandboxFactory is closed"):
            _eryx.factory_to_bytes(g)
        _eryx.handle_free(g)
    finally:
        _eryx.handle_free(f)
    with pytest.raises(ValueError, match=INVALID):
        _eryx.factory_size(f)
