# The goeryx guest driver: runs inside the guest interpreter as module _eryx_driver (not in
# sys.modules). `_host` is the host module object injected by eryx_boot (docs/ABI.md); the
# OP_*, REQ_* and MAX_* constants come from the prelude the engine prepends
# (goeryx/internal/protocol). Requests and responses are frames: a little-endian u32 header
# length, a JSON header, then a raw payload (docs/PROTOCOL.md).
#
# Nothing defined here may leak into user globals, and an exception must never survive from one
# run into the next.
#
# User code shares this interpreter: it can replace attributes of builtins and of any module in
# sys.modules, by accident (json.dumps = ..., json.JSONEncoder.default = ...) or not, and one
# run must not break the driver's framing, result capture or tracebacks in the next. So the
# driver looks up builtins in a private copy, and uses private copies of the pure-Python
# modules it needs (json, traceback, linecache): copies that sys.modules does not hold. The C
# types and functions beneath them are immutable. What it takes from other modules it binds at
# load. Code that walks frames (sys._getframe) or the heap (gc) still reaches all of it: the
# host trusts nothing in a response.

import builtins
import sys

__builtins__ = dict(builtins.__dict__)  # functions defined below look builtins up here


class _PrivateLoader:
    """Executes a module with the driver's builtins."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__builtins__ = __builtins__
        self.loader.exec_module(module)


class _PrivateFinder:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PrivateLoader(spec.loader)
        return spec


def _private_import(name, modules):
    """A private copy of module `name`: `modules` (its package, submodules and helpers) are
    imported anew, with the driver's builtins, and sys.modules is left as it was."""
    saved = {m: sys.modules.pop(m) for m in modules if m in sys.modules}
    finder = _PrivateFinder(modules)
    sys.meta_path.insert(0, finder)
    try:
        __import__(name)
        return sys.modules[name]
    finally:
        sys.meta_path.remove(finder)
        for m in modules:
            sys.modules.pop(m, None)
        sys.modules.update(saved)


_json = _private_import("json", ("json", "json.decoder", "json.scanner", "json.encoder"))
_traceback = _private_import("traceback", ("traceback", "linecache"))
_linecache = _traceback.linecache
_json_decode = _json.JSONDecoder().decode
_header_encode = _json.JSONEncoder(separators=(",", ":")).encode
_value_encode = _json.JSONEncoder(allow_nan=False).encode  # json.dumps(value, allow_nan=False)

from _ast import Assign as _AstAssign  # noqa: E402
from _ast import Expr as _AstExpr  # noqa: E402
from _ast import Name as _AstName  # noqa: E402
from _ast import Store as _AstStore  # noqa: E402
from _io import BytesIO as _BytesIO  # noqa: E402
from _weakrefset import WeakSet as _WeakSet  # noqa: E402
from _io import TextIOWrapper as _TextIOWrapper  # noqa: E402
from io import IOBase as _IOBase  # noqa: E402
from os import O_RDONLY as _O_RDONLY  # noqa: E402
from os import close as _os_close  # noqa: E402
from os import fstat as _os_fstat  # noqa: E402
from os import open as _os_open  # noqa: E402
from os import write as _os_write  # noqa: E402
from struct import Struct  # noqa: E402
from types import (  # noqa: E402
    AsyncGeneratorType, CoroutineType, FrameType, GeneratorType, ModuleType, TracebackType,
)

_stderr = sys.__stderr__
_LEN = Struct("<I")
_CO_COROUTINE = 0x0080
_PyCF_ALLOW_TOP_LEVEL_AWAIT = 0x2000
_USER_FILE = "<user>"  # the file name of user code, unless a run names it ("filename")
_user_file = _USER_FILE  # the current run's
_MODULE_DUNDERS = frozenset(
    ("__name__", "__doc__", "__package__", "__loader__", "__spec__", "__builtins__")
)


class ExecutionInterrupted(BaseException):
    """Raised by the host in the running code at the execution deadline or on cancellation."""


ExecutionInterrupted.__module__ = "builtins"
_host.set_interrupt(ExecutionInterrupted)  # noqa: F821 (injected by eryx_boot)


_header_memo = {}  # small constant headers (e.g. the run request's) parsed once


def _decode(frame):
    (n,) = _LEN.unpack_from(frame, 0)
    raw = frame[4 : 4 + n]
    header = _header_memo.get(raw)
    if header is None:
        header = _json_decode(raw.decode("utf-8", "surrogatepass"))  # as json.loads(bytes)
        if n <= 32 and len(_header_memo) < 16:
            _header_memo[raw] = header
    return dict(header), frame[4 + n :]


def _encode(header, payload=b""):
    h = _header_encode(header).encode()
    return _LEN.pack(len(h)) + h + payload


def _host_call(op, header, payload=b""):
    return _decode(_host.call(op, _encode(header, payload)))  # noqa: F821


