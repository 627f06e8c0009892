"""Sandbox: every run in a fresh interpreter (API.md §6)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._callbacks import CallbackRegistry
from ._config import EngineConfig, check_secrets
from ._limits import ResourceLimits
from ._netconfig import NetConfig
from ._result import ExecuteResult, make_result
from ._runner import Runner
from ._runtime import call, require_native
from ._validate import check_bool, check_code, check_instance, check_stdin
from ._vfs import VfsStorage

if TYPE_CHECKING:
    from ._mcp_manager import MCPManager

__all__ = ["Sandbox"]

Volume = tuple["str | os.PathLike[str]", str, bool]


class Sandbox(Runner):
    """Runs untrusted Python code; each ``execute`` gets a fresh guest interpreter.

    Nothing outlives a run except what the host keeps: the secret placeholders, the state of
    host callbacks, files written to writable volumes and to a shared ``vfs`` store. ``execute``
    may be called from any number of threads at once, each call in its own interpreter.
    Construction is cheap (the compiled runtime is loaded once per process and cached on disk).
    A ``Sandbox`` is a context manager: leaving the ``with`` block calls ``close()``.

    Args:
        resource_limits: The limits of each run (copied). Default: ``ResourceLimits()``, i.e. a
            30 s timeout, a 128 MiB memory cap, a 10 s callback timeout, 1000 callback calls
            per run, no fuel metering.
        network: The network policy (copied). Default ``None``: the guest cannot open any
            connection (``PermissionError`` in the guest).
        callbacks: Host functions the guest may call: a ``CallbackRegistry``, or a list or
            tuple whose items are registries or dicts with the keys ``name``, ``fn`` and
            optionally ``description`` and ``schema``. When two share a name, the later wins.
        secrets: ``{"NAME": {"value": "...", "allowed_hosts": [...]}}``. The guest sees a
            random placeholder in ``os.environ["NAME"]``, never the value; the host
            substitutes the real value only in HTTP request headers sent to the allowed
            hosts. ``allowed_hosts`` is optional.
        scrub_stdout: Replace secret placeholders with ``[REDACTED]`` in ``stdout`` (the
            result's, an error's, and ``on_stdout`` chunks). Default: on if and only if
            ``secrets`` is non-empty.
        scrub_stderr: The same for ``stderr``, tracebacks and ``on_stderr`` chunks.
        scrub_result: The same for ``result_json`` and ``result_error``. Default: off.
        scrub_files: The same for writes to ``/data`` and to writable volumes. Default: on if
            and only if ``secrets`` is non-empty.
        volumes: Host files or directories to mount, as ``(host_path, guest_path, read_only)``
            tuples. ``guest_path`` must be absolute, not ``/``, and must not overlap
            ``/data``, ``/site-packages``, the guest's stdlib or another volume.
        vfs: A ``VfsStorage`` mounted read/write at ``/data`` instead of the private store
            each run gets by default; it is shared with the host and other sandboxes.
        on_stdout: Called with each chunk the guest writes to stdout, as it is written
            (untrimmed, on a host thread). Exceptions it raises go to
            ``sys.unraisablehook``.
        on_stderr: The same for stderr.
        result_variable: The module-level name captured as the run's result. Default
            ``"result"``.
        mcp: An ``MCPManager``: each tool of its servers becomes the async callback
            ``mcp.<server>.<tool>``, awaited in the guest as ``await mcp.srv.tool(...)``,
            under the callback limits (a tool error raises ``RuntimeError``).

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument has a wrong value (the message names it).
        InitializationError: A volume's host path does not exist, or ``max_memory_bytes`` is
            too small to start an interpreter.

    Example:
        ```python
        import eryx

        with eryx.Sandbox() as sandbox:
            print(sandbox.execute("print(6 * 7)").stdout)  # 42
        ```
    """

    _kind = "Sandbox"
    # execute_async runs each call on a worker thread; runs are independent, so the pool only
    # bounds the threads, far above what the engine runs at once.
    _max_async_workers = 1024

    def __init__(
        self,
        *,
        resource_limits: ResourceLimits | None = None,
        network: NetConfig | None = None,
        callbacks: CallbackRegistry | Sequence[dict[str, Any] | CallbackRegistry] | None = None,
        secrets: dict[str, dict[str, Any]] | None = None,
        scrub_stdout: bool | None = None,
        scrub_stderr: bool | None = None,
        scrub_result: bool | None = None,
        scrub_files: bool | None = None,
        volumes: Sequence[Volume] | None = None,
        vfs: VfsStorage | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        result_variable: str | None = None,
        mcp: MCPManager | None = None,
    ) -> None:
        limits = check_instance(
            "resource_limits", resource_limits, ResourceLimits, "a ResourceLimits"
        )
        config = EngineConfig.validate(
            limits=ResourceLimits() if limits is None else limits.__copy__(),
            network=network,
            callbacks=callbacks,
            volumes=volumes,
            vfs=vfs,
            vfs_mount_path=None,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            result_variable=result_variable,
            mcp=mcp,
        )
        config.secrets = check_secrets(secrets)
        default_scrub = bool(config.secrets)
        flags = {
            "stdout": check_bool("scrub_stdout", scrub_stdout, optional=True),
            "stderr": check_bool("scrub_stderr", scrub_stderr, optional=True),
            "files": check_bool("scrub_files", scrub_files, optional=True),
        }
        config.scrub = {k: default_scrub if v is None else v for k, v in flags.items()}
        config.scrub["result"] = bool(check_bool("scrub_result", scrub_result, optional=True))
        require_native()
        from . import _eryx

        self._open(config, _eryx.sandbox_new, _eryx.sandbox_close)

    def execute(self, code: str, *, stdin: str | bytes | None = None) -> ExecuteResult:
        """Run ``code`` in a fresh interpreter and return its result.

        The code runs as the module ``__main__`` (file name ``<user>``) with top-level
        ``await`` allowed. Its output is captured; the module-level variable ``result`` (or
        ``result_variable``) is captured as JSON, or, when the code sets none and ends in an
        expression statement, that expression's value (unless ``None``), as a notebook shows
        a cell's last value.

        Args:
            code: Python source text.
            stdin: What the guest's ``sys.stdin`` reads (``input()``); without it ``input()``
                raises ``EOFError``.

        Returns:
            The run's output, captured result and statistics.

        Raises:
            ExecutionError: The code raised an uncaught exception (``SyntaxError`` included),
                exited with a non-zero ``sys.exit`` code, or the interpreter terminated.
            TimeoutError: ``execution_timeout_ms`` expired.
            ResourceLimitError: The memory cap or the fuel budget was exhausted.
            CancelledError: Another thread closed the sandbox during the run.
            TypeError: ``code`` is not a ``str``, or ``stdin`` not ``str``/``bytes``.
            ValueError: ``code`` contains NUL or a lone surrogate, or the sandbox is closed.
        """
        return self._execute(check_code(code), 0, check_stdin(stdin))

    def _execute(
        self, code: str, token: int, stdin: bytes | None = None, options: bytes | None = None
    ) -> ExecuteResult:
        from . import _eryx

        with self._use() as h:
            return make_result(call(_eryx.sandbox_execute, h, code, token, stdin, options))

    def __repr__(self) -> str:
        config = self._config
        text = (
            f"Sandbox(resource_limits={config.limits!r}, network={config.network!r}, "
            f"callbacks={len(config.callbacks)}, "
            f"secrets={sorted(s['name'] for s in config.secrets)!r}, "
            f"volumes={len(config.volumes)}"
        )
        return text + (", closed=True)" if self.closed else ")")


Sandbox.__module__ = "eryx"
