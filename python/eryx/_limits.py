"""ResourceLimits: the per-run limits of a Sandbox or Session (API.md §2)."""

from __future__ import annotations

from typing import Any

from ._validate import INT64_MAX, UINT32_MAX, check_int

__all__ = ["ResourceLimits"]

# name -> (lowest, highest) allowed value; None is allowed for every field.
_FIELDS: dict[str, tuple[int, int]] = {
    "execution_timeout_ms": (1, INT64_MAX),
    "callback_timeout_ms": (1, INT64_MAX),
    "max_memory_bytes": (1, INT64_MAX),
    "max_callback_invocations": (0, UINT32_MAX),
    "max_fuel": (1, INT64_MAX),
    "max_vfs_bytes": (0, INT64_MAX),
}


class ResourceLimits:
    """Limits applied to each run. ``None`` means "no limit" (the VFS stays capped at 64 MiB).

    A mutable value object: fields can be read and assigned, and assignment validates like the
    constructor; supports ``==``, copy and pickle; unhashable. ``Sandbox`` and ``Session`` take
    a copy at construction, so changing the object later does not affect them.

    Args:
        execution_timeout_ms: Wall-clock limit of a run, from the start of the guest code
            (interpreter creation excluded), covering computation, sleeps and waits on
            callbacks and the network. At the deadline the run is interrupted; it raises
            ``TimeoutError`` within about a second. ``None``: no timeout. 1 ... 2**63-1.
        callback_timeout_ms: Limit of each callback invocation; the guest's ``await`` then
            raises the builtin ``TimeoutError``. ``None``: none. 1 ... 2**63-1.
        max_memory_bytes: Cap on guest linear memory, rounded down to 64 KiB pages. A refused
            allocation is a ``MemoryError`` in the guest; a run that then fails raises
            ``ResourceLimitError(limit="max_memory_bytes")``. ``None``: wasm32's 4 GiB.
            1 ... 2**63-1.
        max_callback_invocations: Callback calls allowed per run; each further call raises
            ``CallbackLimitError`` in the guest. ``None``: unlimited. 0 ... 2**32-1.
        max_fuel: Deterministic instruction budget per run (about one unit per WebAssembly
            instruction); exhausting it raises ``ResourceLimitError(limit="max_fuel")``.
            ``None``: no metering (``fuel_consumed`` is then ``None``). 1 ... 2**63-1.
        max_vfs_bytes: Total size of the files in the run's private ``/data``; a write beyond
            it fails with ``OSError(ENOSPC)`` in the guest. ``None``: 64 MiB. 0 ... 2**63-1.

    Raises:
        TypeError: A value is not an ``int`` or ``None`` (``bool`` and ``float`` included).
        ValueError: A value is out of range.

    Example:
        ```python
        import eryx

        limits = eryx.ResourceLimits(execution_timeout_ms=2000, max_fuel=10_000_000)
        limits.max_memory_bytes = 64 * 1024 * 1024
        ```
    """

    __slots__ = tuple(f"_{name}" for name in _FIELDS)

    _execution_timeout_ms: int | None
    _callback_timeout_ms: int | None
    _max_memory_bytes: int | None
    _max_callback_invocations: int | None
    _max_fuel: int | None
    _max_vfs_bytes: int | None

    def __init__(
        self,
        *,
        execution_timeout_ms: int | None = 30000,
        callback_timeout_ms: int | None = 10000,
        max_memory_bytes: int | None = 134217728,
        max_callback_invocations: int | None = 1000,
        max_fuel: int | None = None,
        max_vfs_bytes: int | None = None,
    ) -> None:
        self.execution_timeout_ms = execution_timeout_ms
        self.callback_timeout_ms = callback_timeout_ms
        self.max_memory_bytes = max_memory_bytes
        self.max_callback_invocations = max_callback_invocations
        self.max_fuel = max_fuel
        self.max_vfs_bytes = max_vfs_bytes

    @staticmethod
    def unlimited() -> ResourceLimits:
        """A ``ResourceLimits`` with all six fields ``None`` (the VFS stays capped at 64 MiB)."""
        return ResourceLimits(
            execution_timeout_ms=None,
            callback_timeout_ms=None,
            max_memory_bytes=None,
            max_callback_invocations=None,
            max_fuel=None,
            max_vfs_bytes=None,
        )

    def _set(self, name: str, value: object) -> None:
        lo, hi = _FIELDS[name]
        setattr(self, f"_{name}", check_int(name, value, lo, hi, optional=True))

    @property
    def execution_timeout_ms(self) -> int | None:
        """Wall-clock limit of a run in milliseconds, or ``None`` for no timeout."""
        return self._execution_timeout_ms

    @execution_timeout_ms.setter
    def execution_timeout_ms(self, value: int | None) -> None:
        self._set("execution_timeout_ms", value)

    @property
    def callback_timeout_ms(self) -> int | None:
        """Limit of each callback invocation in milliseconds, or ``None``."""
        return self._callback_timeout_ms

    @callback_timeout_ms.setter
    def callback_timeout_ms(self, value: int | None) -> None:
        self._set("callback_timeout_ms", value)

    @property
    def max_memory_bytes(self) -> int | None:
        """Cap on guest linear memory, or ``None`` for wasm32's 4 GiB."""
        return self._max_memory_bytes

    @max_memory_bytes.setter
    def max_memory_bytes(self, value: int | None) -> None:
        self._set("max_memory_bytes", value)

    @property
    def max_callback_invocations(self) -> int | None:
        """Callback calls allowed per run, or ``None`` for unlimited."""
        return self._max_callback_invocations

    @max_callback_invocations.setter
    def max_callback_invocations(self, value: int | None) -> None:
        self._set("max_callback_invocations", value)

    @property
    def max_fuel(self) -> int | None:
        """Instruction budget per run, or ``None`` for no fuel metering."""
        return self._max_fuel

    @max_fuel.setter
    def max_fuel(self, value: int | None) -> None:
        self._set("max_fuel", value)

    @property
    def max_vfs_bytes(self) -> int | None:
        """Size cap of the private ``/data`` store, or ``None`` for the 64 MiB default (a
        shared ``VfsStorage`` has its own ``max_bytes``)."""
        return self._max_vfs_bytes

    @max_vfs_bytes.setter
    def max_vfs_bytes(self, value: int | None) -> None:
        self._set("max_vfs_bytes", value)

    def _values(self) -> dict[str, int | None]:
        return {name: getattr(self, f"_{name}") for name in _FIELDS}

    def _to_config(self) -> dict[str, int | None]:
        """The ``limits`` object of the engine configuration (goeryx/config.go)."""
        return self._values()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceLimits):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._values().items())
        return f"ResourceLimits({fields})"

    def __copy__(self) -> ResourceLimits:
        # The values were checked when they were set: copy them as they are (this runs for
        # every Sandbox and Session).
        new = object.__new__(ResourceLimits)
        for name in _FIELDS:
            attr = f"_{name}"
            setattr(new, attr, getattr(self, attr))
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> ResourceLimits:
        return self.__copy__()

    def __reduce__(self) -> tuple[Any, ...]:
        return (ResourceLimits, (), self._values())

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in _FIELDS:
            self._set(name, state.get(name))


ResourceLimits.__module__ = "eryx"
