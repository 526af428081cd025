"""Raw-socket HTTP helpers for tests where the disconnect itself is the point, and websocket bombs."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
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


def websocket_bombs(url: str, pid: int, headers: dict[str, str] | None = None) -> tuple[list[int | None], int]:
    """One websocket, then 3 rounds of 4 at once, each sending one compressed message that inflates to
    64 MiB (64 KiB on the wire): the close codes they got and how many MiB the process at ``pid`` grew
    from after the first one (whose memory may stay with the allocator) to 2 s after the last round."""
    import psutil
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    process = psutil.Process(pid)
    codes: list[int | None] = []

    def bomb() -> None:
        extra = {"additional_headers": headers} if headers else {}
        with connect(url, compression="deflate", max_size=None, open_timeout=30, **extra) as ws:
            ws.send("a" * (64 << 20))
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                ws.recv(timeout=30)
            codes.append(ws.close_code)

    bomb()
    time.sleep(2)
    start = process.memory_info().rss
    for _ in range(3):
        threads = [threading.Thread(target=bomb) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        time.sleep(2)  # the collection runs a second after the close
    return codes, (process.memory_info().rss - start) >> 20