_RUN_OK = {"ok": True, "exc_type": None, "interrupted": False}
# The response of a successful run without a result, encoded once (it is most runs' response,
# and encoding it would cost more than many runs: it is part of their fuel).
_RUN_OK_FRAME = _encode(_RUN_OK)


# ---------------------------------------------------------------------------------------------
# The user namespace: one module object registered as __main__, so that pickling (dill) and
# classes defined by user code refer to it by the usual name.

_main = ModuleType("__main__")
_main.__builtins__ = builtins
sys.modules["__main__"] = _main
_ns = _main.__dict__

_result_variable = "result"
_injected = set()  # names of the callback objects put into the namespace at each run


# ---------------------------------------------------------------------------------------------
# Output and tracebacks


def _user_traceback(tb):
    """The traceback chain restricted to frames of user code."""
    frames = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _user_file:
            frames.append(tb)
        tb = tb.tb_next
    out = None
    for t in reversed(frames):
        out = TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return out


def _strip_frames(exc, seen):
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))
    exc.__traceback__ = _user_traceback(exc.__traceback__)
    _strip_frames(exc.__cause__, seen)
    _strip_frames(exc.__context__, seen)
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            _strip_frames(e, seen)


def _report(exc):
    """Print exc to the run's stderr the way the interpreter would, with user frames only."""
    try:
        _strip_frames(exc, set())
        text = "".join(_traceback.format_exception(exc))
    except BaseException:  # a broken __str__ (or a module it uses) must not break the driver
        try:
            message = str(exc)
        except BaseException:
            message = "<exception str() failed>"
        text = "%s: %s\n" % (_type_name(type(exc)), message)
    _write_stderr(text)


def _write_stderr(text):
    try:
        _stderr.write(text)
        _stderr.flush()
    except BaseException:  # the user closed or broke sys.__stderr__: write to fd 2 directly
        try:
            _os_write(2, text.encode("utf-8", "backslashreplace"))
        except BaseException:
            pass


def _type_name(t):
    mod = getattr(t, "__module__", None)
    qual = getattr(t, "__qualname__", None)
    if type(qual) is not str:  # user classes may set anything: the name must stay a str
        qual = str.__str__(t.__name__)
    if type(mod) is not str or mod == "builtins":
        return qual
    return "%s.%s" % (mod, qual)


def _drain_interrupt():
    """Consume an interrupt the host scheduled too late to hit the previous run.

    The pending exception is raised at the next eval-breaker check, which the loop's backward
    jump provides.
    """
    try:
        for _ in range(2):
            pass
    except ExecutionInterrupted:
        pass


# ---------------------------------------------------------------------------------------------
# Running code


_compiled = {}  # source -> code object, for code a session runs again and again
_COMPILED_MAX = 64


_PyCF_ONLY_AST = 0x0400
_LAST_VALUE = "__eryx_last_value__"  # holds the value of a final expression statement


def _compile(code, interactive, filename):
    """The code object of a run. In "exec" mode (execute) a final expression statement is
    assigned to _LAST_VALUE, so that its value becomes the result when the code sets no result
    variable (as a notebook shows a cell's last value). In "single" mode (the CLI's REPL)
    CPython's own interactive compilation prints expression values through sys.displayhook."""
    key = (code, interactive, filename)
    co = _compiled.get(key)
    if co is None:
        flags = _PyCF_ALLOW_TOP_LEVEL_AWAIT
        if interactive:
            co = compile(code, filename, "single", flags, True)
        else:
            tree = compile(code, filename, "exec", flags | _PyCF_ONLY_AST, True)
            body = tree.body
            if body and type(body[-1]) is _AstExpr:
                last = body[-1]
                target = _AstName(id=_LAST_VALUE, ctx=_AstStore())
                assign = _AstAssign(targets=[target], value=last.value)
                for node in (target, assign):  # the expression's own positions: tracebacks
                    node.lineno, node.col_offset = last.lineno, last.col_offset
                    node.end_lineno, node.end_col_offset = last.end_lineno, last.end_col_offset
                body[-1] = assign
            co = compile(tree, filename, "exec", flags, True)
        if len(code) <= 4096:
            if len(_compiled) >= _COMPILED_MAX:
                _compiled.clear()
            _compiled[key] = co
    return co


# Files the user's code opened (open, io.open, pathlib): at the end of every run their buffered
# data is written out, because a Sandbox's interpreter is discarded without collecting them
# (their data would be lost) and a Session's host-visible files should be complete after each
# run. Weak references: a file the code dropped is gone already.
_open_files = _WeakSet()


def _track_open():
    import functools
    import io

    real_open = io.open

    @functools.wraps(real_open)
    def open(*args, **kwargs):
        f = real_open(*args, **kwargs)
        try:
            _open_files.add(f)
        except TypeError:
            pass
        return f

    builtins.open = io.open = open


_NO_SPACE = frozenset(getattr(__import__("errno"), n) for n in ("ENOSPC", "EDQUOT", "EFBIG")
                      if hasattr(__import__("errno"), n))


