"""Validation of the constructor arguments shared by Sandbox and Session, and the engine
configuration JSON they send to the bridge (goeryx/config.go)."""

from __future__ import annotations

import json
import os
from typing import Any

from ._callbacks import CallbackDef, resolve_callbacks
from ._limits import ResourceLimits
from ._netconfig import NetConfig
from ._validate import (
    check_bool,
    check_callable,
    check_guest_path,
    check_host_patterns,
    check_identifier,
    check_instance,
    check_path,
    is_valid_unicode,
    paths_overlap,
    type_name,
)
from ._vfs import VfsStorage

__all__ = ["EngineConfig", "DEFAULT_VFS_MOUNT_PATH", "check_secrets", "check_volumes"]

DEFAULT_VFS_MOUNT_PATH = "/data"
SITE_PACKAGES = "/site-packages"
GUEST_PREFIX = "/usr/local"  # ERYX_GUEST_PREFIX in goeryx/internal/abi/eryx_abi.h
# json.dumps builds a new encoder on every call that passes options.
_CONFIG_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False)


def check_not_reserved(name: str, path: str) -> str:
    """Refuses a normalised guest mount path at, above or below the guest prefix: a mount there
    would shadow the stdlib (or the interpreter's own files) and break the interpreter."""
    if paths_overlap(path, GUEST_PREFIX):
        raise ValueError(
            f"{name} '{path}' overlaps the guest's Python installation under '{GUEST_PREFIX}'")
    return path


def check_secrets(secrets: object) -> list[dict[str, Any]]:
    """``secrets=`` as the engine's ``Secret`` list (API.md §6.5, §12)."""
    if secrets is None:
        return []
    if not isinstance(secrets, dict):
        raise TypeError("secrets must be a dict")
    result: list[dict[str, Any]] = []
    for name, spec in secrets.items():
        if not isinstance(name, str):
            raise TypeError("secret names must be strings")
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"invalid secret name '{name}'")
        if not is_valid_unicode(name):
            raise ValueError(
                f"invalid secret name {name!r}: must be valid Unicode (no lone surrogates)"
            )
        if not isinstance(spec, dict):
            raise TypeError(f"secret '{name}' value must be a dict with a 'value' key")
        if "value" not in spec:
            raise ValueError(f"secret '{name}' dict must contain a 'value' key")
        value = spec["value"]
        if not isinstance(value, str):
            raise TypeError(f"secret '{name}' value must be a string")
        if not value or any(c in value for c in "\r\n\0"):
            raise ValueError(
                f"secret '{name}' value must be non-empty and must not contain CR, LF or NUL"
            )
        if not is_valid_unicode(value):
            raise ValueError(
                f"secret '{name}' value must be valid Unicode (no lone surrogates)"
            )
        hosts = spec.get("allowed_hosts")
        if hosts is None:
            hosts = []
        if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) for h in hosts):
            raise TypeError(f"secret '{name}' allowed_hosts must be a list of strings")
        entry: dict[str, Any] = {"name": str.__str__(name), "value": str.__str__(value)}
        if hosts:
            entry["allowed_hosts"] = check_host_patterns("allowed_hosts", hosts)
        result.append(entry)
    return result


def check_volumes(volumes: object, vfs_mount_path: str) -> list[dict[str, Any]]:
    """``volumes=`` as the engine's ``Volume`` list, host paths made absolute (API.md §6.4)."""
    if volumes is None:
        return []
    if not isinstance(volumes, (list, tuple)):
        raise TypeError(
            "volumes must be a list or tuple of (host_path, guest_path, read_only) tuples, "
            f"not {type_name(volumes)}"
        )
    reserved = [SITE_PACKAGES, vfs_mount_path]
    result: list[dict[str, Any]] = []
    for item in volumes:
        if not isinstance(item, tuple) or len(item) != 3:
            raise TypeError(
                "each volume must be a (host_path, guest_path, read_only) tuple, "
                f"not {type_name(item)}"
            )
        host_path = os.path.abspath(check_path("host_path", item[0]))
        guest_path = check_not_reserved(
            "volume guest_path", check_guest_path("guest_path", item[1]))
        read_only = check_bool("read_only", item[2])
        for other in reserved:
            if paths_overlap(guest_path, other):
                raise ValueError(f"volume guest_path '{guest_path}' overlaps '{other}'")
        reserved.append(guest_path)
        result.append({"host_path": host_path, "guest_path": guest_path, "read_only": read_only})
    return result


