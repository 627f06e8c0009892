"""SandboxFactory (API.md §10): packages and pre-imported modules captured in a memory image,
built by the engine (goeryx/factory.go, goeryx/internal/factory)."""

from __future__ import annotations

import json
import os
from types import TracebackType
from typing import Any, NoReturn, Self

from ._handle import Handle
from ._runner import created_from
from ._runtime import call, require_native, runtime
from ._sandbox import Sandbox
from ._session import Session
from ._validate import check_bool, check_bytes_like, check_code, check_path, type_name

__all__ = ["SandboxFactory"]

_CLOSED = "SandboxFactory is closed"


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


def _check_setup_code(code: object) -> str:
    if not isinstance(code, str):
        raise TypeError(f"setup_code must be str or None, not {type_name(code)}")
    try:
        return check_code(code)
    except ValueError as exc:
        raise ValueError(f"setup_{exc}") from None


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
    (and sessions) whose interpreters start from the captured state.

    The packages are copied into a private directory owned by goeryx (caller files are only
    read) and mounted read-only at ``/site-packages`` (on ``sys.path``, ``.pth`` files honoured)
    in every sandbox and session the factory creates; the modules in ``imports`` are imported
    once and the interpreter's memory captured, so that a sandbox from the factory starts as
    fast as a plain ``Sandbox`` and importing them is instant.

    Args:
        site_packages: A directory added as a site-packages tree (copied, never written).
        packages: Paths of pure-Python or WASI wheels (``.whl``), ``.tar.gz``/``.tgz``
            archives (extracted as is, no build step) or directories (one with
            ``__init__.py`` is a package, any other a site-packages tree).
        imports: Dotted module names to pre-import.
        setup_code: Python code run once after the imports, in the user namespace, before
            the state is captured (an extension, as pyeryx's ``setup_code``). The globals it
            binds are in every sandbox and session from the factory: build objects there
            that every sandbox would otherwise build again, such as a ``jinja2.Environment``
            (its lexer) or compiled templates. ``Session.clear_state()`` binds them again;
            ``reset()`` also restores their state. Its output is discarded.
        cache: Share the captured state between identical factories: in this process, and
            through the goeryx cache directory with later processes (which then skip the
            imports and ``setup_code``).

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: A path contains NUL or a module name is not a dotted identifier.
        InitializationError: A package is missing, unsafe or for another platform, or a
            pre-import or ``setup_code`` failed (API.md §10).
    """

    _handle: Handle | None = None

    def __init__(
        self,
        *,
        site_packages: str | os.PathLike[str] | None = None,
        packages: list[str | os.PathLike[str]] | tuple[str | os.PathLike[str], ...] | None = None,
        imports: list[str] | tuple[str, ...] | None = None,
        setup_code: str | None = None,
        cache: bool = False,
    ) -> None:
        site = _check_site_packages(site_packages)
        pkgs = _check_packages(packages)
        mods = _check_imports(imports)
        setup = "" if setup_code is None else _check_setup_code(setup_code)
        use_cache = bool(check_bool("cache", cache))
        spec = {"site_packages": site or "", "packages": pkgs, "imports": mods,
                "setup_code": setup, "cache": use_cache}
        require_native()
        from . import _eryx

        self._init(call(_eryx.factory_new, runtime(), json.dumps(spec)))

    def _init(self, handle: int) -> None:
        from . import _eryx

        self._size: int | None = None
        self._handle = Handle(handle, lambda h: call(_eryx.factory_close, h))
        self._imports: list[str] = list(call(_eryx.factory_imports, handle))

    @classmethod
    def _from_handle(cls, handle: int) -> SandboxFactory:
        self = cls.__new__(cls)
        self._init(handle)
        return self

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
            site_packages: A directory mounted read-only, as is, instead of the saved
                package files.
            cache: Share the loaded state with identical files loaded in this process.

        Raises:
            InitializationError: The file is missing, unreadable, not a goeryx factory file,
                damaged, or made by an incompatible goeryx.
        """
        file = check_path("path", path)
        site = _check_site_packages(site_packages)
        use_cache = bool(check_bool("cache", cache))
        require_native()
        from . import _eryx

        spec = {"path": file, "site_packages": site or "", "cache": use_cache}
        return cls._from_handle(call(_eryx.factory_load, runtime(), json.dumps(spec)))

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
            site_packages: A directory mounted read-only, as is, instead of the saved
                package files.
            cache: Share the loaded state with identical files loaded in this process.

        Raises:
            InitializationError: As for ``load``.
        """
        buffer = check_bytes_like("data", data)
        site = _check_site_packages(site_packages)
        use_cache = bool(check_bool("cache", cache))
        require_native()
        from . import _eryx

        spec = {"site_packages": site or "", "cache": use_cache}
        handle = call(_eryx.factory_from_bytes, runtime(), buffer, json.dumps(spec))
        return cls._from_handle(handle)

    def _use(self) -> Any:
        assert self._handle is not None
        return self._handle.use(_CLOSED)

    @property
    def size_bytes(self) -> int:
        """``len(to_bytes())``."""
        from . import _eryx

        if self._size is None:
            with self._use() as h:
                self._size = int(call(_eryx.factory_size, h))
        return self._size

    def to_bytes(self) -> bytes:
        """Return a self-contained artifact: header, captured state and package files.

        The same factory always gives the same bytes.
        """
        from . import _eryx

        with self._use() as h:
            data = bytes(call(_eryx.factory_to_bytes, h))
        self._size = len(data)
        return data

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``to_bytes()`` to ``path`` atomically (a temporary file, then a rename).

        Args:
            path: The destination file.

        Raises:
            InitializationError: The file cannot be written.
        """
        from . import _eryx

        file = check_path("path", path)
        with self._use() as h:
            call(_eryx.factory_save, h, file)

    def create_sandbox(self, **kwargs: Any) -> Sandbox:
        """Create a ``Sandbox`` whose interpreters start from this factory's captured state.

        Args:
            **kwargs: Every ``Sandbox`` argument, plus ``site_packages=`` to mount another
                package directory (read-only, as is) instead of the factory's.

        Raises:
            ValueError: The factory is closed, or a volume overlaps ``/site-packages``.
        """
        site = _check_site_packages(kwargs.pop("site_packages", None))
        with self._use() as h, created_from(h, site):
            return Sandbox(**kwargs)

    def create_session(self, **kwargs: Any) -> Session:
        """Create a ``Session`` whose interpreter starts from this factory's captured state;
        its ``reset()`` and ``clear_state()`` return to that state.

        Args:
            **kwargs: Every ``Session`` argument, plus ``site_packages=`` as for
                ``create_sandbox``.

        Raises:
            ValueError: The factory is closed, or a mount overlaps ``/site-packages``.
        """
        site = _check_site_packages(kwargs.pop("site_packages", None))
        with self._use() as h, created_from(h, site):
            return Session(**kwargs)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (read-only)."""
        return self._handle is None or self._handle.closed

    def close(self) -> None:
        """Free cached state; sandboxes already created keep working. Idempotent."""
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._handle is not None:
                self._handle.finalize()
        except BaseException:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __repr__(self) -> str:
        size = self._size
        if size is None and not self.closed:
            try:
                size = self.size_bytes
            except Exception:  # noqa: BLE001 - closed meanwhile
                size = None
        text = f"SandboxFactory(size_bytes={size or 0}, imports={self._imports!r}"
        return text + (", closed=True)" if self.closed else ")")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("cannot pickle 'SandboxFactory' object")

    def __copy__(self) -> NoReturn:
        raise TypeError("cannot copy 'SandboxFactory' object")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("cannot copy 'SandboxFactory' object")


SandboxFactory.__module__ = "eryx"
