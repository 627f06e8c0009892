"""The guest runtime shipped in the package, and lazy access to the native bridge.

``eryx._eryx`` is imported only when an object that needs the engine is created, so that
``import eryx`` and the value objects work without it (and without starting the Go runtime).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from ._errors import InitializationError, from_bridge_error

__all__ = [
    "RUNTIME_DIR",
    "read_guest_python_version",
    "cache_dir",
    "require_native",
    "runtime",
    "call",
    "ready_interpreters",
]

RUNTIME_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "_runtime")
GUEST_VERSION_UNKNOWN = "unknown"

_P = ParamSpec("_P")
_R = TypeVar("_R")

_lock = threading.Lock()
_runtime_handle: int | None = None


@functools.cache
def read_guest_python_version() -> str:
    """``python_version`` from ``_runtime/manifest.json``; ``"unknown"`` in a source checkout
    that has no built runtime."""
    try:
        with open(os.path.join(RUNTIME_DIR, "manifest.json"), encoding="utf-8") as f:
            version = json.load(f).get("python_version")
    except (OSError, ValueError, AttributeError):
        return GUEST_VERSION_UNKNOWN
    return version if isinstance(version, str) and version else GUEST_VERSION_UNKNOWN


def cache_dir() -> str:
    """``$GOERYX_CACHE_DIR``, else ``goeryx`` under the user cache directory."""
    explicit = os.environ.get("GOERYX_CACHE_DIR")
    if explicit:
        return os.path.abspath(explicit)
    if sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Caches")
    elif sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(
            os.path.expanduser("~"), "AppData", "Local"
        )
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "goeryx")


def require_native() -> None:
    """Import ``eryx._eryx`` or raise ``InitializationError``."""
    try:
        from . import _eryx  # noqa: F401
    except ImportError as exc:
        raise InitializationError(
            f"the goeryx native extension (eryx._eryx) cannot be loaded: {exc}"
        ) from exc


def call(fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Call a bridge function, turning ``_eryx.Error`` into the public exception."""
    from . import _eryx

    try:
        return fn(*args, **kwargs)
    except _eryx.Error as exc:
        raise from_bridge_error(exc) from None


def runtime() -> int:
    """The process-wide runtime handle, opened on first use."""
    global _runtime_handle
    handle = _runtime_handle
    if handle is not None:
        return handle
    require_native()
    from . import _eryx

    with _lock:
        if _runtime_handle is None:
            _runtime_handle = call(_eryx.open_runtime, RUNTIME_DIR, cache_dir())
        return _runtime_handle


def ready_interpreters() -> dict[str, int]:
    """The process's pool of ready interpreters, which ``Sandbox.execute`` starts on.

    Interpreters are made (and used ones released) on a background thread while the process
    has spare CPU, for the sandbox configuration last used, and released after 30 s without
    use. The pool's size is ``$GOERYX_READY_INTERPRETERS`` (default 0: no pool; 2 serves one
    thread running back to back), read when the first sandbox opens the guest runtime; this
    function opens it too.

    Returns:
        ``size`` (the most kept ready), ``ready`` (ready now), ``hits`` (runs that started on a
        ready interpreter), ``misses`` (runs that found none for their configuration and made
        their own), ``made`` (interpreters the pool made), ``expired`` (made but released
        unused) and ``image_bytes`` (the memory image every interpreter maps; a ready one
        holds that mapping plus about 1 MiB it wrote).

    Raises:
        InitializationError: The runtime cannot be opened, or
            ``$GOERYX_READY_INTERPRETERS`` is not an integer from 0 to 64.
    """
    from . import _eryx

    stats: dict[str, int] = json.loads(call(_eryx.ready_stats, runtime()))
    return stats
