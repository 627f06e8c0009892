"""Public exception classes and the translation of bridge errors into them."""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "CancelledError",
    "EryxError",
    "ExecutionError",
    "InitializationError",
    "ResourceLimitError",
    "TimeoutError",
    "from_bridge_error",
]


class EryxError(Exception):
    """Base class of every goeryx error; also used for unexpected internal failures.

    ``state_lost`` is ``True`` only when a Session had to replace its interpreter. ``stdout``
    and ``stderr`` hold what the failed run printed before it failed (empty for errors that
    are not raised by a run), trimmed and scrubbed like an ``ExecuteResult``'s.
    """

    state_lost: bool
    stdout: str
    stderr: str

    def __init__(
        self, message: str = "", *, state_lost: bool = False, stdout: str = "", stderr: str = ""
    ) -> None:
        super().__init__(message)
        self.state_lost = state_lost
        self.stdout = stdout
        self.stderr = stderr


class ExecutionError(EryxError):
    """An uncaught guest exception, guest termination, or a malformed snapshot.

    ``exc_type`` is the guest exception class name (``None`` when no Python exception was
    involved); ``stdout`` is the failed run's stdout and the message its traceback.
    """

    exc_type: str | None

    def __init__(
        self,
        message: str = "",
        *,
        exc_type: str | None = None,
        stdout: str = "",
        stderr: str = "",
        state_lost: bool = False,
    ) -> None:
        super().__init__(message, state_lost=state_lost, stdout=stdout, stderr=stderr)
        self.exc_type = exc_type


class InitializationError(EryxError):
    """An interpreter that cannot be created or configured, or an incompatible artifact."""


class ResourceLimitError(EryxError):
    """A resource limit was hit.

    ``limit`` is ``"max_memory_bytes"``, ``"max_fuel"`` or ``"snapshot"`` (``""`` only for
    instances created by user code without one).
    """

    limit: str

    def __init__(
        self,
        message: str = "",
        *,
        limit: str = "",
        state_lost: bool = False,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        super().__init__(message, state_lost=state_lost, stdout=stdout, stderr=stderr)
        self.limit = limit


class CancelledError(EryxError):
    """A run in progress when another thread closed its Sandbox or Session."""


class TimeoutError(EryxError, builtins.TimeoutError):
    """The execution timeout expired. Also a builtin ``TimeoutError`` (hence ``OSError``)."""


for _cls in (
    EryxError,
    ExecutionError,
    InitializationError,
    ResourceLimitError,
    CancelledError,
    TimeoutError,
):
    _cls.__module__ = "eryx"
del _cls

_SIMPLE: dict[str, type[EryxError]] = {
    "eryx": EryxError,
    "initialization": InitializationError,
    "timeout": TimeoutError,
    "cancelled": CancelledError,
}


def from_bridge_error(exc: BaseException) -> BaseException:
    """Turn an ``_eryx.Error(kind, message, details)`` into the public exception."""
    args = exc.args
    kind = args[0] if len(args) > 0 and isinstance(args[0], str) else "eryx"
    message = args[1] if len(args) > 1 and isinstance(args[1], str) else str(exc)
    details: dict[str, Any] = args[2] if len(args) > 2 and isinstance(args[2], dict) else {}
    state_lost = bool(details.get("state_lost", False))
    output = {"stdout": details.get("stdout") or "", "stderr": details.get("stderr") or ""}
    if kind == "execution":
        return ExecutionError(
            message, exc_type=details.get("exc_type") or None, state_lost=state_lost, **output
        )
    if kind == "resource_limit":
        return ResourceLimitError(
            message, limit=details.get("limit") or "", state_lost=state_lost, **output
        )
    if kind == "value":
        return ValueError(message)
    if kind == "type":
        return TypeError(message)
    if kind == "os":
        errno = details.get("errno")
        # OSError(errno, strerror) picks the subclass (FileNotFoundError for ENOENT, ...).
        return OSError(errno, message) if isinstance(errno, int) else OSError(message)
    return _SIMPLE.get(kind, EryxError)(message, state_lost=state_lost, **output)
