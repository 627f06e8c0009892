"""MCP support (API.md §13): ``MCPManager`` and the discovery of configured MCP servers.

Needs the extra ``goeryx[mcp]`` (the official ``mcp`` SDK); importing this module without it
raises ``ImportError`` naming the extra. ``import eryx`` never imports the SDK.
"""

from __future__ import annotations

try:
    import mcp as _sdk  # noqa: F401
except ImportError as _exc:
    raise ImportError(
        "eryx.mcp needs the MCP SDK, the extra goeryx[mcp]: pip install 'goeryx[mcp]'"
    ) from _exc

from ._mcp_manager import MCPManager

__all__ = ["MCPManager"]
