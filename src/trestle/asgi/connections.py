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
import itertools
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trestle.asgi.limits import ConnectionLimits, connection_cap

_STATUS_TEXT = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


_LINGER_SECONDS = 2.0


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing a request that broke a limit."""


def guarded_protocol(limits: ConnectionLimits, fds_per_connection: int = 1) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits``."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"limits": limits, "cap": connection_cap(limits, fds_per_connection)},
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol with the limits above. Per request it overrides only ``data_received`` (state is
    read from uvicorn's own: the newest request's head is complete once ``self.cycle`` carries the scope
    that ``on_message_begin`` made) and ``on_headers_complete`` (the header count)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    cap: ClassVar[int] = 1 << 30
    _opened: ClassVar[itertools.count[int]] = itertools.count()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._order = next(self._opened)
        self._head_scope: object = None
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._reject: tuple[int, str] | None = None
        self._lingering = False

    # --- connection ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, self._head_expired)
        over = len(self.connections) - self.cap
        if over > 0 and not self._shed(over):
            self._error(503, "too many open connections; try again shortly")

    def _idle(self) -> bool:
        """No request in progress: none yet (perhaps half a head), or the last one answered."""
        return self.cycle is None or self.cycle.response_complete

    def _shed(self, count: int) -> bool:
        """Close the ``count`` oldest idle connections (rare: only above the cap, so a scan is fine);
        False when there are not that many."""
        idle = sorted(
            (c for c in self.connections if isinstance(c, GuardedHttpToolsProtocol) and c is not self and c._idle()),
            key=lambda c: c._order,
        )
        if len(idle) < count:
            return False
        for proto in idle[:count]:
            proto._cancel()
            proto.transport.close()
            self.connections.discard(proto)  # counted out now: its connection_lost comes later
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._cancel()
        super().handle_websocket_upgrade()

    # --- data ------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # answered and half-closed: what the client still sends is dropped unread
        super().data_received(data)
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # the newest request's head is complete
            if cycle.more_body:  # part of its body is still to come
                self._arm(self.limits.body_timeout, self._body_expired)
            elif self._deadline is not None:
                self._cancel()
            return
        # a head is incomplete after this read: bound its size and, from now, its time
        if self.scope is not self._head_scope:
            self._head_scope, self._head_bytes = self.scope, 0
        self._head_bytes += len(data)
        if self._head_bytes > self.limits.max_header_bytes:
            self._error(431, f"request head larger than {self.limits.max_header_bytes} bytes")
        elif self._deadline is None:
            self._arm(self.limits.header_timeout, self._head_expired)

    def on_headers_complete(self) -> None:
        self.check_head()
        super().on_headers_complete()

    def check_head(self) -> None:
        """Raise (the parser stops, and ``send_400_response`` answers 431) when the head broke a limit."""
        if len(self.headers) > self.limits.max_headers:
            self._reject = (431, f"more than {self.limits.max_headers} header fields")
            raise _Rejected
        if self._head_scope is self.scope:  # this head came in several reads: it may have crossed the limit
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.limits.max_header_bytes:
                self._reject = (431, f"request head larger than {self.limits.max_header_bytes} bytes")
                raise _Rejected

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
        cycle = self.cycle
        if self.transport.is_closing() or (cycle is not None and cycle.scope is self.scope):
            return  # closed, or the head is complete
        if not self._idle():
            self._arm(self.limits.header_timeout, self._head_expired)  # a request is running: not idle
        elif self._head_bytes and self._head_scope is self.scope:
            self._error(408, f"request head not received within {self.limits.header_timeout:g}s")
        else:
            self.transport.close()  # nothing sent at all: just close

    def _body_expired(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body:
            return
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            # the app has not taken what arrived (or not yet asked for the body): not the client's silence
            self._arm(self.limits.body_timeout, self._body_expired)
            return
        self._error(408, f"no request body received for {self.limits.body_timeout:g}s")

    def _error(self, status: int, message: str) -> None:
        """Answer ``status`` with Truss's error body and close (a started response is only cut)."""
        self._cancel()
        if self.cycle is None or not self.cycle.response_started:
            body = orjson.dumps({"error": message})
            head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
            extra = b"retry-after: 1\r\n" if status == 503 else b""
            self.transport.write(head % (status, _STATUS_TEXT[status], len(body)) + extra + b"\r\n" + body)
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app sees a disconnect and writes nothing more
            self.cycle.message_event.set()
        if self.transport.can_write_eof():
            # a lingering close: closing with the client's bytes unread would send a reset that can destroy
            # the answer before the client reads it; half-close, drop what still comes, close within 2 s
            self.transport.write_eof()
            self._lingering = True
            self._arm(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()
