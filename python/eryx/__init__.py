"""goeryx: run untrusted Python code in CPython compiled to WebAssembly.

The guest runs inside this process on a Go WebAssembly engine (wazero), isolated from the host:
no host files, environment, processes or network unless granted.

    >>> import eryx
    >>> eryx.Sandbox().execute("print(2 + 2)").stdout
    '4'
"""

# `import eryx` imports nothing else: each public name is imported from its module on first
# access (PEP 562), so that a program pays for the modules it uses, when it uses them (the
# native extension and the runtime load later still, with the first sandbox).
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know the name)
if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, statically
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
    from ._mcp_manager import MCPManager
    from ._netconfig import NetConfig
    from ._result import ExecuteResult
    from ._sandbox import Sandbox
    from ._session import Session
    from ._runtime import ready_interpreters
    from ._vfs import VfsStorage

    GUEST_PYTHON_VERSION: str
    """The guest's ``platform.python_version()``, e.g. ``"3.13.5"``; ``"unknown"`` in a source
    checkout without a built runtime."""

__version__ = "0.1.0"
"""The goeryx version (PEP 440)."""

__all__ = [
    "CallbackRegistry",
    "CancelledError",
    "EryxError",
    "ExecuteResult",
    "ExecutionError",
    "GUEST_PYTHON_VERSION",
    "InitializationError",
    "MCPManager",
    "NetConfig",
    "ResourceLimitError",
    "ResourceLimits",
    "Sandbox",
    "SandboxFactory",
    "Session",
    "TimeoutError",
    "VfsStorage",
    "__version__",
    "ready_interpreters",
]

# Public name -> the module that defines it.
_LAZY = {
    "CallbackRegistry": "_callbacks",
    "CancelledError": "_errors",
    "EryxError": "_errors",
    "ExecutionError": "_errors",
    "InitializationError": "_errors",
    "ResourceLimitError": "_errors",
    "TimeoutError": "_errors",
    "SandboxFactory": "_factory",
    "ResourceLimits": "_limits",
    "MCPManager": "_mcp_manager",  # does not import the MCP SDK (the extra goeryx[mcp])
    "NetConfig": "_netconfig",
    "ExecuteResult": "_result",
    "Sandbox": "_sandbox",
    "Session": "_session",
    "VfsStorage": "_vfs",
    "ready_interpreters": "_runtime",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is not None:
        from importlib import import_module

        value = getattr(import_module("." + module, __name__), name)
    elif name == "GUEST_PYTHON_VERSION":
        # The guest's ``platform.python_version()``; ``"unknown"`` in a source checkout
        # without a built runtime.
        from ._runtime import read_guest_python_version

        value = read_guest_python_version()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses are plain lookups
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