def _flush_open_files():
    """Flushes the files the run left open. False when one could not be written: the error is
    reported on stderr and that file is closed (its buffered data is lost), instead of an
    'Exception ignored' when it is collected, or never."""
    ok = True
    if not _open_files.data:  # the common case, without WeakSet's iteration machinery
        return ok
    for f in list(_open_files):
        try:
            if f.closed:
                continue
            f.flush()
        except OSError as e:
            # Out of space is data the user has not been told about; other errors (a file
            # kept across a move to the fuel module) were raised to the code already.
            if e.errno in _NO_SPACE:
                ok = False
                _write_stderr("OSError: the buffered data of %r could not be written when the "
                              "run ended: %s\n" % (getattr(f, "name", "?"), e))
            try:
                f.close()
            except BaseException:
                pass
        except BaseException:
            pass
    return ok


def _set_stdin(data):
    """sys.stdin of a run: the bytes the host gave (input() reads them), or the interpreter's
    own, empty stdin (input() raises EOFError)."""
    if data is None:
        sys.stdin = sys.__stdin__
    else:
        sys.stdin = _TextIOWrapper(_BytesIO(data), encoding="utf-8", errors="replace")


def _run(header, payload):
    global _user_file
    _drain_interrupt()
    code_len = header.get("code_len")
    if code_len is None:
        code, stdin = payload.decode("utf-8"), None
    else:
        code, stdin = payload[:code_len].decode("utf-8"), payload[code_len:]
    interactive = bool(header.get("interactive"))
    _user_file = header.get("filename") or _USER_FILE
    argv = header.get("argv")
    if argv is not None:  # the CLI's script arguments
        sys.argv = list(argv)
    _set_stdin(stdin)
    _install_callbacks()
    entry = (len(code), None, code.splitlines(True), _user_file)
    _linecache.cache[_user_file] = entry  # the driver's tracebacks
    try:  # the user's own (traceback.print_exc() in user code)
        sys.modules["linecache"].cache[_user_file] = entry
    except BaseException:
        pass
    failed = False
    interrupted = False
    exc_type = None
    try:
        try:
            co = _compile(code, interactive, _user_file)
            if co.co_flags & _CO_COROUTINE:
                _run_coroutine(eval(co, _ns))
            else:
                exec(co, _ns)
        except SystemExit as e:
            if e.code is not None and e.code != 0:
                failed, exc_type = True, "SystemExit"
                _report(e)
        except ExecutionInterrupted:
            failed = interrupted = True
            exc_type = "ExecutionInterrupted"
        except BaseException as e:
            failed, exc_type = True, _type_name(type(e))
            _report(e)
        if not _flush_open_files() and not failed:
            failed, exc_type = True, "OSError"
        if failed:
            response = {"ok": False, "exc_type": exc_type, "interrupted": interrupted}
        else:
            captured = _capture_result()
            response = dict(_RUN_OK, **captured) if captured else _RUN_OK_FRAME
    except ExecutionInterrupted:
        response = {"ok": False, "exc_type": "ExecutionInterrupted", "interrupted": True}
    finally:
        try:
            _warn_unawaited()
        except BaseException:
            pass
        _ns.pop(_result_variable, None)
        _ns.pop(_LAST_VALUE, None)
        sys.last_exc = sys.last_type = sys.last_value = sys.last_traceback = None
    return response


_MISSING = object()


def _capture_result():
    value = _ns.get(_result_variable, _MISSING)
    if value is _MISSING:
        # No result variable: the value of a final expression statement, unless None (what
        # print(...) returns: a notebook shows nothing for it either).
        value = _ns.get(_LAST_VALUE)
        if value is None:
            return {}
    try:
        text = _value_encode(value)
    except BaseException as e:
        return {
            "result_error": "result is not JSON-serializable: %s (%s)"
            % (type(value).__name__, type(e).__name__)
        }
    n = len(text)
    if n > MAX_RESULT_JSON_BYTES:  # noqa: F821 (prelude); ensure_ascii: chars == bytes
        return {
            "result_error": "result is too large: %d bytes of JSON (limit %d)"
            % (n, MAX_RESULT_JSON_BYTES)  # noqa: F821
        }
    return {"result_json": text}


def _run_coroutine(coro):
    import asyncio

    loop = _HostEventLoop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(coro)
    finally:
        try:
            _cancel_pending(loop)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_pending(loop):
    import asyncio

    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


# ---------------------------------------------------------------------------------------------
# asyncio: an event loop whose waits are host calls, so that timeouts and callback completions
# are owned by the host and asyncio.gather over callbacks runs them concurrently there.

_pending_callbacks = {}  # callback id -> asyncio.Future
_HostEventLoop = None  # the loop class of top-level await, set by _install_event_loop
_socket_type = None  # the socket shim's socket class, set by the networking section (net.py)