def _with_mcp(callbacks: list[CallbackDef], mcp: object) -> list[CallbackDef]:
    """The ``mcp=`` manager's tools (``mcp.<server>.<tool>``) before the explicit callbacks,
    which win on a name clash."""
    if mcp is None:
        return callbacks
    from ._mcp_manager import MCPManager  # does not import the MCP SDK

    if not isinstance(mcp, MCPManager):
        raise TypeError(f"mcp must be an MCPManager or None, not {type_name(mcp)}")
    names = {c.name for c in callbacks}
    return [d for d in mcp._callback_defs() if d.name not in names] + callbacks


class EngineConfig:
    """Validated arguments of a Sandbox or Session."""

    __slots__ = ("limits", "network", "callbacks", "volumes", "vfs", "vfs_mount_path",
                 "on_stdout", "on_stderr", "result_variable", "secrets", "scrub")

    def __init__(
        self,
        limits: ResourceLimits,
        network: NetConfig | None,
        callbacks: list[CallbackDef],
        volumes: list[dict[str, Any]],
        vfs: VfsStorage | None,
        vfs_mount_path: str | None,
        on_stdout: Any,
        on_stderr: Any,
        result_variable: str | None,
        secrets: list[dict[str, Any]] | None = None,
        scrub: dict[str, bool] | None = None,
    ) -> None:
        self.limits = limits
        self.network = network
        self.callbacks = callbacks
        self.volumes = volumes
        self.vfs = vfs
        self.vfs_mount_path = vfs_mount_path
        self.on_stdout = on_stdout
        self.on_stderr = on_stderr
        self.result_variable = result_variable
        self.secrets = secrets if secrets is not None else []
        self.scrub = scrub if scrub is not None else {}

    @classmethod
    def validate(
        cls,
        *,
        limits: ResourceLimits,
        network: object,
        callbacks: object,
        volumes: object,
        vfs: object,
        vfs_mount_path: object,
        on_stdout: object,
        on_stderr: object,
        result_variable: object,
        mcp: object = None,
    ) -> EngineConfig:
        checked_network = check_instance("network", network, NetConfig, "a NetConfig")
        checked_vfs = check_instance("vfs", vfs, VfsStorage, "a VfsStorage")
        mount: str | None = None
        if vfs_mount_path is not None:
            if checked_vfs is None:
                raise ValueError("vfs_mount_path can only be given together with vfs")
            mount = check_not_reserved(
                "vfs_mount_path", check_guest_path("vfs_mount_path", vfs_mount_path))
        elif checked_vfs is not None:
            mount = DEFAULT_VFS_MOUNT_PATH
        return cls(
            limits=limits,
            network=None if checked_network is None else checked_network.__copy__(),
            callbacks=_with_mcp(resolve_callbacks(callbacks), mcp),
            volumes=check_volumes(volumes, mount or DEFAULT_VFS_MOUNT_PATH),
            vfs=checked_vfs,
            vfs_mount_path=mount,
            on_stdout=check_callable("on_stdout", on_stdout),
            on_stderr=check_callable("on_stderr", on_stderr),
            result_variable=(
                None
                if result_variable is None
                else check_identifier("result_variable", result_variable)
            ),
        )

    def to_json(self) -> bytes:
        """The ``Config`` JSON of goeryx/config.go."""
        config: dict[str, Any] = {
            "limits": self.limits._to_config(),
            "scrub": {
                "stdout": self.scrub.get("stdout", False),
                "stderr": self.scrub.get("stderr", False),
                "result": self.scrub.get("result", False),
                "files": self.scrub.get("files", False),
            },
        }
        if self.network is not None:
            config["network"] = self.network._to_config()
        if self.callbacks:
            config["callbacks"] = [c.to_config() for c in self.callbacks]
        if self.secrets:
            config["secrets"] = self.secrets
        if self.volumes:
            config["volumes"] = self.volumes
        if self.vfs_mount_path is not None:
            config["vfs_mount_path"] = self.vfs_mount_path
        if self.result_variable is not None:
            config["result_variable"] = self.result_variable
        if self.on_stdout is not None:
            config["stream_stdout"] = True
        if self.on_stderr is not None:
            config["stream_stderr"] = True
        return _CONFIG_ENCODER.encode(config).encode("ascii")
