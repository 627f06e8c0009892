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

    ``str(exc)`` is the message. The subclasses take the same keyword arguments.

    Args:
        message: The error message.
        state_lost: Whether a ``Session`` lost its state.
        stdout: What the run printed to stdout.
        stderr: What the run printed to stderr.
    """

    state_lost: bool
    """``True`` only when a ``Session`` had to replace its interpreter, so its variables are
    gone."""
    stdout: str
    """What the failed run printed to stdout before it failed (empty for errors not raised by
    a run), trimmed and scrubbed like ``ExecuteResult.stdout``."""
    stderr: str
    """The same for stderr."""

    def __init__(
        self, message: str = "", *, state_lost: bool = False, stdout: str = "", stderr: str = ""
    ) -> None:
        super().__init__(message)
        self.state_lost = state_lost
        self.stdout = stdout
        self.stderr = stderr


class ExecutionError(EryxError):
    """An uncaught guest exception, guest termination, or a malformed snapshot.

    For an uncaught exception (``SyntaxError`` and a non-zero ``sys.exit`` included) the
    message is the run's stderr, ending with the traceback of the user's code (file
    ``<user>``, the user's own line numbers). If the guest terminated (``os._exit``, an
    abort) it is ``guest interpreter terminated unexpectedly: <reason>``.

    Args:
        message: The error message.
        exc_type: The guest exception's class name.
        stdout: What the run printed to stdout.
        stderr: What the run printed to stderr.
        state_lost: Whether a ``Session`` lost its state.
    """

    exc_type: str | None
    """The guest exception's class name: ``"ValueError"``, or ``"module.Class"`` outside
    builtins; ``None`` when no Python exception was involved."""

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
    """An interpreter that cannot be created or configured (a missing volume host path, a
    memory cap too small to start), or a snapshot from an incompatible version."""


class ResourceLimitError(EryxError):
    """A resource limit was hit: the memory cap, the fuel budget or the snapshot size.

    Args:
        message: The error message.
        limit: Which limit was hit.
        state_lost: Whether a ``Session`` lost its state (always after fuel exhaustion).
        stdout: What the run printed to stdout.
        stderr: What the run printed to stderr.
    """

    limit: str
    """``"max_memory_bytes"``, ``"max_fuel"`` or ``"snapshot"`` (``""`` only for instances
    created by user code without one)."""

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
    """Raised by a run in progress when another thread closed its ``Sandbox`` or
    ``Session``."""


class TimeoutError(EryxError, builtins.TimeoutError):
    """The execution timeout expired.

    Also a builtin ``TimeoutError`` (hence an ``OSError``): ``except eryx.EryxError``,
    ``except TimeoutError`` and ``except OSError`` all catch it. ``stdout`` and ``stderr`` hold
    what the run printed before the deadline.
    """


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