def _install_event_loop():
    global _HostEventLoop
    import asyncio
    import selectors

    class HostSelector(selectors.BaseSelector):
        def __init__(self):
            self._map = {}

        def register(self, fileobj, events, data=None):
            raise OSError(58, "sockets are not supported by this event loop")

        def unregister(self, fileobj):
            raise KeyError(fileobj)

        def select(self, timeout=None):
            if timeout is None:
                timeout_ns = -1
            else:
                timeout_ns = max(0, int(timeout * 1e9))
            header, payload = _host_call(OP_WAIT, _net_wait_header(self, timeout_ns))  # noqa: F821
            if "net" in header:
                _net_events(self, header["net"], payload)  # noqa: F821
            for item in header.get("done") or ():
                _deliver_completion(item)
            return []

        def close(self):
            pass

        def get_map(self):
            return self._map

    class HostEventLoop(asyncio.SelectorEventLoop):
        def __init__(self):
            super().__init__(HostSelector())

        def _make_self_pipe(self):  # WASI has no socketpair
            self._ssock = self._csock = None

        def _close_self_pipe(self):
            pass

        def _write_to_self(self):
            pass

        def _process_self_data(self, data):
            pass

    _net_extend_loop(HostEventLoop)  # noqa: F821 (client connections: net.py)

    class HostEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
        _loop_factory = HostEventLoop

    asyncio.set_event_loop_policy(HostEventLoopPolicy())
    _HostEventLoop = HostEventLoop


# ---------------------------------------------------------------------------------------------
# Callbacks (docs: API.md §7.4)


class CallbackError(RuntimeError):
    """A host callback failed."""


class CallbackLimitError(CallbackError):
    """The run made more callback invocations than allowed."""


CallbackError.__module__ = CallbackLimitError.__module__ = "eryx_guest"

_callbacks = []  # [{"name", "description", "schema"}] in registration order
_callbacks_by_name = {}
_reserved = frozenset(dir(builtins)) | frozenset(
    ("invoke", "list_callbacks", "eryx_guest", "asyncio", "json", "math", "re", "os",
     "subprocess", "socket")
)


def _callback_exception(err):
    kind, message = err.get("type"), err.get("message", "")
    if kind == "CallbackLimitError":
        return CallbackLimitError(message)
    if kind == "TimeoutError":
        return TimeoutError(message)
    return CallbackError(message)


