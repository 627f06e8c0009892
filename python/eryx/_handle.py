"""Ownership of one bridge handle: calls in flight, close, and release."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Handle"]


class Handle:
    """A bridge handle shared by concurrent calls.

    ``close()`` stops the engine object at once (runs in progress fail with ``CancelledError``)
    and the handle is freed as soon as no call is using it.
    """

    __slots__ = ("_handle", "_closer", "_lock", "_in_flight", "_closed", "_freed")

    def __init__(self, handle: int, closer: Callable[[int], None] | None) -> None:
        self._handle = handle
        self._closer = closer
        self._lock = threading.Lock()
        self._in_flight = 0
        self._closed = False
        self._freed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def use(self, closed_message: str) -> Iterator[int]:
        """The handle for one call; ``ValueError(closed_message)`` once closed."""
        with self._lock:
            if self._closed:
                raise ValueError(closed_message)
            self._in_flight += 1
        try:
            yield self._handle
        finally:
            self._release()

    @contextmanager
    def peek(self) -> Iterator[int | None]:
        """The handle for a non-blocking query, or ``None`` once closed."""
        with self._lock:
            if self._closed:
                handle = None
            else:
                self._in_flight += 1
                handle = self._handle
        if handle is None:
            yield None
            return
        try:
            yield handle
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            free = self._ready_to_free()
        if free:
            self._free()

    def close(self) -> bool:
        """Close the engine object; ``False`` if it was already closed. Never waits for calls."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            # The closer uses the handle too: calls ending meanwhile must not free it.
            self._in_flight += 1
        try:
            if self._closer is not None:
                self._closer(self._handle)
        finally:
            self._release()
        return True

    def finalize(self) -> None:
        """Best-effort release from ``__del__``; never raises."""
        try:
            with self._lock:
                self._closed = True
                free = self._ready_to_free()
            if free:
                self._free()
        except BaseException:  # noqa: BLE001 - interpreter shutdown, missing module, ...
            pass

    def _ready_to_free(self) -> bool:
        # Called with the lock held.
        if self._closed and self._in_flight == 0 and not self._freed:
            self._freed = True
            return True
        return False

    def _free(self) -> None:
        from . import _eryx

        _eryx.handle_free(self._handle)
