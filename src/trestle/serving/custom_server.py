"""A ``docker_server`` truss on a cluster replica: the truss's own server, started from its
``start_command`` beside the replica, and an ASGI app that relays every request to it.

The local engine runs the start command as the replica process itself; a Ray Serve replica is an actor,
so it starts the command as a child process (its own session, so a stop reaches everything it forked)
in the truss's directory and waits until the readiness path answers 200. The gateway has already
translated Truss's paths to the server's (``predict_endpoint``, ``readiness_endpoint``), so the relay
forwards each path as it comes, bodies streamed both ways; a client that leaves closes the upstream
request. The process exiting makes the replica unhealthy (Serve replaces it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger("trestle")

_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer", b"host"})
_READY_POLL_SECONDS = 0.2


class CustomServer:
    """The truss's own server process and the relay to it."""

    def __init__(self, start_command: str, port: int, readiness: str, cwd: Path) -> None:
        self.start_command = start_command
        self.port = port
        self.readiness = readiness
        self.cwd = cwd
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        logger.info("Starting the truss's server: %s (port %d)", self.start_command, self.port)
        self.proc = subprocess.Popen(["/bin/sh", "-c", self.start_command], cwd=self.cwd, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_ready(self, timeout: float) -> None:
        """Until the readiness path answers 200; raises if the process exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as probe:
            while True:
                if not self.alive:
                    code = self.proc.returncode if self.proc is not None else None
                    raise RuntimeError(f"the truss's server ({self.start_command!r}) exited with code {code}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await probe.get(self.base + self.readiness)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the truss's server did not answer {self.readiness} within {timeout:g}s")
                await asyncio.sleep(_READY_POLL_SECONDS)

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # made on first use, inside the replica's running loop
            self._client = httpx.AsyncClient(base_url=self.base, timeout=httpx.Timeout(None, connect=5.0))
        return self._client

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The relay (HTTP only; a ``docker_server`` websocket is not relayed)."""
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1011})
            return
        path = scope.get("path", "/")
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
        content = _body(receive) if has_body else None  # no chunked empty body on a GET
        if any(k == b"transfer-encoding" for k, _ in scope["headers"]):
            headers.append((b"transfer-encoding", b"chunked"))
        request = self.client.build_request(scope["method"], path, headers=headers, content=content)
        try:
            response = await self.client.send(request, stream=True)
        except _ClientLeft:
            return
        except httpx.HTTPError as exc:
            body = f"the truss's server did not answer: {type(exc).__name__}".encode()
            length = str(len(body)).encode()
            await send({"type": "http.response.start", "status": 502, "headers": [(b"content-length", length)]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            out = [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()  # a client that left (a cancelled call) closes the upstream request


class _ClientLeft(Exception):
    """The client went away while its body was being relayed."""


async def _body(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientLeft
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body", False):
            return
