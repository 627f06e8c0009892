"""Session: one persistent guest interpreter across runs (API.md §8)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ._callbacks import CallbackRegistry
from ._config import EngineConfig
from ._limits import ResourceLimits
from ._netconfig import NetConfig
from ._result import ExecuteResult, make_result
from ._runner import Runner
from ._runtime import call, require_native
from ._sandbox import Volume
from ._validate import (
    INT64_MAX,
    check_bytes_like,
    check_code,
    check_instance,
    check_int,
    check_stdin,
)
from ._vfs import VfsStorage

__all__ = ["Session"]

_REENTRANT = "re-entrant call on a Session from its own callback"


class Session(Runner):
    """A persistent interpreter: variables, functions, imports and module state survive
    between runs.

    One operation runs at a time; other threads queue. Calling an operation from the
    session's own callbacks or output handlers raises ``RuntimeError``.
    """

    _kind = "Session"
    _max_async_workers = 1

    def __init__(
        self,
        *,
        resource_limits: ResourceLimits | None = None,
        execution_timeout_ms: int | None = None,
        max_fuel: int | None = None,
        vfs: VfsStorage | None = None,
        vfs_mount_path: str | None = None,
        network: NetConfig | None = None,
        callbacks: CallbackRegistry | Sequence[dict[str, Any] | CallbackRegistry] | None = None,
        volumes: Sequence[Volume] | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        result_variable: str | None = None,
    ) -> None:
        given = check_instance(
            "resource_limits", resource_limits, ResourceLimits, "a ResourceLimits"
        )
        limits = ResourceLimits(execution_timeout_ms=None) if given is None else given.__copy__()
        if execution_timeout_ms is not None:
            limits.execution_timeout_ms = execution_timeout_ms
        if max_fuel is not None:
            limits.max_fuel = max_fuel
        config = EngineConfig.validate(
            limits=limits,
            network=network,
            callbacks=callbacks,
            volumes=volumes,
            vfs=vfs,
            vfs_mount_path=vfs_mount_path,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            result_variable=result_variable,
        )
        self._op_lock = threading.Lock()
        self._limits_lock = threading.Lock()
        self._last_skipped: list[str] = []
        self._final_count = 0
        require_native()
        from . import _eryx

        self._open(config, _eryx.session_new, _eryx.session_close)

    # -- serialisation of operations ------------------------------------------------------

    def _check_reentry(self) -> None:
        if self._hooks is not None and self._hooks.in_hook():
            raise RuntimeError(_REENTRANT)

    @contextmanager
    def _operation(self) -> Iterator[int]:
        """The handle, held exclusively for one operation."""
        self._check_reentry()
        with self._op_lock, self._use() as h:
            yield h

    # -- runs -------------------------------------------------------------------------------

    def execute(self, code: str, *, stdin: str | bytes | None = None) -> ExecuteResult:
        """Run ``code`` in the persistent namespace and return its result.

        ``stdin`` (``str`` or ``bytes``) is what the guest's ``sys.stdin`` reads in this run
        (``input()``); without it ``input()`` raises ``EOFError``. ``execution_count`` is
        incremented before the run (failed runs count).
        """
        return self._execute(check_code(code), 0, check_stdin(stdin))

    def _execute(
        self, code: str, token: int, stdin: bytes | None = None, options: bytes | None = None
    ) -> ExecuteResult:
        from . import _eryx

        with self._operation() as h:
            return make_result(call(_eryx.session_execute, h, code, token, stdin, options))

    async def execute_async(self, code: str, *, stdin: str | bytes | None = None) -> ExecuteResult:
        """``execute`` on a worker thread, without blocking the event loop.

        Cancelling the awaiting task interrupts the run as a timeout would (the state is kept
        if the code honours the interrupt) and ``asyncio.CancelledError`` propagates; later
        operations queue until the run has stopped.
        """
        self._check_reentry()
        return await super().execute_async(code, stdin=stdin)

    def reset(self) -> None:
        """Replace the interpreter: user globals are gone, ``execution_count`` becomes 0; the
        VFS, volumes, limits and callbacks are kept."""
        from . import _eryx

        with self._operation() as h:
            call(_eryx.session_reset, h)

    def clear_state(self) -> None:
        """Delete the user globals, keeping the interpreter, its modules and
        ``execution_count``."""
        from . import _eryx

        with self._operation() as h:
            call(_eryx.session_clear_state, h)

    def snapshot_state(self) -> bytes:
        """Serialise the user globals; names that cannot be serialised are skipped and listed
        in ``last_snapshot_skipped``."""
        from . import _eryx

        with self._operation() as h:
            data, skipped = call(_eryx.session_snapshot, h)
            self._last_skipped = list(skipped)
        return bytes(data)

    def restore_state(self, data: Any) -> None:
        """Merge a snapshot (any bytes-like object) into the current globals. Restoring may
        run code inside the guest: trust snapshots like code."""
        from . import _eryx

        buffer = check_bytes_like("data", data)
        with self._operation() as h:
            call(_eryx.session_restore, h, buffer)

    def close(self) -> None:
        """Close the session; a run in progress on another thread raises ``CancelledError``
        and later operations raise ``ValueError("Session is closed")``. Idempotent."""
        from . import _eryx

        self._check_reentry()
        if self._handle is not None:
            with self._handle.peek() as h:
                if h is not None:
                    self._final_count = call(_eryx.session_execution_count, h)
        super().close()

    # -- properties -------------------------------------------------------------------------

    @property
    def execution_count(self) -> int:
        """Runs since creation or the last reset (never blocks)."""
        from . import _eryx

        if self._handle is None:
            return self._final_count
        with self._handle.peek() as h:
            if h is None:
                return self._final_count
            return call(_eryx.session_execution_count, h)

    @property
    def last_snapshot_skipped(self) -> list[str]:
        """The names the last ``snapshot_state()`` left out."""
        return list(self._last_skipped)

    def _set_limits(self, name: str, value: object) -> None:
        from . import _eryx

        checked = check_int(name, value, 1, INT64_MAX, optional=True)
        with self._limits_lock:
            limits = self._config.limits.__copy__()
            if name == "execution_timeout_ms":
                limits.execution_timeout_ms = checked
            else:
                limits.max_fuel = checked
            with self._use() as h:
                call(_eryx.session_set_limits, h, limits.execution_timeout_ms, limits.max_fuel)
            self._config.limits = limits

    @property
    def execution_timeout_ms(self) -> int | None:
        """Timeout of later runs in milliseconds, or ``None``."""
        return self._config.limits.execution_timeout_ms

    @execution_timeout_ms.setter
    def execution_timeout_ms(self, value: int | None) -> None:
        self._set_limits("execution_timeout_ms", value)

    @property
    def fuel_limit(self) -> int | None:
        """Fuel budget of later runs, or ``None`` for no metering."""
        return self._config.limits.max_fuel

    @fuel_limit.setter
    def fuel_limit(self, value: int | None) -> None:
        self._set_limits("fuel_limit", value)

    @property
    def resource_limits(self) -> ResourceLimits:
        """A copy of the limits in effect."""
        return self._config.limits.__copy__()

    @property
    def vfs(self) -> VfsStorage | None:
        """The ``vfs=`` object, or ``None``."""
        return self._config.vfs

    @property
    def vfs_mount_path(self) -> str | None:
        """Where ``vfs`` is mounted (default ``"/data"``), or ``None`` without ``vfs``."""
        return self._config.vfs_mount_path

    def __repr__(self) -> str:
        text = f"Session(execution_count={self.execution_count}"
        if self._config.vfs_mount_path is not None:
            text += f", vfs_mount_path={self._config.vfs_mount_path!r}"
        return text + (", closed=True)" if self.closed else ")")


Session.__module__ = "eryx"
