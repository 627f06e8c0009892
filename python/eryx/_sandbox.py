"""Sandbox: every run in a fresh interpreter (API.md §6)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ._callbacks import CallbackRegistry
from ._config import EngineConfig, check_secrets
from ._limits import ResourceLimits
from ._netconfig import NetConfig
from ._result import ExecuteResult, make_result
from ._runner import Runner
from ._runtime import call, require_native
from ._validate import check_bool, check_code, check_instance, check_stdin
from ._vfs import VfsStorage

__all__ = ["Sandbox"]

Volume = tuple["str | os.PathLike[str]", str, bool]


class Sandbox(Runner):
    """Runs untrusted Python code; each ``execute`` gets a fresh guest interpreter.

    ``execute`` may be called from any number of threads at once.
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

        ``stdin`` (``str`` or ``bytes``) is what the guest's ``sys.stdin`` reads (``input()``);
        without it ``input()`` raises ``EOFError``. Raises ``ExecutionError``,
        ``TimeoutError``, ``ResourceLimitError``, ... (API.md §6.6);
        ``ValueError("Sandbox is closed")`` after ``close()``.
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
