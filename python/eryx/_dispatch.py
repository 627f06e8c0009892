"""The bridge's calls back into Python: output streaming and callback dispatch (API.md §5.3,
§7.3; docs/BRIDGE.md "Calls back into Python").

``Hooks`` must not reference its Sandbox or Session: the bridge keeps ``on_output`` and
``on_callback`` alive until the handle is freed, and a reference back would keep the owner
from ever being collected.
"""

from __future__ import annotations

import _thread
import contextvars
import itertools
import json
import math
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from ._callbacks import CallbackDef

if TYPE_CHECKING:
    import asyncio
    import logging

# asyncio is imported on first use of an async callback: it is slow to import.

__all__ = ["Hooks", "encode_result", "describe_exception"]

def _logger() -> logging.Logger:
    import logging  # slow to import: only when a callback raised

    return logging.getLogger("eryx.callbacks")

# Keys of the Hooks whose callback or output handler is running in the current context. A
# ContextVar (not a thread-local) so that it follows an async callback into its task and into
# asyncio.to_thread.
_ACTIVE: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "eryx_active_hooks", default=frozenset()
)
_keys = itertools.count(1)

STDOUT = 1
STDERR = 2


class _NotJSON(Exception):
    def __init__(self, type_name: str) -> None:
        super().__init__(type_name)
        self.type_name = type_name


def _to_json_value(value: object, active: set[int]) -> Any:
    """``value`` with tuples turned into lists; raises _NotJSON naming the offending type."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON("float")
        return value
    if isinstance(value, (list, tuple, dict)):
        if id(value) in active:  # a cycle
            raise _NotJSON(type(value).__name__)
        active.add(id(value))
        try:
            if isinstance(value, dict):
                if not all(isinstance(k, str) for k in value):
                    raise _NotJSON(type(value).__name__)
                return {k: _to_json_value(v, active) for k, v in value.items()}
            return [_to_json_value(v, active) for v in value]
        finally:
            active.discard(id(value))
    raise _NotJSON(type(value).__name__)


_OK_NULL = ("ok", "null")


def encode_result(value: object) -> tuple[str, str]:
    """``("ok", json)`` or ``("not_json", type name)`` for a callback's return value."""
    if value is None:  # the most common result: no walk, no encoder
        return _OK_NULL
    try:
        return ("ok", json.dumps(_to_json_value(value, set()), ensure_ascii=True))
    except _NotJSON as exc:
        return ("not_json", exc.type_name)


