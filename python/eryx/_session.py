"""Session: one persistent guest interpreter across runs (API.md §8)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ._mcp_manager import MCPManager

__all__ = ["Session"]

_REENTRANT = "re-entrant call on a Session from its own callback"


class Session(Runner):
    """A persistent interpreter: variables, functions, imports and module state survive
    between runs.

    One operation runs at a time; other threads queue. Calling an operation from the
    session's own callbacks or output handlers raises ``RuntimeError``. The session stays
    usable after every failure: an ordinary exception, or a timeout the code honoured, keeps
    the state; if the interpreter had to be stopped (fuel exhausted, hard timeout, guest
    termination) the session resets itself and the exception has ``state_lost=True``.
    A ``Session`` is a context manager: leaving the ``with`` block calls ``close()``.

    Args:
        resource_limits: The limits of each run (copied). Default: ``ResourceLimits`` with
            ``execution_timeout_ms=None``, i.e. no execution timeout, a 128 MiB memory cap,
            a 10 s callback timeout, 1000 callback calls per run, no fuel metering.
        execution_timeout_ms: Overrides ``resource_limits.execution_timeout_ms`` when not
            ``None``. Can be changed later through the property of the same name.
        max_fuel: Overrides ``resource_limits.max_fuel`` when not ``None``. Can be changed
            later through ``fuel_limit``.
        vfs: A ``VfsStorage`` mounted read/write at ``vfs_mount_path``. Without it the session
            has a private ``/data`` store that lives as long as the session (``reset()``
            keeps it).
        vfs_mount_path: Where ``vfs`` is mounted; default ``"/data"``. Only together with
            ``vfs``.
        network: The network policy (copied). Default ``None``: no connections.
        callbacks: Host functions the guest may call, as for ``Sandbox``.
        volumes: ``(host_path, guest_path, read_only)`` tuples, as for ``Sandbox``.
        on_stdout: Called with each chunk the guest writes to stdout, as for ``Sandbox``.
        on_stderr: The same for stderr.
        result_variable: The module-level name captured as a run's result (and deleted after
            every run). Default ``"result"``.
        mcp: An ``MCPManager``: each tool of its servers becomes the async callback
            ``mcp.<server>.<tool>``, awaited in the guest as ``await mcp.srv.tool(...)``,
            under the callback limits (a tool error raises ``RuntimeError``).

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument has a wrong value (the message names it).
        InitializationError: The interpreter could not be created (for example a volume's
            host path is missing, or the memory cap is too small).

    Example:
        ```python
        import eryx

        with eryx.Session() as session:
            session.execute("x = 20")
            print(session.execute("print(x + 22)").stdout)  # 42
        ```
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
        mcp: MCPManager | None = None,
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
            mcp=mcp,
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

        ``execution_count`` is incremented before the run (failed runs count). The result
        variable is captured and then deleted from the namespace; when the code sets none and
        ends in an expression statement, that expression's value (unless ``None``) is the
        result.

        Args:
            code: Python source text.
            stdin: What the guest's ``sys.stdin`` reads in this run (``input()``); without it
                ``input()`` raises ``EOFError``.

        Returns:
            The run's output, captured result and statistics.

        Raises:
            ExecutionError: The code raised an uncaught exception, exited with a non-zero
                ``sys.exit`` code, or the interpreter terminated.
            TimeoutError: ``execution_timeout_ms`` expired.
            ResourceLimitError: The memory cap or the fuel budget was exhausted.
            CancelledError: Another thread closed the session during the run.
            TypeError: ``code`` is not a ``str``, or ``stdin`` not ``str``/``bytes``.
            ValueError: ``code`` contains NUL or a lone surrogate, or the session is closed.
            RuntimeError: Called from the session's own callback or output handler.
        """
        return self._execute(check_code(code), 0, check_stdin(stdin))

    def _execute(
        self, code: str, token: int, stdin: bytes | None = None, options: bytes | None = None
    ) -> ExecuteResult:
        from . import _eryx

        with self._operation() as h:
            return make_result(call(_eryx.session_execute, h, code, token, stdin, options))

    async def execute_async(self, code: str, *, stdin: str | bytes | None = None) -> ExecuteResult:
        """Like ``execute``, awaited without blocking the event loop.

        Cancelling the awaiting task interrupts the run as a timeout would (the state is kept
        if the code honours the interrupt) and ``asyncio.CancelledError`` propagates; later
        operations queue until the run has stopped. Async callbacks of the run run on the
        caller's event loop.

        Args:
            code: Python source text.
            stdin: What the guest's ``sys.stdin`` reads, as for ``execute``.

        Returns:
            The run's output, captured result and statistics.
        """
        self._check_reentry()
        return await super().execute_async(code, stdin=stdin)

    def reset(self) -> None:
        """Replace the interpreter with a fresh one.

        User globals, imported modules and module state are gone and ``execution_count``
        becomes 0; the files in ``/data`` and volumes, the limits and the callbacks are kept.
        """
        from . import _eryx

        with self._operation() as h:
            call(_eryx.session_reset, h)

    def clear_state(self) -> None:
        """Delete the user globals, keeping the interpreter, its modules and
        ``execution_count``.

        The module dunders and the injected callback names stay.
        """
        from . import _eryx

        with self._operation() as h:
            call(_eryx.session_clear_state, h)

    def snapshot_state(self) -> bytes:
        """Serialise the user globals by value.

        Functions, classes and instances defined in the session are included, and so are
        variables bound to ``None``. Values that cannot be serialised (modules, open files,
        generators, ...) are skipped without error, and their names are listed in
        ``last_snapshot_skipped``.

        Returns:
            A snapshot for ``restore_state``, on this or another session of the same goeryx
            version.

        Raises:
            ResourceLimitError: The snapshot is larger than 10 MiB (``limit="snapshot"``).
        """
        from . import _eryx

        with self._operation() as h:
            data, skipped = call(_eryx.session_snapshot, h)
            self._last_skipped = list(skipped)
        return bytes(data)

    def restore_state(self, data: Any) -> None:
        """Merge a snapshot into the current globals.

        Names in the snapshot overwrite the current ones; other globals are kept.
        ``execution_count`` and the files are unchanged. Restoring can run code inside the
        guest (never on the host): trust snapshots like code.

        Args:
            data: Bytes-like output of ``snapshot_state``.

        Raises:
            ExecutionError: ``data`` is not a goeryx snapshot, is truncated, or failed to
                deserialise in the guest.
            InitializationError: The snapshot was made by an incompatible goeryx or guest
                Python version.
            ResourceLimitError: ``data`` is larger than 10 MiB.
            TypeError: ``data`` is not bytes-like.
        """
        from . import _eryx

        buffer = check_bytes_like("data", data)
        with self._operation() as h:
            call(_eryx.session_restore, h, buffer)

    def close(self) -> None:
        """Close the session; idempotent.

        A run in progress on another thread raises ``CancelledError``, and later operations
        raise ``ValueError("Session is closed")``. Leaving a ``with`` block calls this.
        """
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
        """Runs since creation or the last ``reset()``, failed ones included (read-only; never
        blocks)."""
        from . import _eryx

        if self._handle is None:
            return self._final_count
        with self._handle.peek() as h:
            if h is None:
                return self._final_count
            return call(_eryx.session_execution_count, h)

    @property
    def last_snapshot_skipped(self) -> list[str]:
        """The names the last ``snapshot_state()`` left out, in namespace order (a copy)."""
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
        """Timeout of later runs in milliseconds, or ``None`` for none; settable."""
        return self._config.limits.execution_timeout_ms

    @execution_timeout_ms.setter
    def execution_timeout_ms(self, value: int | None) -> None:
        self._set_limits("execution_timeout_ms", value)

    @property
    def fuel_limit(self) -> int | None:
        """Fuel budget of later runs, or ``None`` for no metering; settable."""
        return self._config.limits.max_fuel

    @fuel_limit.setter
    def fuel_limit(self, value: int | None) -> None:
        self._set_limits("fuel_limit", value)

    @property
    def resource_limits(self) -> ResourceLimits:
        """A copy of the limits in effect (read-only: change the timeout and fuel through
        ``execution_timeout_ms`` and ``fuel_limit``)."""
        return self._config.limits.__copy__()

    @property
    def vfs(self) -> VfsStorage | None:
        """The ``VfsStorage`` passed as ``vfs=``, or ``None`` (read-only)."""
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
