"""goeryx: run untrusted Python code in CPython compiled to WebAssembly.

The guest runs inside this process on a Go WebAssembly engine (wazero), isolated from the host:
no host files, environment, processes or network unless granted.

    >>> import eryx
    >>> eryx.Sandbox().execute("print(2 + 2)").stdout
    '4'
"""

from ._callbacks import CallbackRegistry
from ._errors import (
    CancelledError,
    EryxError,
    ExecutionError,
    InitializationError,
    ResourceLimitError,
    TimeoutError,
)
from ._factory import SandboxFactory
from ._limits import ResourceLimits
from ._netconfig import NetConfig
from ._result import ExecuteResult
from ._runtime import read_guest_python_version as _read_guest_python_version
from ._sandbox import Sandbox
from ._session import Session
from ._vfs import VfsStorage

__version__ = "0.1.0"
"""The goeryx version (PEP 440)."""

GUEST_PYTHON_VERSION: str = _read_guest_python_version()
"""The guest's ``platform.python_version()``, e.g. ``"3.13.5"``; ``"unknown"`` in a source
checkout without a built runtime."""

__all__ = [
    "CallbackRegistry",
    "CancelledError",
    "EryxError",
    "ExecuteResult",
    "ExecutionError",
    "GUEST_PYTHON_VERSION",
    "InitializationError",
    "NetConfig",
    "ResourceLimitError",
    "ResourceLimits",
    "Sandbox",
    "SandboxFactory",
    "Session",
    "TimeoutError",
    "VfsStorage",
    "__version__",
]
