"""What Sandbox and Session share: the engine handle, hooks, lifecycle and execute_async."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, NoReturn, Self

from ._config import EngineConfig
from ._dispatch import Hooks
from ._handle import Handle
from ._result import ExecuteResult
from ._runtime import call, runtime
from ._validate import check_code, check_stdin

if TYPE_CHECKING:
    import concurrent.futures

__all__ = ["Runner", "created_from"]

# The engine object a Sandbox or Session is being created from on this thread, when not the
# runtime: (factory handle, site_packages or None), set by SandboxFactory.create_sandbox.
_creating = threading.local()


@contextmanager
def created_from(handle: int, site_packages: str | None) -> Iterator[None]:
    """Sandboxes and Sessions constructed in this block (on this thread) come from the
    factory ``handle`` (API.md §10)."""
    _creating.owner = (handle, site_packages)
    try:
        yield
    finally:
        _creating.owner = None

_OnOutput = Callable[[int, str], None]
_OnCallback = Callable[[int, str, int], tuple[str, str]]
_NewFn = Callable[[int, bytes, int, "_OnOutput | None", "_OnCallback | None"], int]


class Runner:
    """Base of Sandbox and Session (not public)."""

    _kind: ClassVar[str]
    _max_async_workers: ClassVar[int | None]

    _handle: Handle | None = None
    _hooks: Hooks | None = None
    _config: EngineConfig

    def _open(self, config: EngineConfig, new: _NewFn, close: Callable[[int], None]) -> None:
        """Create the engine object with bridge function ``new``; ``close`` stops it.

        The caller has imported the bridge (``require_native``).
        """
        self._config = config
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        hooks = self._hooks = Hooks(
            self._kind, config.callbacks, config.on_stdout, config.on_stderr
        )
        owner = getattr(_creating, "owner", None)
        rt = runtime() if owner is None else owner[0]
        data = config.to_json()
        if owner is not None and owner[1] is not None:  # create_sandbox(site_packages=...)
            data = json.dumps({**json.loads(data), "site_packages": owner[1]}).encode()
        on_output = hooks.on_output if hooks.streams else None
        on_callback = hooks.on_callback if config.callbacks else None
        if config.vfs is None:
            handle = call(new, rt, data, 0, on_output, on_callback)
        else:
            with config.vfs._handle.use("VfsStorage is closed") as vfs_handle:
                handle = call(new, rt, data, vfs_handle, on_output, on_callback)
        # The closer must not reference self (see _dispatch.Hooks).
        self._handle = Handle(handle, lambda h: call(close, h))

    def _use(self) -> AbstractContextManager[int]:
        assert self._handle is not None
        return self._handle.use(f"{self._kind} is closed")

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (read-only)."""
        return self._handle is None or self._handle.closed

    def close(self) -> None:
        """Release the interpreter(s); idempotent.

        Runs in progress on other threads raise ``CancelledError``; a later ``execute`` raises
        ``ValueError``. Leaving a ``with`` block calls this.
        """
        handle = self._handle
        if handle is None:
            return
        try:
            handle.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._hooks is not None:
            self._hooks.close()
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def execute(self, code: str, *, stdin: str | bytes | None = None) -> ExecuteResult:
        """Run ``code``; implemented by Sandbox and Session."""
        raise NotImplementedError

    async def execute_async(self, code: str, *, stdin: str | bytes | None = None) -> ExecuteResult:
        """Like ``execute``, awaited without blocking the event loop.

        The run happens on a worker thread; its async callbacks run on the caller's event
        loop, so they can use the application's loop-bound objects. Cancelling the awaiting
        task interrupts the run and ``asyncio.CancelledError`` propagates; the object stays
        usable.

        Args:
            code: Python source text.
            stdin: What the guest's ``sys.stdin`` reads, as for ``execute``.

        Returns:
            The run's output, captured result and statistics.

        Raises:
            ExecutionError: As for ``execute``, and so are the other exceptions.
        """
        import asyncio

        from . import _eryx

        code = check_code(code)
        data = check_stdin(stdin)
        loop = asyncio.get_running_loop()
        token: int = _eryx.token_new()
        hooks = self._hooks
        if hooks is not None:  # async callbacks of this run run on the caller's loop
            hooks.bind_loop(token, loop)

        def finished(_: object) -> None:
            if hooks is not None:
                hooks.unbind_loop(token)
            _eryx.handle_free(token)

        future = self._get_executor().submit(self._execute, code, token, data)
        future.add_done_callback(finished)
        try:
            return await asyncio.wrap_future(future, loop=loop)
        except asyncio.CancelledError:
            try:
                _eryx.token_cancel(token)
            except ValueError:  # the run already ended and freed its token
                pass
            raise

    def _execute(
        self, code: str, token: int, stdin: bytes | None = None, options: bytes | None = None
    ) -> ExecuteResult:
        """Run validated ``code``; cancelling ``token`` (from bridge ``token_new``) interrupts it.
        ``options`` is the JSON of the CLI's run options (docs/BRIDGE.md): ``interactive``
        (compile as the REPL does: expression values are printed), ``filename`` (the name in
        tracebacks) and ``argv`` (the guest's ``sys.argv``)."""
        raise NotImplementedError

    def _get_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._executor_lock:
            if self.closed:
                raise ValueError(f"{self._kind} is closed")
            if self._executor is None:
                import concurrent.futures  # slow to import: only for execute_async

                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._max_async_workers,
                    thread_name_prefix=f"eryx-{self._kind.lower()}",
                )
            return self._executor

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._handle is not None:
                self._handle.finalize()
            if self._hooks is not None:
                self._hooks.close()
            executor = getattr(self, "_executor", None)
            if executor is not None:
                executor.shutdown(wait=False)
        except BaseException:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(f"cannot pickle '{self._kind}' object")

    def __copy__(self) -> NoReturn:
        raise TypeError(f"cannot copy '{self._kind}' object")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError(f"cannot copy '{self._kind}' object")
