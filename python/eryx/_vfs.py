"""VfsStorage: an in-memory file store shared by sandboxes, sessions and the host (API.md §9)."""

from __future__ import annotations

import builtins
import os
from typing import Any, NoReturn

from ._handle import Handle
from ._runtime import call, require_native
from ._validate import INT64_MAX, check_bytes_like, check_int, check_path

__all__ = ["VfsStorage", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def _store_path(path: str | os.PathLike[str], *, file: bool) -> str:
    """Validate a store path (relative to the root; a leading ``/`` means the root)."""
    text = check_path("path", path)
    if ".." in text.split("/"):
        raise ValueError(f"path must not contain '..', got {text!r}")
    if file and not text:
        raise ValueError("path must not be empty")
    return text


class VfsStorage:
    """A thread-safe in-memory file store, mounted read/write at ``/data`` (or
    ``vfs_mount_path``) by the sandboxes and sessions given it as ``vfs=``.

    Guest ``/data/a/b.txt`` is host ``"a/b.txt"``. Never written to disk.
    """

    __slots__ = ("_handle", "__weakref__")

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        checked = check_int("max_bytes", max_bytes, 0, INT64_MAX, optional=False)
        require_native()
        from . import _eryx

        self._handle = Handle(call(_eryx.vfs_new, checked), None)

    def read_file(self, path: str | os.PathLike[str]) -> bytes:
        """The file's contents. Raises ``FileNotFoundError`` or ``IsADirectoryError``."""
        from . import _eryx

        p = _store_path(path, file=True)
        with self._handle.use("VfsStorage is closed") as h:
            return call(_eryx.vfs_read, h, p)

    def write_file(self, path: str | os.PathLike[str], data: Any) -> None:
        """Create or replace a file (bytes-like ``data``), making missing parent directories.

        Raises ``OSError(ENOSPC)`` beyond ``max_bytes``; the old content then stays.
        """
        from . import _eryx

        p = _store_path(path, file=True)
        buffer = check_bytes_like("data", data)
        with self._handle.use("VfsStorage is closed") as h:
            call(_eryx.vfs_write, h, p, buffer)

    def list(self, path: str | os.PathLike[str] = "/") -> builtins.list[str]:
        """Sorted entry names of a directory; subdirectories end with ``/``."""
        from . import _eryx

        p = _store_path(path, file=False)
        with self._handle.use("VfsStorage is closed") as h:
            return call(_eryx.vfs_list, h, p)

    def remove(self, path: str | os.PathLike[str]) -> None:
        """Remove a file or an empty directory."""
        from . import _eryx

        p = _store_path(path, file=True)
        with self._handle.use("VfsStorage is closed") as h:
            call(_eryx.vfs_remove, h, p)

    def _stats(self) -> tuple[int, int, int]:
        from . import _eryx

        with self._handle.use("VfsStorage is closed") as h:
            return call(_eryx.vfs_stats, h)

    @property
    def used_bytes(self) -> int:
        """Total size of the files in the store."""
        return self._stats()[1]

    @property
    def max_bytes(self) -> int:
        """The store's size cap."""
        return self._stats()[2]

    def __repr__(self) -> str:
        files, used, cap = self._stats()
        return f"VfsStorage(files={files}, used_bytes={used}, max_bytes={cap})"

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.finalize()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("cannot pickle 'VfsStorage' object")

    def __copy__(self) -> NoReturn:
        raise TypeError("cannot copy 'VfsStorage' object")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("cannot copy 'VfsStorage' object")


VfsStorage.__module__ = "eryx"
