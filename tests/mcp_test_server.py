"""A small MCP stdio server for tests/test_mcp.py, written with the SDK's server API.

Run as ``python tests/mcp_test_server.py [NAME]``; the environment variable
``MCP_TEST_GREETING`` is echoed by ``greeting`` (env passing and expansion).
"""

import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer(sys.argv[1] if len(sys.argv) > 1 else "test-server")


@server.tool(structured_output=False)
def echo(text: str) -> str:
    """Return the text unchanged (a plain text part)."""
    return text


@server.tool(structured_output=False)
def add(a: int, b: int = 1) -> dict:
    """Add two integers (the result is a JSON text part)."""
    return {"sum": a + b}


@server.tool(structured_output=True)
def stats(values: list[int]) -> dict[str, int]:
    """Structured content."""
    return {"count": len(values), "total": sum(values)}


@server.tool()
def fail(message: str) -> str:
    """Always fails."""
    raise ToolError(message)


@server.tool()
async def sleep(ms: int) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(ms / 1000)
    return f"slept {ms}"


_arrived = 0
_all_here = asyncio.Event()


@server.tool()
async def rendezvous(n: int) -> str:
    """Wait until n calls are in progress at once: "met", or "alone" after 5 s."""
    global _arrived
    _arrived += 1
    if _arrived >= n:
        _all_here.set()
    try:
        await asyncio.wait_for(_all_here.wait(), 5)
    except asyncio.TimeoutError:
        return "alone"
    return "met"


@server.tool()
def greeting() -> str:
    """The environment variable MCP_TEST_GREETING."""
    return os.environ.get("MCP_TEST_GREETING", "(unset)")


@server.tool()
def die() -> str:
    """Exit the server process at once."""
    os._exit(3)


if __name__ == "__main__":
    print("test server starting", file=sys.stderr, flush=True)
    server.run()