def _json_default(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


from _json import encode_basestring_ascii as _encode_basestring_ascii  # noqa: E402
from _json import make_encoder as _make_encoder  # noqa: E402


def _new_args_encoder():
    """json.dumps(value, allow_nan=False) as the C encoder that JSONEncoder.encode builds at
    every call (building it costs more than encoding small arguments). Its circular-reference
    markers are not cleaned up when an encoding fails: a failure gets a new one."""
    return _make_encoder({}, _json_default, _encode_basestring_ascii, None, ": ", ", ", False,
                         False, False)


_args_encoder = _new_args_encoder()


def _encode_args(name, args, kwargs):
    global _args_encoder
    if args:
        spec = _callbacks_by_name.get(name)
        props = []
        if spec is not None and isinstance(spec.get("schema"), dict):
            p = spec["schema"].get("properties")
            if isinstance(p, dict):
                props = list(p)
        if len(args) > len(props):
            raise TypeError(
                "%s() takes %d positional argument%s but %d were given"
                % (name, len(props), "" if len(props) == 1 else "s", len(args))
            )
        merged = {}
        for key, value in zip(props, args):
            if key in kwargs:
                raise TypeError("%s() got multiple values for argument '%s'" % (name, key))
            merged[key] = value
        merged.update(kwargs)
        kwargs = merged
    elif not kwargs:
        return b"{}"
    try:
        return "".join(_args_encoder(kwargs, 0)).encode()
    except BaseException as e:
        _args_encoder = _new_args_encoder()
        if isinstance(e, (TypeError, ValueError)):
            raise TypeError(
                "callback '%s' arguments are not JSON-serializable: %s" % (name, e)) from None
        raise


# The encoded start of the OP_CALLBACK_START frame of each configured callback name.
_start_prefixes = {}
_DONE_HEADER = b'{"done":true}'  # the header of a callback that completed at once
_scan_json = _json.JSONDecoder().scan_once


def _load_result(raw):
    """The callback result in raw (JSON from the host)."""
    text = raw.decode("utf-8", "surrogatepass")
    try:
        value, end = _scan_json(text, 0)
        if end == len(text):
            return value
    except StopIteration:
        pass
    return _json_decode(text)  # not one JSON value: the decoder's error


def _start_callback(name, args, kwargs):
    """Starts callback `name`: (True, result) when it completed at once, else (False, id)."""
    payload = _encode_args(name, args, kwargs)
    prefix = _start_prefixes.get(name)
    if prefix is None:
        h = _header_encode({"name": name}).encode()
        prefix = _LEN.pack(len(h)) + h
        if name in _callbacks_by_name:  # a bounded set: not every name passed to invoke()
            _start_prefixes[name] = prefix
    frame = _host.call(OP_CALLBACK_START, prefix + payload)  # noqa: F821
    (n,) = _LEN.unpack_from(frame, 0)
    if frame[4 : 4 + n] == _DONE_HEADER:  # nearly every call: no JSON header to decode
        return True, _load_result(frame[4 + n :])
    header, _ = _decode(frame)
    if "error" in header:  # refused, or failed at once
        raise _callback_exception(header["error"])
    return False, header["id"]


async def _call_callback(name, args, kwargs, key=0):
    if key:
        _unawaited.pop(key, None)
    done, value = _start_callback(name, args, kwargs)
    if done:  # completed at once: no event-loop round trip
        return value
    import asyncio

    cid = value
    fut = asyncio.get_running_loop().create_future()
    _pending_callbacks[cid] = fut
    try:
        return await fut
    except asyncio.CancelledError:
        if _pending_callbacks.pop(cid, None) is not None:
            _host_call(OP_CALLBACK_CANCEL, {"id": cid})  # noqa: F821
        raise


def _call_blocking(name, args, kwargs):
    """A callback called from synchronous code: blocks until the host function returns (its
    callback timeout and the run's deadline still apply)."""
    done, value = _start_callback(name, args, kwargs)
    if done:
        return value
    cid = value
    try:
        while True:
            done, _ = _host_call(OP_WAIT, {"timeout_ns": -1})  # noqa: F821
            for item in done.get("done") or ():
                if item["id"] == cid:
                    if "error" in item:
                        raise _callback_exception(item["error"])
                    return item.get("result")
                _deliver_completion(item)  # a call an event loop is waiting for
    except BaseException:
        _host_call(OP_CALLBACK_CANCEL, {"id": cid})  # noqa: F821
        raise


def _deliver_completion(item):
    """Resolves the future of a completed callback ({id, result} or {id, error})."""
    fut = _pending_callbacks.pop(item["id"], None)
    if fut is None or fut.done():
        return
    if "error" in item:
        fut.set_exception(_callback_exception(item["error"]))
    else:
        fut.set_result(item.get("result"))


# The coroutines of callback calls not yet started, by key, to say at the end of a run which
# ones were never awaited (a sandbox's interpreter is discarded, so CPython's own warning would
# never show). A coroutine leaves it when it starts. Plain references, not a WeakSet (whose add
# is a good part of a call's cost): an unawaited call is kept until the end of its run.
_unawaited = {}
_next_key = 0


def _new_call(name, args, kwargs):
    global _next_key
    _next_key += 1
    coro = _unawaited[_next_key] = _call_callback(name, args, kwargs, _next_key)
    return coro


def _warn_unawaited():
    if not _unawaited:
        return
    calls = list(_unawaited.values())
    _unawaited.clear()
    for coro in calls:
        if coro.cr_frame is not None and not coro.cr_running and not coro.cr_suspended:
            name = coro.cr_frame.f_locals.get("name", "?")
            coro.close()  # never started: nothing was called
            _write_stderr(
                "RuntimeWarning: callback %r was called but never awaited: nothing was done "
                "(use 'await %s(...)', or %s.sync(...) in code that is not async)\n"
                % (name, name, name))


class EryxCallback:
    __slots__ = ("_name", "__weakref__")

    def __init__(self, name):
        self._name = name

    def __call__(self, *args, **kwargs):
        return _new_call(self._name, args, kwargs)

    def sync(self, *args, **kwargs):
        """Call the host function and wait for its result, from code that is not async."""
        return _call_blocking(self._name, args, kwargs)

    def __repr__(self):
        return "<EryxCallback %r>" % self._name


class EryxNamespace:
    __slots__ = ("_path", "_children", "_callable")

    def __init__(self, path):
        self._path = path
        self._children = {}
        self._callable = False

    def _child(self, key):
        if not isinstance(key, str) or key.startswith("_") or key not in self._children:
            raise LookupError(key)
        return self._children[key]

    def __getattr__(self, key):
        try:
            return self._child(key)
        except LookupError:
            raise AttributeError(
                "%r has no callback or namespace %r" % (self, key)) from None

    def __getitem__(self, key):
        try:
            return self._child(key)
        except LookupError:
            raise KeyError(key) from None

    def __call__(self, *args, **kwargs):
        if not self._callable:
            raise TypeError("%r is not callable" % self)
        return _new_call(self._path, args, kwargs)

    def __dir__(self):
        return sorted(self._children)

    def __repr__(self):
        return "<EryxNamespace %r>" % self._path


async def invoke(name, /, *args, **kwargs):
    """Call any host callback by its full name."""
    return await _call_callback(name, args, kwargs)


def invoke_sync(name, /, *args, **kwargs):
    """Call any host callback by its full name and wait for its result, from code that is not
    async."""
    return _call_blocking(name, args, kwargs)


def list_callbacks():
    """The host callbacks: name, description and parameters schema, in registration order."""
    return [
        {"name": c["name"], "description": c.get("description", ""),
         "parameters_schema": c.get("schema")}
        for c in _callbacks
    ]


def _guest_objects():
    """The objects injected into user globals, by name."""
    objs = {"invoke": invoke, "list_callbacks": list_callbacks}
    roots = {}
    for c in _callbacks:
        name = c["name"]
        parts = name.split(".")
        root = parts[0]
        if root in _reserved or not root.isidentifier():
            continue
        if len(parts) == 1:
            if isinstance(roots.get(root), EryxNamespace):
                roots[root]._callable = True
            else:
                roots[root] = EryxCallback(name)
            continue
        if not all(p.isidentifier() for p in parts):
            continue
        node = roots.get(root)
        if not isinstance(node, EryxNamespace):
            ns = EryxNamespace(root)
            ns._callable = isinstance(node, EryxCallback)
            node = roots[root] = ns
        for i, part in enumerate(parts[1:], 1):
            child = node._children.get(part)
            if i == len(parts) - 1:
                if isinstance(child, EryxNamespace):
                    child._callable = True
                else:
                    node._children[part] = EryxCallback(name)
            else:
                if not isinstance(child, EryxNamespace):
                    sub = EryxNamespace(".".join(parts[: i + 1]))
                    sub._callable = isinstance(child, EryxCallback)
                    child = node._children[part] = sub
                node = child
    objs.update(roots)
    return objs


_guest_cache = None


def _install_callbacks():
    global _guest_cache
    if _guest_cache is None:
        _guest_cache = _guest_objects()
    _ns.update(_guest_cache)
    _injected.update(_guest_cache)


_eryx_guest = ModuleType("eryx_guest", "Host callbacks of the eryx sandbox.")
_eryx_guest.invoke = invoke
_eryx_guest.invoke_sync = invoke_sync
_eryx_guest.list_callbacks = list_callbacks
_eryx_guest.CallbackError = CallbackError
_eryx_guest.CallbackLimitError = CallbackLimitError
sys.modules["eryx_guest"] = _eryx_guest
for _f in (invoke, invoke_sync, list_callbacks):
    _f.__module__ = "eryx_guest"
EryxCallback.__module__ = EryxNamespace.__module__ = "eryx_guest"
del _f


# ---------------------------------------------------------------------------------------------
# Interpreter set-up, state operations


def _configure(header, payload):
    global _result_variable, _callbacks, _callbacks_by_name, _guest_cache
    import os
    import random

    random.seed()  # from os.urandom, i.e. the host CSPRNG: no two interpreters share a sequence
    os.environ.clear()
    os.environ.update(header.get("env") or {})
    if header.get("cwd"):  # the private scratch directory
        try:
            os.chdir(header["cwd"])
        except OSError:  # not mounted (an engine test's own mounts): stay at /
            pass
    _result_variable = header.get("result_variable") or "result"
    _callbacks = header.get("callbacks") or []
    _callbacks_by_name = {c["name"]: c for c in _callbacks}
    _start_prefixes.clear()
    _guest_cache = None
    return {"ok": True}


# Names a factory's setup_code bound (name -> object): part of the factory's image, not user
# state, while they keep those objects; clear_state binds them again.
_setup_names = {}


def _user_names():
    return [k for k in _ns if k not in _MODULE_DUNDERS and k not in _injected
            and not (k in _setup_names and _ns[k] is _setup_names[k])]


def _clear_state(header, payload):
    for k in _user_names():
        del _ns[k]
    _ns.update(_setup_names)
    return {"ok": True}


def _unsnapshottable():
    """Types excluded from snapshots even where dill could pickle them: they stand for live
    resources (API.md §8.4)."""
    return (ModuleType, _IOBase, GeneratorType, CoroutineType, AsyncGeneratorType, FrameType,
            TracebackType, _socket_type)


def _snapshot(header, payload):
    import dill

    excluded = _unsnapshottable()
    kept, skipped = {}, []
    for name in _user_names():
        value = _ns[name]
        if isinstance(value, excluded):
            skipped.append(name)
            continue
        try:
            dill.dumps(value)
        except BaseException:
            skipped.append(name)
            continue
        kept[name] = value
    data = dill.dumps(kept)
    if len(data) > MAX_SNAPSHOT_BYTES:  # noqa: F821
        return {"ok": False, "too_large": len(data)}, b""
    return {"ok": True, "skipped": skipped}, data


def _restore(header, payload):
    import dill

    try:
        values = dill.loads(payload)
        if not isinstance(values, dict):
            raise TypeError("snapshot does not hold a namespace")
    except BaseException as e:
        return {"ok": False, "error": "%s: %s" % (_type_name(type(e)), e)}
    _ns.update(values)
    return {"ok": True}


def _open_fds(header, payload):
    """The open descriptors above stdio (preopens included), when the host moves the
    interpreter's memory to another instance (a session that starts metering fuel)."""
    fds, misses, fd = [], 0, 3
    while misses < 32:
        try:
            _os_fstat(fd)
            fds.append(fd)
            misses = 0
        except OSError:
            misses += 1
        fd += 1
    return {"ok": True, "fds": fds}


def _hold_fds(header, payload):
    """In the instance that took the memory over: the descriptors open in the old one are not
    open here. Occupy their numbers with a read-only placeholder, so that a file object the
    guest kept fails rather than writes into a file opened later under the same number."""
    wanted = set(header.get("fds") or ())
    if not wanted:
        return {"ok": True}
    top, held = max(wanted), []
    try:
        while True:
            fd = _os_open("/", _O_RDONLY)
            if fd > top:
                _os_close(fd)
                break
            held.append(fd)
    except OSError:
        pass
    for fd in held:
        if fd not in wanted:
            _os_close(fd)
    return {"ok": True}


class _Quitter:
    """exit() and quit(), which the site module would define: they raise SystemExit."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "Use %s() to end the code" % self.name

    def __call__(self, code=None):
        raise SystemExit(code)


class _Helper:
    """help(), as the site module defines it (pydoc is imported on first use)."""

    def __repr__(self):
        return "Type help() for interactive help, or help(object) for help about object."

    def __call__(self, *args, **kwds):
        import pydoc

        return pydoc.help(*args, **kwds)


def _pbkdf2_hmac(hash_name, password, salt, iterations, dklen=None):
    """hashlib.pbkdf2_hmac (RFC 8018) without OpenSSL, as CPython had before 3.12."""
    import hmac

    if not isinstance(hash_name, str):
        raise TypeError(hash_name)
    password, salt = bytes(memoryview(password)), bytes(memoryview(salt))
    if iterations < 1:
        raise ValueError(iterations)
    inner = hmac.new(password, None, hash_name)
    if dklen is None:
        dklen = inner.digest_size
    if dklen < 1:
        raise ValueError(dklen)
    blocks, loop = [], 1
    while sum(len(b) for b in blocks) < dklen:
        h = inner.copy()
        h.update(salt + loop.to_bytes(4, "big"))
        u = h.digest()
        acc = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            h = inner.copy()
            h.update(u)
            u = h.digest()
            acc ^= int.from_bytes(u, "big")
        blocks.append(acc.to_bytes(inner.digest_size, "big"))
        loop += 1
    return b"".join(blocks)[:dklen]


def _guest_environment():
    """What a Python user expects of the interpreter that site, OpenSSL and threads would
    give elsewhere: exit(), quit(), help(), time.thread_time, hashlib.pbkdf2_hmac and scrypt,
    and errors that say why threads and processes are missing."""
    import hashlib
    import threading
    import time

    builtins.exit, builtins.quit, builtins.help = _Quitter("exit"), _Quitter("quit"), _Helper()
    call, empty = _host.call, _encode({})  # noqa: F821

    def process_time_ns():
        return _decode(call(OP_CPU_TIME, empty))[0]["ns"]  # noqa: F821

    def process_time():
        return process_time_ns() / 1e9

    # The interpreter's CPU time, measured by the host (one thread: also the thread's).
    for name, fn in (("process_time", process_time), ("process_time_ns", process_time_ns),
                     ("thread_time", process_time), ("thread_time_ns", process_time_ns)):
        fn.__name__ = fn.__qualname__ = name
        fn.__module__ = "time"
        setattr(time, name, fn)
    if not hasattr(hashlib, "pbkdf2_hmac"):
        _pbkdf2_hmac.__module__ = "hashlib"
        _pbkdf2_hmac.__name__ = _pbkdf2_hmac.__qualname__ = "pbkdf2_hmac"
        hashlib.pbkdf2_hmac = _pbkdf2_hmac
    if not hasattr(hashlib, "scrypt"):
        try:
            from _eryx_scrypt import scrypt  # built into the runtime (runtime/eryx/eryx_scrypt.c)
        except ImportError:
            pass
        else:
            hashlib.scrypt = scrypt

    def start(self):
        raise RuntimeError("threads are not available in the sandbox")

    threading.Thread.start = start
    sys.meta_path.insert(0, _PatchingFinder(_IMPORT_PATCHES))


_NO_PROCESSES = "processes are not available in the sandbox"


def _no_processes(*args, **kwargs):
    raise RuntimeError(_NO_PROCESSES)


def _no_process_pool(*args, **kwargs):
    raise NotImplementedError(_NO_PROCESSES)  # what ProcessPoolExecutor raises where unsupported


def _patch_multiprocessing_process(module):
    module.BaseProcess.start = _no_processes


def _patch_multiprocessing_pool(module):
    def __init__(self, *args, **kwargs):
        self._state = module.INIT  # what Pool.__del__ looks at
        if isinstance(self, module.ThreadPool):  # multiprocessing.dummy.Pool too
            raise RuntimeError("threads are not available in the sandbox")
        raise RuntimeError(_NO_PROCESSES)

    module.Pool.__init__ = __init__


def _patch_futures_process(module):
    module._check_system_limits = _no_process_pool


# Modules patched after they are first imported, so that what WASI lacks is reported as such
# instead of with CPython's generic errors (AttributeError: os.pipe, os.WNOHANG, ...). Importing
# them up front would put multiprocessing into every interpreter's image.
_IMPORT_PATCHES = {
    "multiprocessing.process": _patch_multiprocessing_process,
    "multiprocessing.pool": _patch_multiprocessing_pool,
    "concurrent.futures.process": _patch_futures_process,
}


class _PatchingLoader:
    def __init__(self, loader, patch):
        self.loader, self.patch = loader, patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.patch(module)

    def __getattr__(self, name):  # get_source (tracebacks), resources: the real loader's
        return getattr(self.loader, name)


class _PatchingFinder:
    """Applies _IMPORT_PATCHES: finds the module as the finders after it would, and wraps its
    loader."""

    def __init__(self, patches):
        self.patches = patches

    def find_spec(self, name, path=None, target=None):
        patch = self.patches.get(name)
        if patch is None:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


def _prepare(header, payload):
    """Import what nearly every run needs, so that it is part of the memory image."""
    import asyncio  # noqa: F401
    import traceback  # noqa: F401

    import gc

    _install_event_loop()
    _guest_environment()
    _track_open()
    for name in header.get("imports") or ():
        __import__(name)
    # Everything alive now is part of the image: keep it out of garbage collections, which
    # would otherwise walk (and write to, dirtying copy-on-write pages) the whole image.
    gc.collect()
    gc.freeze()
    return {"ok": True}


def _prepare_packages(header, payload):
    """A SandboxFactory's image (API.md §10), on a copy of the runtime's: its packages (mounted
    read-only at header["path"]) join sys.path with their .pth files, then its imports run,
    then its setup_code (in the user namespace)."""
    import gc
    import importlib
    import site

    site.addsitedir(header["path"])
    importlib.invalidate_caches()
    for name in header.get("imports") or ():
        try:
            __import__(name)
        except BaseException as e:  # ExecutionInterrupted included: the host classifies it
            if isinstance(e, ExecutionInterrupted):
                raise
            return {"ok": False, "module": name, "error": "%s: %s" % (_type_name(type(e)), e)}
    setup = header.get("setup_code")
    if setup:
        # Objects that every sandbox would otherwise build again (a jinja2 Environment and its
        # lexer, compiled templates): made once, in the user namespace, and captured.
        try:
            exec(compile(setup, "<setup_code>", "exec"), _ns)
        except BaseException as e:
            if isinstance(e, ExecutionInterrupted):
                raise
            return {"ok": False, "setup_error": "%s: %s" % (_type_name(type(e)), e)}
        finally:
            _ns.pop(_result_variable, None)
        _setup_names.update((k, _ns[k]) for k in _user_names())
    gc.collect()
    gc.freeze()
    return {"ok": True}


def _compile_packages(header, payload):
    """A SandboxFactory's staged packages, mounted writable at header["path"] for this request
    only: compile their modules (not their tests) to hash-checked bytecode, in place. Sources
    that do not compile are left to fail at import, as in CPython."""
    import compileall
    import py_compile
    import re

    compileall.compile_dir(header["path"], quiet=2, workers=1, rx=re.compile(r"/tests?/"),
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return {"ok": True}


_HANDLERS = {
    REQ_CONFIGURE: _configure,  # noqa: F821
    REQ_RUN: _run,  # noqa: F821
    REQ_CLEAR_STATE: _clear_state,  # noqa: F821
    REQ_SNAPSHOT: _snapshot,  # noqa: F821
    REQ_RESTORE: _restore,  # noqa: F821
    REQ_PREPARE: _prepare,  # noqa: F821
    REQ_PREPARE_PACKAGES: _prepare_packages,  # noqa: F821
    REQ_COMPILE_PACKAGES: _compile_packages,  # noqa: F821
    REQ_OPEN_FDS: _open_fds,  # noqa: F821
    REQ_HOLD_FDS: _hold_fds,  # noqa: F821
}


def _handle(frame):
    try:
        header, payload = _decode(frame)
        out = _HANDLERS[header["op"]](header, payload)
        if type(out) is bytes:  # an encoded frame
            return out
        if isinstance(out, tuple):
            return _encode(out[0], out[1])
        return _encode(out)
    except ExecutionInterrupted:
        return _encode({"ok": False, "exc_type": "ExecutionInterrupted", "interrupted": True})
    except BaseException as e:  # a driver bug: report it instead of crashing the instance
        try:
            _write_stderr("".join(_traceback.format_exception(e)))
        except BaseException:
            pass
        return _encode({"ok": False, "driver_error": "%s: %s" % (_type_name(type(e)), e)})


_host.set_handler(_handle)  # noqa: F821
