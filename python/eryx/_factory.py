"""SandboxFactory (API.md §10).

TODO(lead): the engine and bridge have no factory support yet. Only argument validation,
``close``/``closed``/``repr`` and the lifecycle are implemented; building, saving, loading and
``create_sandbox`` raise ``NotImplementedError``.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, NoReturn, Self

from ._sandbox import Sandbox
from ._validate import check_bool, check_bytes_like, check_path, type_name

__all__ = ["SandboxFactory"]

_NOT_YET = "SandboxFactory.{} is not implemented yet"


def _check_imports(imports: object) -> list[str]:
    if imports is None:
        return []
    if not isinstance(imports, (list, tuple)):
        raise TypeError(f"imports must be a list or tuple of str, not {type_name(imports)}")
    result = []
    for name in imports:
        if not isinstance(name, str):
            raise TypeError(f"imports must contain str, not {type_name(name)}")
        if not name or not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"invalid module name in imports: {name!r}")
        result.append(str.__str__(name))
    return result


def _check_packages(packages: object) -> list[str]:
    if packages is None:
        return []
    if not isinstance(packages, (list, tuple)):
        raise TypeError(f"packages must be a list or tuple of paths, not {type_name(packages)}")
    return [os.path.abspath(check_path("packages", p)) for p in packages]


def _check_site_packages(site_packages: object) -> str | None:
    if site_packages is None:
        return None
    return os.path.abspath(check_path("site_packages", site_packages))


class SandboxFactory:
    """Builds a runtime with extra packages and pre-imported modules, and creates sandboxes
    from it.

    Warning:
        Not functional in goeryx 0.1.0: the constructor validates its arguments, and
        ``create_sandbox``, ``save``, ``load``, ``from_bytes``, ``to_bytes`` and
        ``size_bytes`` raise ``NotImplementedError``. The description below is the planned
        behaviour.

    The packages are copied into a private directory owned by goeryx and mounted read-only at
    ``/site-packages`` (on ``sys.path``) in every sandbox the factory creates; the modules in
    ``imports`` are imported once and the interpreter state captured, so importing them in a
    sandbox is instant.

    Args:
        site_packages: A directory added as a site-packages tree (copied, never written).
        packages: Paths of pure-Python or WASI wheels (``.whl``), ``.tar.gz``/``.tgz``
            archives (extracted as is, no build step) or directories.
        imports: Dotted module names to pre-import.
        cache: Share the compiled state between identical factories in this process.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: A path contains NUL or a module name is not a dotted identifier.
    """

    def __init__(
        self,
        *,
        site_packages: str | os.PathLike[str] | None = None,
        packages: list[str | os.PathLike[str]] | tuple[str | os.PathLike[str], ...] | None = None,
        imports: list[str] | tuple[str, ...] | None = None,
        cache: bool = False,
    ) -> None:
        self._site_packages = _check_site_packages(site_packages)
        self._packages = _check_packages(packages)
        self._imports = _check_imports(imports)
        self._cache = bool(check_bool("cache", cache))
        self._closed = False
        # TODO(lead): build the runtime through the bridge.

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        site_packages: str | os.PathLike[str] | None = None,
        cache: bool = False,
    ) -> SandboxFactory:
        """Reload a factory saved with ``save``, validating its header immediately.

        Args:
            path: The file written by ``save``.
            site_packages: A directory that replaces the saved package directory.
            cache: As for the constructor.

        Raises:
            NotImplementedError: Always, in this release.
        """
        check_path("path", path)
        _check_site_packages(site_packages)
        check_bool("cache", cache)
        raise NotImplementedError(_NOT_YET.format("load"))

    @classmethod
    def from_bytes(
        cls,
        data: Any,
        *,
        site_packages: str | os.PathLike[str] | None = None,
        cache: bool = False,
    ) -> SandboxFactory:
        """Reload a factory from ``to_bytes()`` output, validating its header immediately.

        Args:
            data: Bytes-like output of ``to_bytes``.
            site_packages: A directory that replaces the saved package directory.
            cache: As for the constructor.

        Raises:
            NotImplementedError: Always, in this release.
        """
        check_bytes_like("data", data)
        _check_site_packages(site_packages)
        check_bool("cache", cache)
        raise NotImplementedError(_NOT_YET.format("from_bytes"))

    @property
    def size_bytes(self) -> int:
        """``len(to_bytes())`` (not implemented in this release)."""
        raise NotImplementedError(_NOT_YET.format("size_bytes"))

    def to_bytes(self) -> bytes:
        """Return a self-contained artifact: header, captured state and package files.

        Raises:
            NotImplementedError: Always, in this release.
        """
        raise NotImplementedError(_NOT_YET.format("to_bytes"))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``to_bytes()`` to ``path`` atomically (a temporary file, then a rename).

        Args:
            path: The destination file.

        Raises:
            NotImplementedError: Always, in this release.
        """
        check_path("path", path)
        raise NotImplementedError(_NOT_YET.format("save"))

    def create_sandbox(self, **kwargs: Any) -> Sandbox:
        """Create a ``Sandbox`` that runs on this factory's runtime.

        Args:
            **kwargs: Every ``Sandbox`` argument, plus ``site_packages=`` to replace the
                package directory.

        Raises:
            NotImplementedError: Always, in this release.
        """
        raise NotImplementedError(_NOT_YET.format("create_sandbox"))

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (read-only)."""
        return self._closed

    def close(self) -> None:
        """Free cached state; sandboxes already created keep working. Idempotent."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        # TODO(lead): size_bytes once the factory is built by the engine.
        text = f"SandboxFactory(size_bytes=0, imports={self._imports!r}"
        return text + (", closed=True)" if self._closed else ")")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("cannot pickle 'SandboxFactory' object")

    def __copy__(self) -> NoReturn:
        raise TypeError("cannot copy 'SandboxFactory' object")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("cannot copy 'SandboxFactory' object")


SandboxFactory.__module__ = "eryx"
