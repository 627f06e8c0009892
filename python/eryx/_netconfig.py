"""NetConfig: the network policy of a Sandbox or Session (API.md §3).

Only the patterns are validated here; the policy itself runs on the host, in the engine.
"""

from __future__ import annotations

import base64
from typing import Any

from ._certs import parse_certificates
from ._validate import (
    INT64_MAX,
    check_bytes_like,
    check_host_pattern,
    check_host_patterns,
    check_int,
)

__all__ = ["NetConfig", "DEFAULT_BLOCKED_HOSTS"]

DEFAULT_BLOCKED_HOSTS: tuple[str, ...] = (
    "localhost",
    "*.localhost",
    "127.*",
    "10.*",
    *(f"172.{n}.*" for n in range(16, 32)),
    "192.168.*",
    "169.254.*",
    "[::1]",
)


def _list_repr(items: list[str]) -> str:
    if len(items) <= 5:
        return repr(items)
    shown = ", ".join(repr(item) for item in items[:3])
    return f"[{shown}, ... ({len(items) - 3} more)]"


class NetConfig:
    """Network policy: connection limits, timeouts, allowed/blocked host patterns and extra
    trusted root certificates.

    A mutable value object: supports ``==``, copy and pickle; unhashable. ``allow_host``,
    ``block_host``, ``allow_localhost`` and ``with_root_cert`` change it in place and return it.

    A pattern is a case-insensitive glob matched against the whole host name or address:
    ``*`` matches any run of characters, dots included (``*.example.com`` matches
    ``api.example.com`` but not ``example.com``). The policy is checked on the host at every
    connect, against the name and against every address it resolves to.

    Args:
        max_connections: Connections open at once per run; ``0`` means no limit.
        connect_timeout_ms: Upper bound on DNS lookup, connect and TLS handshake (>= 1).
        io_timeout_ms: Upper bound on each read or write (>= 1).
        allowed_hosts: Host patterns; when non-empty, only matching hosts are reachable.
            ``None`` or ``[]``: every host that is not blocked.
        blocked_hosts: Host patterns that are refused. ``None``: the defaults, which block
            ``localhost``, loopback and the private address ranges (and turn on the matching
            address guards); ``[]`` blocks nothing.

    Raises:
        TypeError: A value has the wrong type.
        ValueError: A number is out of range or a pattern is empty, longer than 255
            characters, or contains whitespace, NUL or ``/``.
    """

    __slots__ = (
        "_max_connections",
        "_connect_timeout_ms",
        "_io_timeout_ms",
        "_allowed_hosts",
        "_blocked_hosts",
        "_root_certs",
    )

    _max_connections: int
    _connect_timeout_ms: int
    _io_timeout_ms: int
    _allowed_hosts: list[str]
    _blocked_hosts: list[str]
    _root_certs: list[bytes]

    def __init__(
        self,
        *,
        max_connections: int = 10,
        connect_timeout_ms: int = 30000,
        io_timeout_ms: int = 60000,
        allowed_hosts: list[str] | tuple[str, ...] | None = None,
        blocked_hosts: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.connect_timeout_ms = connect_timeout_ms
        self.io_timeout_ms = io_timeout_ms
        self.allowed_hosts = allowed_hosts
        self.blocked_hosts = blocked_hosts
        self._root_certs = []

    @staticmethod
    def permissive() -> NetConfig:
        """A new config that reaches every host, loopback and private ones included, with
        ``max_connections=100`` and the default timeouts."""
        return NetConfig(max_connections=100, allowed_hosts=[], blocked_hosts=[])

    @property
    def max_connections(self) -> int:
        """TCP/TLS connections open at once per run; ``0`` means no limit."""
        return self._max_connections

    @max_connections.setter
    def max_connections(self, value: int) -> None:
        self._max_connections = check_int("max_connections", value, 0, INT64_MAX, optional=False)

    @property
    def connect_timeout_ms(self) -> int:
        """Upper bound on DNS + connect + TLS handshake, in milliseconds."""
        return self._connect_timeout_ms

    @connect_timeout_ms.setter
    def connect_timeout_ms(self, value: int) -> None:
        self._connect_timeout_ms = check_int(
            "connect_timeout_ms", value, 1, INT64_MAX, optional=False
        )

    @property
    def io_timeout_ms(self) -> int:
        """Upper bound on each read or write, in milliseconds."""
        return self._io_timeout_ms

    @io_timeout_ms.setter
    def io_timeout_ms(self, value: int) -> None:
        self._io_timeout_ms = check_int("io_timeout_ms", value, 1, INT64_MAX, optional=False)

    @property
    def allowed_hosts(self) -> list[str]:
        """A copy of the allowed patterns; empty means every host that is not blocked."""
        return list(self._allowed_hosts)

    @allowed_hosts.setter
    def allowed_hosts(self, value: list[str] | tuple[str, ...] | None) -> None:
        self._allowed_hosts = [] if value is None else check_host_patterns("allowed_hosts", value)

    @property
    def blocked_hosts(self) -> list[str]:
        """A copy of the blocked patterns."""
        return list(self._blocked_hosts)

    @blocked_hosts.setter
    def blocked_hosts(self, value: list[str] | tuple[str, ...] | None) -> None:
        self._blocked_hosts = (
            list(DEFAULT_BLOCKED_HOSTS)
            if value is None
            else check_host_patterns("blocked_hosts", value)
        )

    @property
    def allow_all_hosts(self) -> bool:
        """``True`` when ``allowed_hosts`` is empty."""
        return not self._allowed_hosts

    def allow_host(self, pattern: str) -> NetConfig:
        """Add ``pattern`` to ``allowed_hosts``; from then on only matching hosts are allowed.

        Args:
            pattern: A host pattern such as ``"api.example.com"`` or ``"*.example.com"``.

        Returns:
            This config, changed in place.
        """
        pattern = check_host_pattern(pattern)
        if pattern not in self._allowed_hosts:
            self._allowed_hosts.append(pattern)
        return self

    def block_host(self, pattern: str) -> NetConfig:
        """Add ``pattern`` to ``blocked_hosts``.

        Args:
            pattern: A host pattern.

        Returns:
            This config, changed in place.
        """
        pattern = check_host_pattern(pattern)
        if pattern not in self._blocked_hosts:
            self._blocked_hosts.append(pattern)
        return self

    def allow_localhost(self) -> NetConfig:
        """Remove the loopback patterns from ``blocked_hosts`` (private ranges stay blocked).

        Returns:
            This config, changed in place.
        """
        self._blocked_hosts = [
            p
            for p in self._blocked_hosts
            if not ("localhost" in p.lower() or p.startswith("127.") or "::1" in p)
        ]
        return self

    def with_root_cert(self, cert: bytes) -> NetConfig:
        """Trust extra root certificates besides the system roots.

        Args:
            cert: One DER certificate, or PEM text with one or more certificates (bytes).

        Returns:
            This config, changed in place.

        Raises:
            ValueError: A certificate cannot be parsed.
            TypeError: ``cert`` is not bytes-like.
        """
        data = check_bytes_like("cert", cert).tobytes()
        for der in parse_certificates(data):
            if der not in self._root_certs:
                self._root_certs.append(der)
        return self

    def _to_config(self) -> dict[str, Any]:
        """The ``network`` object of the engine configuration (goeryx/config.go)."""
        config: dict[str, Any] = {
            "max_connections": self._max_connections,
            "connect_timeout_ms": self._connect_timeout_ms,
            "io_timeout_ms": self._io_timeout_ms,
            "allowed_hosts": list(self._allowed_hosts),
            "blocked_hosts": list(self._blocked_hosts),
        }
        if self._root_certs:
            # Go decodes a []byte from a base64 JSON string.
            config["root_certs_der"] = [
                base64.b64encode(c).decode("ascii") for c in self._root_certs
            ]
        return config

    def _state(self) -> dict[str, Any]:
        return {
            "max_connections": self._max_connections,
            "connect_timeout_ms": self._connect_timeout_ms,
            "io_timeout_ms": self._io_timeout_ms,
            "allowed_hosts": list(self._allowed_hosts),
            "blocked_hosts": list(self._blocked_hosts),
            "root_certs": list(self._root_certs),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetConfig):
            return NotImplemented
        return self._state() == other._state()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        text = (
            f"NetConfig(max_connections={self._max_connections}, "
            f"connect_timeout_ms={self._connect_timeout_ms}, "
            f"io_timeout_ms={self._io_timeout_ms}, "
            f"allowed_hosts={_list_repr(self._allowed_hosts)}, "
            f"blocked_hosts={_list_repr(self._blocked_hosts)}"
        )
        if self._root_certs:
            text += f", root_certs={len(self._root_certs)}"
        return text + ")"

    def __copy__(self) -> NetConfig:
        new = NetConfig.__new__(NetConfig)
        new.__setstate__(self._state())
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> NetConfig:
        return self.__copy__()

    def __reduce__(self) -> tuple[Any, ...]:
        return (NetConfig, (), self._state())

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_connections = state["max_connections"]
        self.connect_timeout_ms = state["connect_timeout_ms"]
        self.io_timeout_ms = state["io_timeout_ms"]
        self.allowed_hosts = state["allowed_hosts"]
        self.blocked_hosts = state["blocked_hosts"]
        certs = state.get("root_certs", [])
        if not isinstance(certs, list) or not all(isinstance(c, bytes) for c in certs):
            raise TypeError("invalid NetConfig state: root_certs must be a list of bytes")
        self._root_certs = list(certs)


NetConfig.__module__ = "eryx"