def describe_exception(exc: BaseException) -> str:
    """``"<ExcType>: <message>"``, as the guest's ``CallbackError`` shows it."""
    try:
        message = str(exc)
    except Exception:
        message = "<exception str() failed>"
    return f"{type(exc).__qualname__}: {message}"


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class _Pending:
    """An async callback scheduled on an event loop from another thread. ``wait`` blocks on a
    plain lock that the task's completion releases: concurrent.futures (run_coroutine_threadsafe
    and wait) costs several times a no-op call in futures, waiters and condition variables."""

    __slots__ = ("_loop", "_coro", "_done", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> None:
        self._loop, self._coro = loop, coro
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._task: asyncio.Task[Any] | None = None

    def schedule(self) -> None:
        """Queues the start on the loop; RuntimeError if the loop is closed."""
        self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:  # on the loop
        import asyncio

        if sys.version_info >= (3, 12):
            # The first step runs now rather than in the next loop iteration: a callback that
            # does not wait finishes here.
            task = asyncio.Task(self._coro, loop=self._loop, eager_start=True)
        else:
            task = self._loop.create_task(self._coro)
        self._task = task
        if task.done():
            self._done.release()
        else:
            task.add_done_callback(lambda _: self._done.release())

    def wait(self, timeout: float | None) -> bool:
        """Whether the task finished within ``timeout`` seconds (None: no limit)."""
        return self._done.acquire(timeout=-1 if timeout is None else min(timeout, _thread.TIMEOUT_MAX))

    def cancel(self) -> None:
        """Cancels the task (after a timeout); never blocks."""

        def cancel() -> None:
            if self._task is not None:
                self._task.cancel()

        try:
            self._loop.call_soon_threadsafe(cancel)  # queued after _start
        except RuntimeError:  # the loop is closed: its tasks were cancelled
            pass

    def result(self) -> Any:
        """The finished task's value; raises its exception, or _Cancelled."""
        task = self._task
        if task is None or task.cancelled():
            raise _Cancelled
        return task.result()


class _Cancelled(Exception):
    pass


class _LoopThread:
    """A private event loop on its own daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, coro: Coroutine[Any, Any, Any]) -> _Pending:
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError("the callback event loop is closed")
            import asyncio

            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._run, args=(self._loop,), name=self._name, daemon=True
                )
                self._thread.start()
            # Submitted under the lock, so it is queued before a stop() and cancelled by it.
            pending = _Pending(self._loop, coro)
            pending.schedule()
            return pending

    def is_current(self) -> bool:
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    def stop(self) -> None:
        """Cancel pending callbacks and stop the loop; never blocks."""
        with self._lock:
            self._closed = True
            loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # already closed
                pass

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        import asyncio

        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()


class Hooks:
    """Implements the bridge's ``on_output`` and ``on_callback`` for one Sandbox or Session."""

    def __init__(
        self,
        owner: str,
        callbacks: Sequence[CallbackDef],
        on_stdout: Callable[[str], Any] | None,
        on_stderr: Callable[[str], Any] | None,
    ) -> None:
        self._key = next(_keys)
        self._callbacks = tuple(callbacks)
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._loop = _LoopThread(f"eryx-{owner.lower()}-callbacks")
        # The event loops of the execute_async calls in progress, by their bridge token: their
        # async callbacks run there, so they can use the application's loop-bound objects.
        self._caller_loops: dict[int, asyncio.AbstractEventLoop] = {}

    @property
    def streams(self) -> bool:
        return self._on_stdout is not None or self._on_stderr is not None

    def in_hook(self) -> bool:
        """Whether the caller is (inside) one of this object's callbacks or output handlers."""
        return self._key in _ACTIVE.get() or self._loop.is_current()

    def close(self) -> None:
        """Stop the private event loop, cancelling async callbacks still running."""
        self._loop.stop()

    def bind_loop(self, token: int, loop: asyncio.AbstractEventLoop) -> None:
        """Run the async callbacks of the execute_async call ``token`` on ``loop``."""
        self._caller_loops[token] = loop

    def unbind_loop(self, token: int) -> None:
        self._caller_loops.pop(token, None)

    def on_output(self, stream: int, chunk: str) -> None:
        """Bridge hook: one raw chunk of guest output. Exceptions propagate to the bridge,
        which reports them through ``sys.unraisablehook``."""
        handler = self._on_stdout if stream == STDOUT else self._on_stderr
        if handler is None:
            return
        token = _ACTIVE.set(_ACTIVE.get() | {self._key})
        try:
            handler(chunk)
        finally:
            _ACTIVE.reset(token)

    def on_callback(
        self, index: int, args_json: str, timeout_ms: int, run_token: int = 0
    ) -> tuple[str, str]:
        """Bridge hook: run callback ``index`` with the JSON keyword arguments; ``run_token`` is
        the bridge token of the execute_async call whose run made it (0: a sync execute).

        Returns ``("ok", json)``, ``("raised", "<ExcType>: <message>")``,
        ``("not_json", "<type name>")`` or ``("timeout", "")``.
        """
        token = _ACTIVE.set(_ACTIVE.get() | {self._key})
        try:
            return self._call(index, args_json, timeout_ms, run_token)
        finally:
            _ACTIVE.reset(token)

    def _submit(self, coro: Coroutine[Any, Any, Any], run_token: int) -> _Pending:
        """Schedule an async callback: on the event loop of the execute_async call that made
        it (the caller's loop is free: it awaits the run), else on the private loop."""
        loop = self._caller_loops.get(run_token) if run_token else None
        if loop is not None and not loop.is_closed():
            import asyncio

            key = self._key

            async def marked() -> Any:  # in_hook() inside the callback, as on the private loop
                _ACTIVE.set(_ACTIVE.get() | {key})
                return await coro

            pending = _Pending(loop, marked())
            try:
                pending.schedule()
                return pending
            except RuntimeError:  # the loop closed meanwhile
                pending._coro.close()
        return self._loop.submit(coro)

    def _call(self, index: int, args_json: str, timeout_ms: int, run_token: int) -> tuple[str, str]:
        if not 0 <= index < len(self._callbacks):
            return ("raised", f"RuntimeError: no callback with index {index}")
        callback = self._callbacks[index]
        try:
            kwargs = {} if args_json == "{}" else json.loads(args_json)
        except ValueError as exc:
            return ("raised", f"ValueError: invalid callback arguments: {exc}")
        if not isinstance(kwargs, dict):
            return ("raised", "TypeError: callback arguments must be a JSON object")
        try:
            value = callback.fn(**kwargs)
            if value is not None and isinstance(value, Awaitable):
                coro = value if isinstance(value, Coroutine) else _await(value)
                pending = self._submit(coro, run_token)
                if not pending.wait(timeout_ms / 1000 if timeout_ms > 0 else None):
                    pending.cancel()
                    return ("timeout", "")
                try:
                    value = pending.result()
                except _Cancelled:
                    return ("raised", "CancelledError: the callback was cancelled")
        except BaseException as exc:
            _logger().debug("callback %r raised", callback.name, exc_info=True)
            return ("raised", describe_exception(exc))
        return encode_result(value)
