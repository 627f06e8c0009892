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

    Every sandbox, session and host user of a store sees its writes at once; it lives as long
    as the object and is never written to disk. Host paths (``str`` or path-like) are relative
    to the store root: guest ``/data/a/b.txt`` is host ``"a/b.txt"``, and a leading ``/``
    means the root. A path containing ``..`` or NUL, or an empty file path, raises
    ``ValueError``.

    Args:
        max_bytes: Cap on the total size of the files in the store (default 64 MiB). Writes
            beyond it fail with ``OSError(ENOSPC)``, on the host and in the guest.

    Example:
        ```python
        import eryx

        store = eryx.VfsStorage()
        store.write_file("in.txt", b"hello")
        eryx.Sandbox(vfs=store).execute(
            "open('/data/out.txt', 'w').write(open('/data/in.txt').read().upper())"
        )
        print(store.read_file("out.txt"))  # b'HELLO'
        ```
    """

    __slots__ = ("_handle", "__weakref__")

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        checked = check_int("max_bytes", max_bytes, 0, INT64_MAX, optional=False)
        require_native()
        from . import _eryx

        self._handle = Handle(call(_eryx.vfs_new, checked), None)

    def read_file(self, path: str | os.PathLike[str]) -> bytes:
        """Return a file's contents.

        Args:
            path: The file, relative to the store root.

        Raises:
            FileNotFoundError: No such file.
            IsADirectoryError: ``path`` is a directory.
        """
        from . import _eryx

        p = _store_path(path, file=True)
        with self._handle.use("VfsStorage is closed") as h:
            return call(_eryx.vfs_read, h, p)

    def write_file(self, path: str | os.PathLike[str], data: Any) -> None:
        """Create or replace a file, making missing parent directories.

        Args:
            path: The file, relative to the store root.
            data: The new contents, bytes-like (``str`` raises ``TypeError``).

        Raises:
            OSError: ``ENOSPC`` if the write would exceed ``max_bytes``; the old content
                then stays.
        """
        from . import _eryx

        p = _store_path(path, file=True)
        buffer = check_bytes_like("data", data)
        with self._handle.use("VfsStorage is closed") as h:
            call(_eryx.vfs_write, h, p, buffer)

    def list(self, path: str | os.PathLike[str] = "/") -> builtins.list[str]:
        """Return the sorted entry names of a directory; subdirectories end with ``/``.

        Args:
            path: The directory, relative to the store root (default: the root).

        Raises:
            FileNotFoundError: No such directory.
            NotADirectoryError: ``path`` is a file.
        """
        from . import _eryx

        p = _store_path(path, file=False)
        with self._handle.use("VfsStorage is closed") as h:
            return call(_eryx.vfs_list, h, p)

    def remove(self, path: str | os.PathLike[str]) -> None:
        """Remove a file or an empty directory.

        Args:
            path: Relative to the store root.

        Raises:
            FileNotFoundError: No such file or directory.
            OSError: ``ENOTEMPTY`` if the directory is not empty.
        """
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
        """Total size of the files in the store, in bytes (read-only)."""
        return self._stats()[1]

    @property
    def max_bytes(self) -> int:
        """The store's size cap, in bytes (read-only)."""
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
