"""``MCPManager`` (API.md §13): stdio MCP servers whose tools guest code can call.

This module does not import the MCP SDK (``import eryx`` must not): the SDK is imported by
``connect``. The manager runs the SDK's client sessions on a private event loop thread; guest
calls reach them as async callbacks named ``mcp.<server>.<tool>`` (``mcp=`` on a ``Sandbox`` or
``Session``), awaited from whatever loop runs the sandbox's callbacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ._callbacks import CallbackDef
from ._errors import InitializationError
from ._validate import type_name

__all__ = ["MCPManager", "require_sdk"]

log = logging.getLogger("eryx.mcp")

_STDERR_TAIL = 2000


def require_sdk() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "MCP support needs the MCP SDK, the extra goeryx[mcp]: pip install 'goeryx[mcp]'"
        ) from exc


def map_result(result: Any) -> Any:
    """A ``CallToolResult`` as the guest sees it: the structured content, otherwise a single
    JSON text part decoded, otherwise ``{"text": <the text parts>}``."""
    if result.structured_content is not None:
        return result.structured_content
    texts = [getattr(part, "text", None) for part in result.content]
    texts = [t for t in texts if isinstance(t, str)]
    if len(result.content) == 1 and len(texts) == 1:
        try:
            return json.loads(texts[0])
        except ValueError:
            pass
    return {"text": "\n".join(texts)}


class _Server:
    def __init__(self, name: str, errlog: Any) -> None:
        self.name = name
        self.errlog = errlog
        self.session: Any = None
        self.tools: list[Any] = []
        self.alive = False
        self.stop: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None

    def stderr_tail(self) -> str:
        try:
            self.errlog.flush()
            self.errlog.seek(0)
            text: str = self.errlog.read()
        except (OSError, ValueError):
            return ""
        return text[-_STDERR_TAIL:].strip()

    async def run(self, params: Any, ready: asyncio.Future[int]) -> None:
        from mcp import ClientSession, stdio_client

        self.stop = asyncio.Event()
        try:
            async with stdio_client(params, errlog=self.errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools: list[Any] = []
                    cursor = None
                    while True:
                        page = await session.list_tools(cursor=cursor) if cursor else (
                            await session.list_tools())
                        tools.extend(page.tools)
                        cursor = page.next_cursor
                        if not cursor:
                            break
                    self.session, self.tools, self.alive = session, tools, True
                    ready.set_result(len(tools))
                    await self.stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif not isinstance(exc, (asyncio.CancelledError, Exception)):
                raise
            else:
                log.debug("MCP server %r stopped", self.name, exc_info=True)
        finally:
            self.alive = False


class MCPManager:
    """Connects to stdio MCP servers and exposes their tools to sandboxed code.

    Needs the extra ``goeryx[mcp]`` (the MCP SDK) to connect. Pass it as ``mcp=`` to a
    ``Sandbox`` or ``Session`` (read at their construction): each tool becomes the async
    callback ``mcp.<server>.<tool>``, awaited in the guest as ``await mcp.srv.tool(...)``,
    ``await mcp["srv"]["tool"](...)`` or ``await invoke("mcp.srv.tool", ...)``, under the
    callback limits and timeouts. A result is the tool's structured content, otherwise its
    single JSON text part decoded, otherwise ``{"text": ...}``. A tool error raises a
    ``RuntimeError`` in the guest (its ``CallbackError``, message
    ``RuntimeError: MCP tool error: ...``), and the tools of a server that has died raise it
    with ``MCP server '<name>' is not running``. Gathered calls run
    concurrently. Close it (or use it as a context manager) to stop the servers.

    Example:
        ```python
        import sys
        import eryx

        with eryx.MCPManager() as manager:
            manager.connect("files", sys.executable, ["my_mcp_server.py"])
            with eryx.Sandbox(mcp=manager) as sandbox:
                sandbox.execute("print(await mcp.files.search(query='todo'))")
        ```
    """

    __module__ = "eryx"

    def __init__(self) -> None:
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"MCPManager({self.server_names!r})"

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle 'MCPManager' object")

    def __copy__(self) -> Any:
        raise TypeError("cannot copy 'MCPManager' object")

    def __deepcopy__(self, memo: Any) -> Any:
        raise TypeError("cannot copy 'MCPManager' object")

    def __enter__(self) -> MCPManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    @property
    def server_names(self) -> list[str]:
        """The connected servers' names, in connection order."""
        return list(self._servers)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="eryx-mcp", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def connect(
        self,
        name: str,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout_secs: float = 30.0,
    ) -> int:
        """Start a stdio MCP server and list its tools.

        Args:
            name: The server's name in the guest (``mcp.<name>.<tool>``): non-empty, printable,
                without ``.``; unique in this manager.
            command: The program to run.
            args: Its arguments.
            env: Environment variables added to a minimal default environment (``PATH``,
                ``HOME``, ...); the host's other variables are not passed on.
            timeout_secs: How long the server may take to start and answer.

        Returns:
            The number of tools the server offers.

        Raises:
            InitializationError: The server could not be started or did not answer in time;
                the message ends with the tail of its stderr.
            ValueError: A bad or duplicate ``name``, or the manager is closed.
            ImportError: The MCP SDK (``goeryx[mcp]``) is not installed.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be str, not {type_name(name)}")
        if not name or "." in name or "\0" in name or not name.isprintable():
            raise ValueError(
                f"invalid MCP server name {name!r}: must be non-empty, printable and without '.'"
            )
        if not isinstance(command, str) or not command:
            raise TypeError("command must be a non-empty str")
        if isinstance(args, str) or not all(isinstance(a, str) for a in args):
            raise TypeError("args must be a list of str")
        if env is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in dict(env).items()
        ):
            raise TypeError("env must be a dict of str to str")
        if isinstance(timeout_secs, bool) or not isinstance(timeout_secs, (int, float)) or (
            timeout_secs <= 0
        ):
            raise ValueError("timeout_secs must be a positive number")
        require_sdk()
        from mcp import StdioServerParameters
        from mcp.client.stdio import get_default_environment

        with self._lock:
            if self._closed:
                raise ValueError("MCPManager is closed")
            if name in self._servers:
                raise ValueError(f"MCP server '{name}' is already connected")
            server = _Server(name, tempfile.TemporaryFile("w+", encoding="utf-8",
                                                          errors="replace"))
            self._servers[name] = server
        full_env = get_default_environment()
        full_env.update(env or {})
        params = StdioServerParameters(command=command, args=list(args), env=full_env)
        loop = self._ensure_loop()

        async def start() -> int:
            ready: asyncio.Future[int] = loop.create_future()
            server.task = loop.create_task(server.run(params, ready))
            try:
                return await asyncio.wait_for(asyncio.shield(ready), timeout_secs)
            except BaseException:
                ready.cancel()  # nobody awaits it any more
                server.task.cancel()
                try:
                    await server.task
                except BaseException:
                    pass
                raise

        try:
            return asyncio.run_coroutine_threadsafe(start(), loop).result()
        except BaseException as exc:
            with self._lock:
                self._servers.pop(name, None)
            if isinstance(exc, asyncio.TimeoutError):
                reason = f"no answer within {timeout_secs} s"
            else:
                reason = _describe(exc)
            tail = server.stderr_tail()
            server.errlog.close()
            message = f"MCP server '{name}' failed to start: {reason}"
            if tail:
                message += f"\nserver stderr:\n{tail}"
            raise InitializationError(message) from None

    def list_tools(self) -> list[dict[str, Any]]:
        """Every tool of every server: ``{"name": 'mcp["<server>"].<tool>', "server", "tool",
        "description", "schema"}``."""
        return [
            {
                "name": f'mcp["{server.name}"].{tool.name}',
                "server": server.name,
                "tool": tool.name,
                "description": tool.description or "",
                "schema": dict(tool.input_schema),
            }
            for server in list(self._servers.values())
            for tool in server.tools
        ]

    def _callback_defs(self) -> list[CallbackDef]:
        """The callbacks ``mcp.<server>.<tool>`` for a Sandbox or Session."""
        if self._closed:
            raise ValueError("MCPManager is closed")
        defs = []
        for server in list(self._servers.values()):
            for tool in server.tools:
                defs.append(CallbackDef(
                    f"mcp.{server.name}.{tool.name}",
                    self._tool_function(server, tool.name),
                    tool.description or "",
                    json.loads(json.dumps(tool.input_schema)),
                ))
        return defs

    def _tool_function(self, server: _Server, tool: str) -> Any:
        async def call_tool(**arguments: Any) -> Any:
            return await self._call(server, tool, arguments)

        call_tool.__name__ = tool
        return call_tool

    async def _call(self, server: _Server, tool: str, arguments: dict[str, Any]) -> Any:
        loop = self._loop
        if not server.alive or loop is None or self._closed:
            raise RuntimeError(f"MCP server '{server.name}' is not running")
        future = asyncio.run_coroutine_threadsafe(server.session.call_tool(tool, arguments), loop)
        try:
            result = await asyncio.wrap_future(future)
        except Exception as exc:
            from mcp_types import CONNECTION_CLOSED

            if not server.alive or getattr(exc, "code", None) == CONNECTION_CLOSED:
                server.alive = False
                raise RuntimeError(f"MCP server '{server.name}' is not running") from None
            message = getattr(exc, "message", None)
            raise RuntimeError(
                f"MCP tool error: {message if isinstance(message, str) else _describe(exc)}"
            ) from None
        if result.is_error:
            text = "\n".join(
                t for t in (getattr(p, "text", None) for p in result.content) if isinstance(t, str)
            )
            raise RuntimeError(f"MCP tool error: {text}")
        return map_result(result)

    def close(self) -> None:
        """Stop every server (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            servers = list(self._servers.values())
        loop = self._loop
        if loop is None:
            return

        async def stop_all() -> None:
            for server in servers:
                if server.stop is not None:
                    server.stop.set()
            tasks = [s.task for s in servers if s.task is not None]
            if tasks:
                done, pending = await asyncio.wait(tasks, timeout=5)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=5)

        try:
            asyncio.run_coroutine_threadsafe(stop_all(), loop).result(timeout=15)
        except Exception:
            log.debug("stopping MCP servers", exc_info=True)
        for server in servers:
            server.alive = False
            server.errlog.close()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
