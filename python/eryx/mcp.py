"""MCP support (API.md §13): ``MCPManager`` and the discovery of configured MCP servers.

Needs the extra ``goeryx[mcp]`` (the official ``mcp`` SDK); importing this module without it
raises ``ImportError`` naming the extra. ``import eryx`` never imports the SDK.

Discovery reads the stdio servers (entries with a ``command``) of the MCP configuration files
of common IDEs and agents, in the order of ``config_paths()``; a later file's server replaces
an earlier one of the same name. ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` in ``env`` values
(and in ``command`` and ``args``) are expanded from the host environment.
"""

from __future__ import annotations

try:
    import mcp as _sdk  # noqa: F401
except ImportError as _exc:
    raise ImportError(
        "eryx.mcp needs the MCP SDK, the extra goeryx[mcp]: pip install 'goeryx[mcp]'"
    ) from _exc

import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import InitializationError
from ._mcp_manager import MCPManager

__all__ = [
    "MCPManager",
    "config_paths",
    "connect_configured",
    "connect_servers",
    "discover",
    "expand_env",
    "load_config",
]

log = logging.getLogger("eryx.mcp")

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` (the default when VAR is unset or
    empty); an unset variable without a default expands to ``""``."""
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        current = env.get(name, "")
        if default is not None and not current:
            return default
        return current

    return _VAR.sub(replace, value)


def config_paths(cwd: str | os.PathLike[str] | None = None) -> list[Path]:
    """The configuration files discovery reads, user-wide first, then the project's (under
    ``cwd``, default the current directory); later files win. Missing files are skipped."""
    home = Path.home()
    project = Path.cwd() if cwd is None else Path(cwd)
    if sys.platform == "darwin":
        claude_desktop = home / "Library/Application Support/Claude/claude_desktop_config.json"
    elif sys.platform == "win32":
        claude_desktop = Path(os.environ.get("APPDATA", home)) / "Claude/claude_desktop_config.json"
    else:
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        claude_desktop = config_home / "Claude/claude_desktop_config.json"
    return [
        claude_desktop,                                   # Claude Desktop
        home / ".codeium/windsurf/mcp_config.json",       # Windsurf
        home / ".cursor/mcp.json",                        # Cursor (user)
        home / ".claude.json",                            # Claude Code (user)
        project / ".vscode/mcp.json",                     # VS Code (workspace)
        project / ".cursor/mcp.json",                     # Cursor (project)
        project / ".mcp.json",                            # Claude Code (project)
    ]


def load_config(path: str | os.PathLike[str],
                environ: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The stdio servers of one configuration file: ``{name: {"command", "args", "env"}}``.

    The servers are under ``mcpServers`` (or ``servers``, VS Code's key); entries without a
    ``command`` (remote servers) are skipped. Raises ``OSError`` when the file cannot be read
    and ``ValueError`` when it is not such a configuration.
    """
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    servers = data.get("mcpServers", data.get("servers", {}))
    if not isinstance(servers, dict):
        raise ValueError(f"{path}: 'mcpServers' must be an object")
    found: dict[str, dict[str, Any]] = {}
    for name, entry in servers.items():
        if not isinstance(entry, dict) or "command" not in entry:
            continue
        if entry.get("type", "stdio") != "stdio" or entry.get("disabled") is True:
            continue
        command, args, env = entry["command"], entry.get("args", []), entry.get("env", {})
        if not isinstance(command, str) or not isinstance(args, list) or not all(
            isinstance(a, str) for a in args
        ):
            raise ValueError(f"{path}: server '{name}': 'command' must be a string and "
                             "'args' a list of strings")
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ValueError(f"{path}: server '{name}': 'env' must map names to strings")
        found[name] = {
            "command": expand_env(command, environ),
            "args": [expand_env(a, environ) for a in args],
            "env": {k: expand_env(v, environ) for k, v in env.items()},
        }
    return found


def discover(paths: Sequence[str | os.PathLike[str]] | None = None,
             environ: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The stdio servers of every existing file of ``paths`` (default ``config_paths()``),
    later files winning. A file that cannot be read or parsed is skipped with a warning on
    the logger ``eryx.mcp``."""
    servers: dict[str, dict[str, Any]] = {}
    for path in config_paths() if paths is None else paths:
        if not os.path.isfile(path):
            continue
        try:
            servers.update(load_config(path, environ))
        except (OSError, ValueError) as exc:
            log.warning("skipping MCP configuration %s: %s", path, exc)
    return servers


def connect_servers(servers: Mapping[str, Mapping[str, Any]],
                    manager: MCPManager | None = None, *, timeout_secs: float = 30.0,
                    strict: bool = False) -> MCPManager:
    """Connect each server of ``servers`` (as ``discover`` returns them) to ``manager`` (a new
    one by default) and return the manager. A server that fails to start is logged and left
    out, or, with ``strict``, raises ``InitializationError``."""
    manager = MCPManager() if manager is None else manager
    for name, spec in servers.items():
        try:
            manager.connect(name, spec["command"], spec.get("args", []), spec.get("env", {}),
                            timeout_secs=timeout_secs)
        except (InitializationError, ValueError) as exc:
            if strict:
                manager.close()
                raise
            log.warning("%s", exc)
    return manager


def connect_configured(paths: Sequence[str | os.PathLike[str]] | None = None, *,
                       timeout_secs: float = 30.0) -> MCPManager:
    """A new ``MCPManager`` connected to the servers ``discover(paths)`` finds."""
    return connect_servers(discover(paths), timeout_secs=timeout_secs)
