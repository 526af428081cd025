"""Raw-socket HTTP helpers for tests where the disconnect itself is the point."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path


def open_request(url: str, path: str, body: object, headers: dict[str, str] | None = None) -> socket.socket:
    """POST ``body`` to ``url`` + ``path`` on a raw socket (``url`` may carry a path prefix, as a
    replica behind Ray Serve's proxy does)."""
    address, _, prefix = url.removeprefix("http://").partition("/")
    host, port = address.split(":")
    path = ("/" + prefix if prefix else "") + path
    sock = socket.create_connection((host, int(port)), timeout=10)
    data = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}\r\n".encode()
        + data
    )
    return sock


def read_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    buf = b""
    while marker not in buf and len(buf) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def wait_for_file(path: Path, timeout: float = 5.0) -> float:
    """Wait until ``path`` exists; return the time it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if path.exists():
            return time.monotonic() - start
        time.sleep(0.005)
    raise TimeoutError(f"{path} did not appear within {timeout}s")
