# The goeryx guest driver: runs inside the guest interpreter as module _eryx_driver (not in
# sys.modules). `_host` is the host module object injected by eryx_boot (docs/ABI.md); the
# OP_*, REQ_* and MAX_* constants come from the prelude the engine prepends
# (goeryx/internal/protocol). Requests and responses are frames: a little-endian u32 header
# length, a JSON header, then a raw payload (docs/PROTOCOL.md).
#
# Nothing defined here may leak into user globals, and an exception must never survive from one
# run into the next.

import builtins
import json
import linecache
import struct
import sys
import types

_LEN = struct.Struct("<I")
_CO_COROUTINE = 0x0080
_PyCF_ALLOW_TOP_LEVEL_AWAIT = 0x2000
_USER_FILE = "<user>"
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
        header = json.loads(raw)
        if n <= 32 and len(_header_memo) < 16:
            _header_memo[raw] = header
    return dict(header), frame[4 + n :]


def _encode(header, payload=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
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

_main = types.ModuleType("__main__")
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
        if tb.tb_frame.f_code.co_filename == _USER_FILE:
            frames.append(tb)
        tb = tb.tb_next
    out = None
    for t in reversed(frames):
        out = types.TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
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
    import traceback

    try:
        _strip_frames(exc, set())
        text = "".join(traceback.format_exception(exc))
    except BaseException:  # a broken __str__ must not break the driver
        text = "%s: <exception str() failed>\n" % _type_name(type(exc))
    _write_stderr(text)


def _write_stderr(text):
    stream = sys.__stderr__
    try:
        stream.write(text)
        stream.flush()
    except BaseException:
        pass


def _type_name(t):
    mod = getattr(t, "__module__", None)
    qual = getattr(t, "__qualname__", t.__name__)
    if mod in (None, "builtins"):
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


def _compile(code):
    co = _compiled.get(code)
    if co is None:
        co = compile(code, _USER_FILE, "exec", _PyCF_ALLOW_TOP_LEVEL_AWAIT, True)
        if len(code) <= 4096:
            if len(_compiled) >= _COMPILED_MAX:
                _compiled.clear()
            _compiled[code] = co
    return co


def _run(header, payload):
    _drain_interrupt()
    code = payload.decode("utf-8")
    _install_callbacks()
    linecache.cache[_USER_FILE] = (len(code), None, code.splitlines(True), _USER_FILE)
    failed = False
    interrupted = False
    exc_type = None
    try:
        try:
            co = _compile(code)
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
        if failed:
            response = {"ok": False, "exc_type": exc_type, "interrupted": interrupted}
        else:
            captured = _capture_result()
            response = dict(_RUN_OK, **captured) if captured else _RUN_OK_FRAME
    except ExecutionInterrupted:
        response = {"ok": False, "exc_type": "ExecutionInterrupted", "interrupted": True}
    finally:
        _ns.pop(_result_variable, None)
        sys.last_exc = sys.last_type = sys.last_value = sys.last_traceback = None
    return response


def _capture_result():
    if _result_variable not in _ns:
        return {}
    value = _ns[_result_variable]
    try:
        text = json.dumps(value, allow_nan=False)
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

    loop = asyncio.new_event_loop()
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


def _install_event_loop():
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
                fut = _pending_callbacks.pop(item["id"], None)
                if fut is None or fut.done():
                    continue
                if "error" in item:
                    fut.set_exception(_callback_exception(item["error"]))
                else:
                    fut.set_result(item.get("result"))
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


def _encode_args(name, args, kwargs):
    spec = _callbacks_by_name.get(name)
    if args:
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
    try:
        return json.dumps(kwargs, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise TypeError("callback '%s' arguments are not JSON-serializable: %s" % (name, e)) from None


async def _call_callback(name, args, kwargs):
    import asyncio

    payload = _encode_args(name, args, kwargs)
    header, _ = _host_call(OP_CALLBACK_START, {"name": name}, payload)  # noqa: F821
    if "error" in header:  # refused, or failed at once
        raise _callback_exception(header["error"])
    if "result" in header:  # completed at once: no event-loop round trip
        return header["result"]
    cid = header["id"]
    fut = asyncio.get_running_loop().create_future()
    _pending_callbacks[cid] = fut
    try:
        return await fut
    except asyncio.CancelledError:
        if _pending_callbacks.pop(cid, None) is not None:
            _host_call(OP_CALLBACK_CANCEL, {"id": cid})  # noqa: F821
        raise


class EryxCallback:
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __call__(self, *args, **kwargs):
        return _call_callback(self._name, args, kwargs)

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
        return _call_callback(self._path, args, kwargs)

    def __dir__(self):
        return sorted(self._children)

    def __repr__(self):
        return "<EryxNamespace %r>" % self._path


async def invoke(name, /, *args, **kwargs):
    """Call any host callback by its full name."""
    return await _call_callback(name, args, kwargs)


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


_eryx_guest = types.ModuleType("eryx_guest", "Host callbacks of the eryx sandbox.")
_eryx_guest.invoke = invoke
_eryx_guest.list_callbacks = list_callbacks
_eryx_guest.CallbackError = CallbackError
_eryx_guest.CallbackLimitError = CallbackLimitError
sys.modules["eryx_guest"] = _eryx_guest
for _f in (invoke, list_callbacks):
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
    _result_variable = header.get("result_variable") or "result"
    _callbacks = header.get("callbacks") or []
    _callbacks_by_name = {c["name"]: c for c in _callbacks}
    _guest_cache = None
    return {"ok": True}


def _user_names():
    return [k for k in _ns if k not in _MODULE_DUNDERS and k not in _injected]


def _clear_state(header, payload):
    for k in _user_names():
        del _ns[k]
    return {"ok": True}


def _unsnapshottable():
    """Types excluded from snapshots even where dill could pickle them: they stand for live
    resources (API.md §8.4)."""
    import io
    import socket

    return (types.ModuleType, io.IOBase, types.GeneratorType, types.CoroutineType,
            types.AsyncGeneratorType, types.FrameType, types.TracebackType, socket.socket)


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
    import os

    fds, misses, fd = [], 0, 3
    while misses < 32:
        try:
            os.fstat(fd)
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
    import os

    wanted = set(header.get("fds") or ())
    if not wanted:
        return {"ok": True}
    top, held = max(wanted), []
    try:
        while True:
            fd = os.open("/", os.O_RDONLY)
            if fd > top:
                os.close(fd)
                break
            held.append(fd)
    except OSError:
        pass
    for fd in held:
        if fd not in wanted:
            os.close(fd)
    return {"ok": True}


def _prepare(header, payload):
    """Import what nearly every run needs, so that it is part of the memory image."""
    import asyncio  # noqa: F401
    import traceback  # noqa: F401

    import gc

    _install_event_loop()
    for name in header.get("imports") or ():
        __import__(name)
    # Everything alive now is part of the image: keep it out of garbage collections, which
    # would otherwise walk (and write to, dirtying copy-on-write pages) the whole image.
    gc.collect()
    gc.freeze()
    return {"ok": True}


_HANDLERS = {
    REQ_CONFIGURE: _configure,  # noqa: F821
    REQ_RUN: _run,  # noqa: F821
    REQ_CLEAR_STATE: _clear_state,  # noqa: F821
    REQ_SNAPSHOT: _snapshot,  # noqa: F821
    REQ_RESTORE: _restore,  # noqa: F821
    REQ_PREPARE: _prepare,  # noqa: F821
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
        import traceback

        _write_stderr("".join(traceback.format_exception(e)))
        return _encode({"ok": False, "driver_error": "%s: %s" % (_type_name(type(e)), e)})


_host.set_handler(_handle)  # noqa: F821
