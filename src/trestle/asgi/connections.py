"""Limits on what a connection may hold before the app sees a request: uvicorn's httptools protocol, guarded.

uvicorn bounds neither the request head nor the time it takes to arrive: a 16 MiB header or 100,000 headers
are parsed and answered, a client that sends half a head (or nothing at all) holds its socket forever, and
enough such sockets exhaust the process's file descriptors so that every new client fails. This protocol,
used by the model server and the platform port alike (before any auth check), adds:

- a head limit: more than ``max_header_bytes`` before the head is complete, or more than ``max_headers``
  header fields, gets ``431`` and the connection is closed;
- a head deadline: from accepting the connection (or from the first byte of a later request on a
  keep-alive connection) the head must be complete within ``header_timeout`` seconds, else ``408`` (or a
  silent close when nothing at all was sent); idle keep-alive connections are closed by uvicorn's
  ``timeout_keep_alive``;
- a body deadline: while a body is being received, ``body_timeout`` seconds without a byte gets ``408``
  (time spent with reading paused because the app is slow does not count);
- a connection cap: above ``max_connections`` open connections the oldest connections with no request in
  progress are closed to make room; only when none is idle is the new connection refused (``503``).

The cost on the hot path is a few attribute checks per request (no timer when a request's head and body
arrive in one read, the common case).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trestle.asgi.limits import ConnectionLimits, connection_cap

_STATUS_TEXT = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing a request that broke a limit."""


def guarded_protocol(limits: ConnectionLimits, fds_per_connection: int = 1) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits`` (one class per server: the
    idle-connection registry it keeps is shared by that server's connections)."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"limits": limits, "cap": connection_cap(limits, fds_per_connection), "idle": {}},
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    cap: ClassVar[int] = 1 << 30
    idle: ClassVar[dict[GuardedHttpToolsProtocol, None]] = {}
    """Connections with no request in progress, oldest first: the ones shed when the cap is reached."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._reject: tuple[int, str] | None = None

    # --- connection ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, self._head_expired)
        over = len(self.connections) - self.cap
        if over > 0 and not self._shed(over):
            self._error(503, "too many open connections; try again shortly")
            return
        self.idle[self] = None

    def _shed(self, count: int) -> bool:
        """Close the ``count`` oldest idle connections; False when there are not that many."""
        victims: list[GuardedHttpToolsProtocol] = []
        for proto in self.idle:
            if len(victims) == count:
                break
            victims.append(proto)
        if len(victims) < count:
            return False
        for proto in victims:
            self.idle.pop(proto, None)
            proto._cancel()
            proto.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.idle.pop(self, None)
        self._cancel()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self.idle.pop(self, None)
        self._cancel()
        super().handle_websocket_upgrade()

    # --- data ------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._deadline is None:
                self._arm(self.limits.header_timeout, self._head_expired)
        super().data_received(data)
        if self._in_head:
            if self._head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
                self._error(431, f"request head larger than {self.limits.max_header_bytes} bytes")
        elif not self.transport.is_closing():  # part of a body is still to come
            self._arm(self.limits.body_timeout, self._body_expired)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel()
        if len(self.headers) > self.limits.max_headers:
            self._reject = (431, f"more than {self.limits.max_headers} header fields")
            raise _Rejected
        self.idle.pop(self, None)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.idle[self] = None

    def send_400_response(self, msg: str) -> None:
        if self._reject is not None:  # a limit stopped the parser: say which
            self._error(*self._reject)
        else:
            super().send_400_response(msg)

    # --- deadlines -------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Any) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(delay, callback)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm(self.limits.header_timeout, self._head_expired)  # a request is running: not idle
        elif self._head_bytes:
            self._error(408, f"request head not received within {self.limits.header_timeout:g}s")
        else:
            self.idle.pop(self, None)
            self.transport.close()

    def _body_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._in_head:
            return
        if self.flow.read_paused or (self.cycle is not None and self.cycle.waiting_for_100_continue):
            # the app has not taken what arrived (or not yet asked for the body): not the client's silence
            self._arm(self.limits.body_timeout, self._body_expired)
            return
        self._error(408, f"no request body received for {self.limits.body_timeout:g}s")

    def _error(self, status: int, message: str) -> None:
        """Answer ``status`` with Truss's error body and close (a started response is only cut)."""
        self.idle.pop(self, None)
        self._cancel()
        if self.cycle is None or not self.cycle.response_started:
            body = orjson.dumps({"error": message})
            head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
            extra = b"retry-after: 1\r\n" if status == 503 else b""
            self.transport.write(head % (status, _STATUS_TEXT[status], len(body)) + extra + b"\r\n" + body)
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()
