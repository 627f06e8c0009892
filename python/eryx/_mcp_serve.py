"""``eryx serve`` (API.md §13): an MCP stdio server holding one persistent ``Session``.

Tools: ``run_python(code, timeout_ms=None)`` and ``reset()``. stdout carries the MCP protocol
only: guest output is captured through the session's output handlers and returned in tool
results; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ._errors import EryxError, ExecutionError, ResourceLimitError, TimeoutError
from ._session import Session

__all__ = ["serve"]

log = logging.getLogger("eryx.serve")

RUN_PYTHON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "Python source code to run"},
        "timeout_ms": {
            "type": "integer",
            "minimum": 1,
            "description": "execution timeout for this run, in milliseconds",
        },
    },
    "required": ["code"],
}
RESET_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

RUN_PYTHON_DESCRIPTION = (
    "Run Python code in a persistent sandboxed CPython interpreter (WebAssembly): variables, "
    "functions and imports survive between calls. Returns stdout, then stderr after a "
    "'[stderr]' line. No host files, processes or network unless the server was started "
    "with them; top-level await works."
)
RESET_DESCRIPTION = "Discard all state: start a fresh interpreter (mounted files are kept)."


def format_output(stdout: str, stderr: str) -> str:
    """The text of a ``run_python`` result: stdout, then ``[stderr]\\n<text>``, or
    ``(no output)``."""
    parts = []
    if stdout:
        parts.append(stdout.rstrip("\n"))
    if stderr:
        parts.append("[stderr]\n" + stderr.rstrip("\n"))
    return "\n".join(parts) if parts else "(no output)"


class _Runner:
    """The session and the per-run output buffers; runs one call at a time."""

    def __init__(self, session_kwargs: dict[str, Any]) -> None:
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._session = Session(
            on_stdout=self._stdout.append, on_stderr=self._stderr.append, **session_kwargs
        )
        self._lock = asyncio.Lock()

    def close(self) -> None:
        self._session.close()

    async def run_python(self, code: object, timeout_ms: object) -> tuple[str, bool]:
        if not isinstance(code, str):
            return "run_python: 'code' must be a string", True
        if timeout_ms is not None and (
            isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1
        ):
            return "run_python: 'timeout_ms' must be a positive integer", True
        async with self._lock:
            session = self._session
            saved = session.execution_timeout_ms
            self._stdout.clear()
            self._stderr.clear()
            error: str | None = None
            try:
                if timeout_ms is not None:
                    session.execution_timeout_ms = timeout_ms
                await session.execute_async(code)
            except ExecutionError:
                pass  # the traceback was streamed to stderr
            except TimeoutError as exc:
                error = f"TimeoutError: {exc}"
            except ResourceLimitError as exc:
                error = f"ResourceLimitError: {exc}"
            except (EryxError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                return format_output("".join(self._stdout), "".join(self._stderr)), False
            finally:
                session.execution_timeout_ms = saved
            stderr = "".join(self._stderr)
            if error is not None:
                stderr = stderr + ("" if not stderr or stderr.endswith("\n") else "\n") + error
                log.info("run_python: %s", error)
            return format_output("".join(self._stdout), stderr), True

    async def reset(self) -> tuple[str, bool]:
        async with self._lock:
            await asyncio.to_thread(self._session.reset)
        return "The interpreter was reset: all variables and imports are gone.", False


async def _serve(session_kwargs: dict[str, Any]) -> None:
    import mcp.types as types
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server

    from . import __version__

    runner = _Runner(session_kwargs)
    tools = [
        types.Tool(name="run_python", description=RUN_PYTHON_DESCRIPTION,
                   input_schema=RUN_PYTHON_SCHEMA),
        types.Tool(name="reset", description=RESET_DESCRIPTION, input_schema=RESET_SCHEMA),
    ]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: Any) -> types.CallToolResult:
        arguments = params.arguments or {}
        if params.name == "run_python":
            text, is_error = await runner.run_python(
                arguments.get("code"), arguments.get("timeout_ms")
            )
        elif params.name == "reset":
            text, is_error = await runner.reset()
        else:
            text, is_error = f"unknown tool '{params.name}'", True
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], is_error=is_error
        )

    server = Server(
        "eryx", version=__version__, on_list_tools=list_tools, on_call_tool=call_tool
    )
    try:
        async with stdio_server() as (read_stream, write_stream):
            log.info("ready")
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        runner.close()


def serve(session_kwargs: dict[str, Any]) -> int:
    """Run the server on this process's stdin/stdout until the client disconnects."""
    logging.basicConfig(level=logging.INFO, format="eryx serve: %(message)s")
    asyncio.run(_serve(session_kwargs))
    return 0
