"""The limits on a connection (``asgi/connections.py`` enforces them), as settings: no uvicorn here, so the
settings modules that name them do not load the HTTP stack."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int | None = None
    """None: what the file-descriptor limit allows (see ``connection_cap``)."""

    @classmethod
    def from_env(cls, **defaults: Any) -> ConnectionLimits:
        """``defaults`` overridden by ``TRESTLE_MAX_HEADER_BYTES``, ``TRESTLE_MAX_HEADERS``,
        ``TRESTLE_HEADER_TIMEOUT``, ``TRESTLE_BODY_TIMEOUT`` and ``TRESTLE_MAX_CONNECTIONS``."""
        limits = cls(**defaults)
        names = {
            "max_header_bytes": int,
            "max_headers": int,
            "header_timeout": float,
            "body_timeout": float,
            "max_connections": int,
        }
        found: dict[str, Any] = {}
        for name, kind in names.items():
            raw = os.environ.get(f"TRESTLE_{name.upper()}")
            if raw:
                found[name] = kind(raw)
        return replace(limits, **found)


def connection_cap(limits: ConnectionLimits, fds_per_connection: int = 1) -> int:
    """How many connections to hold at most: the configured cap, else what the (raised) soft limit on
    file descriptors leaves after a reserve for files, logs and upstream sockets."""
    if limits.max_connections is not None:
        return limits.max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, (soft - 128) // fds_per_connection)
