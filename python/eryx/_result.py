"""ExecuteResult: the outcome of a successful run (API.md §4)."""

from __future__ import annotations

import json
from typing import Any, NoReturn, final

__all__ = ["ExecuteResult", "make_result"]

_SHOWN = 50  # characters of stdout/stderr/result_json shown by repr


def _short(text: str | None) -> str:
    if text is not None and len(text) > _SHOWN:
        return repr(text[:_SHOWN]) + "..."
    return repr(text)


@final
class ExecuteResult:
    """Output, captured result and statistics of one successful run.

    Immutable; created only by ``execute`` and ``execute_async``. ``str(result)`` is its
    ``stdout``. Results pickle, keeping every field, and compare by identity.
    """

    __slots__ = (
        "_stdout",
        "_stderr",
        "_duration_ms",
        "_callback_invocations",
        "_peak_memory_bytes",
        "_fuel_consumed",
        "_result_json",
        "_result_error",
    )

    _stdout: str
    _stderr: str
    _duration_ms: float
    _callback_invocations: int
    _peak_memory_bytes: int
    _fuel_consumed: int | None
    _result_json: str | None
    _result_error: str | None

    def __new__(cls, *args: object, **kwargs: object) -> ExecuteResult:
        raise TypeError("cannot create 'eryx.ExecuteResult' instances")

    @property
    def stdout(self) -> str:
        """Everything the run wrote to stdout (``print``, ``sys.stdout``, fd 1), decoded as
        UTF-8, with every trailing newline removed."""
        return self._stdout

    @property
    def stderr(self) -> str:
        """Everything the run wrote to stderr (fd 2), trimmed like ``stdout``."""
        return self._stderr

    @property
    def duration_ms(self) -> float:
        """Wall time of the call in milliseconds (time queued behind another operation of a
        ``Session`` excluded)."""
        return self._duration_ms

    @property
    def callback_invocations(self) -> int:
        """Callback calls the guest made during this run, rejected ones included."""
        return self._callback_invocations

    @property
    def peak_memory_bytes(self) -> int:
        """The largest guest linear memory size during the run, in bytes."""
        return self._peak_memory_bytes

    @property
    def fuel_consumed(self) -> int | None:
        """Fuel used, or ``None`` when metering is off."""
        return self._fuel_consumed

    @property
    def result(self) -> Any:
        """``json.loads(result_json)``, a new object on each access; ``None`` without JSON."""
        return None if self._result_json is None else json.loads(self._result_json)

    @property
    def result_json(self) -> str | None:
        """The result variable as ``json.dumps`` text, or ``None`` when the code did not set
        it or it could not be serialised."""
        return self._result_json

    @property
    def result_error(self) -> str | None:
        """Why the result variable could not be captured (e.g. ``result is not
        JSON-serializable: set (TypeError)``), or ``None``."""
        return self._result_error

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"'ExecuteResult' object attribute '{name}' is read-only")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"'ExecuteResult' object attribute '{name}' is read-only")

    def __str__(self) -> str:
        return self._stdout

    def __repr__(self) -> str:
        return (
            f"ExecuteResult(stdout={_short(self._stdout)}, stderr={_short(self._stderr)}, "
            f"duration_ms={self._duration_ms:.2f}, "
            f"callback_invocations={self._callback_invocations}, "
            f"peak_memory_bytes={self._peak_memory_bytes}, "
            f"fuel_consumed={self._fuel_consumed!r}, "
            f"result_json={_short(self._result_json)}, "
            f"result_error={self._result_error!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Results cross process boundaries (multiprocessing, Ray): every field survives. A copy
        # is a new object with the same fields (results compare by identity).
        return (_unpickle_result, (tuple(getattr(self, name) for name in self.__slots__),))


ExecuteResult.__module__ = "eryx"


def _unpickle_result(values: tuple[Any, ...]) -> ExecuteResult:
    return make_result(values)


_unpickle_result.__module__ = "eryx._result"


def make_result(values: tuple[Any, ...]) -> ExecuteResult:
    """Build an ExecuteResult from the bridge's result tuple (docs/BRIDGE.md)."""
    (stdout, stderr, duration_ms, invocations, peak, fuel, result_json, result_error) = values
    result = object.__new__(ExecuteResult)
    for name, value in (
        ("_stdout", stdout),
        ("_stderr", stderr),
        ("_duration_ms", float(duration_ms)),
        ("_callback_invocations", int(invocations)),
        ("_peak_memory_bytes", int(peak)),
        ("_fuel_consumed", None if fuel is None else int(fuel)),
        ("_result_json", result_json),
        ("_result_error", result_error),
    ):
        object.__setattr__(result, name, value)
    return result
