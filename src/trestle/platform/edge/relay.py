"""A gateway request relayed on protocols alone: no ASGI cycle, no task, no message dicts.

The platform port's protocol (``front.py``) hands a request here as soon as its head is parsed, when it is
a plain call that can go out at once: a key allowed to call models, a gateway route to an ACTIVE
deployment with a ready replica, an idle keep-alive connection to that replica in the pool, and a body of
known size (``Content-Length`` up to ``MAX_RELAY_BODY``) or none. Everything else (websockets, chunked or
large bodies, a deployment to wake or wait for, every error, chains, async, the control API) takes the
ASGI path (``app.py``, ``gateway.py``), which answers it the same way, only with more work per request.

What it does is what the ASGI path does, with less in between: the request head goes to the replica in
one write (hop-by-hop headers, ``Host`` and ``Authorization`` dropped), each body part as it arrives; the
replica's answer goes back as the parser produces it, written once per read from the replica (a chunked
answer is re-chunked part by part, a sized one passed as is), with uvicorn's default headers. The
replica's silence is bounded (``upstream_timeout``: 504 before its head, a cut stream after); a slow
client pauses the replica's socket; a client that leaves closes the upstream connection, so the replica
cancels; the least-outstanding counts and the load meter are kept, and each answer is counted
(``Traffic``) like any other.
"""

from __future__ import annotations

import http
import time
from typing import TYPE_CHECKING

from trestle.platform.control.traffic import CLIENT_CLOSED
from trestle.platform.edge.gateway import RESPONSE_DROP, UPSTREAM_DROP, Gateway, GatewayError, error_body
from trestle.platform.edge.upstream import Connection, Silent, UpstreamError, request_head
from trestle.platform.edge.urls import WAKE
from trestle.platform.engines.base import Replica
from trestle.platform.store.states import DeploymentStatus

if TYPE_CHECKING:
    from trestle.platform.edge.front import GatewayFront

MAX_RELAY_BODY = 256 << 10
"""Larger request bodies take the ASGI path, which streams them with flow control both ways."""

_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("latin-1"))
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


def open_relay(
    gateway: Gateway,
    front: GatewayFront,
    model_ref: str,
    rest: str,
    method: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    length: int,
    keep_alive: bool,
) -> Relay | None:
    """Send the request to a replica now and return its relay, or None (nothing was sent) when anything
    about it needs the ASGI path: an unknown route, a deployment that is not ACTIVE, no ready replica, a
    replica at its REJECT_ON_FULL concurrency, no idle pooled connection to it."""
    try:
        target = gateway.resolve(model_ref, rest)
    except GatewayError:
        return None  # the ASGI path says what is wrong with it
    dep = target.deployment_id
    if target.path == WAKE or gateway.routes.status.get(dep) is not DeploymentStatus.ACTIVE:
        return None
    rset = gateway.engine.replica_set(dep)
    replica = rset.pick() if rset is not None else None
    if replica is None or rset is None:
        return None
    capacity = gateway.routes.reject_when_full.get(dep)
    if capacity is not None and replica.outstanding >= capacity:
        return None
    host, port, prefix = gateway.upstream.target(replica.url)
    conn = gateway.upstream.idle((host, port))
    if conn is None:
        return None
    path = prefix + rset.routes.translate(target.path)
    if query:
        path += "?" + query.decode("latin-1")
    head = request_head(method, host, port, path, [(k, v) for k, v in headers if k not in UPSTREAM_DROP])
    head += b"content-length: %d\r\n\r\n" % length
    relay = Relay(front, gateway, replica, conn, dep, keep_alive, length == 0)
    relay.upstream.append(bytes(head))  # written with the body's first part (``send``), one syscall
    return relay


class Relay:
    """One relayed request: the connection's current cycle for uvicorn's protocol (the attributes it
    reads: ``scope``, ``more_body``, ``response_started``, ``response_complete``, ``disconnected``,
    ``keep_alive``, ``waiting_for_100_continue``, ``message_event.set()``) and the upstream ``Sink``."""

    __slots__ = (
        "_chunked",
        "_done",
        "_out",
        "conn",
        "deployment_id",
        "disconnected",
        "first_byte",
        "front",
        "gateway",
        "keep_alive",
        "message_event",
        "more_body",
        "replica",
        "response_complete",
        "response_started",
        "scope",
        "started",
        "status",
        "upstream",
        "waiting_for_100_continue",
    )

    def __init__(
        self,
        front: GatewayFront,
        gateway: Gateway,
        replica: Replica,
        conn: Connection,
        deployment_id: str,
        keep_alive: bool,
        sent_all: bool,
    ) -> None:
        self.front = front
        self.gateway = gateway
        self.replica = replica
        self.conn = conn
        self.deployment_id = deployment_id
        self.scope = front.scope
        self.keep_alive = keep_alive
        self.more_body = not sent_all
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.waiting_for_100_continue = False
        self.message_event = self  # uvicorn calls ``cycle.message_event.set()`` when the client leaves
        self.started = time.perf_counter()
        self.first_byte: float | None = None
        self.status = 0
        self._chunked = False
        self._done = False
        self._out: list[bytes] = []
        self.upstream: list[bytes] = []
        """Request bytes not yet written to the replica."""
        gateway.upstream.attach(conn, self)
        replica.begin()

    # from the client (front.py) ------------------------------------------------------------------

    def request_body(self, data: bytes) -> None:
        self.upstream.append(data)

    def request_complete(self) -> None:
        self.more_body = False
        self.send()

    def send(self) -> None:
        """What came from the client so far goes to the replica in one write (after each read)."""
        up = self.upstream
        if up:
            if not self._done and not self.conn.lost:
                self.conn.write(up[0] if len(up) == 1 else b"".join(up))
            up.clear()

    def set(self) -> None:
        """uvicorn's ``message_event.set()``: the client left (or a limit cut it off)."""
        if self.disconnected and not self._done:
            self._finish(CLIENT_CLOSED, reuse=False)

    def pause(self) -> None:
        """The client's socket is full: stop reading the replica's."""
        self.conn.held = True
        transport = self.conn.transport
        if transport is not None and not self.conn.lost:
            transport.pause_reading()

    def resume(self) -> None:
        self.conn.held = False
        self.conn.heard = time.monotonic()
        transport = self.conn.transport
        if transport is not None and not self.conn.lost and not self._done:
            transport.resume_reading()

    # from the replica (upstream.Sink) ------------------------------------------------------------

    def _head_start(self, status: int) -> list[bytes]:
        """The status line and uvicorn's default headers (``Date``), as the ASGI path's answers have."""
        out = [_status_line(status)]
        for name, value in self.front.server_state.default_headers:
            out += (name, b": ", value, b"\r\n")
        return out

    def head(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        self.status = status
        out = self._head_start(status)
        chunked = not (status < 200 or status in (204, 304))
        for name, value in headers:
            if name in RESPONSE_DROP:
                continue
            if name == b"content-length":
                chunked = False
            out += (name, b": ", value, b"\r\n")
        if chunked:
            out.append(b"transfer-encoding: chunked\r\n")
        self._chunked = chunked
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        self._out.append(b"".join(out))
        self.response_started = True

    def body(self, data: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter() - self.started
        if self._chunked:
            self._out.append(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._out.append(data)

    def complete(self) -> None:
        if self._chunked:
            self._out.append(b"0\r\n\r\n")
        self.response_complete = True

    def flush(self) -> None:
        """After each read from the replica: what it produced goes to the client in one write."""
        if self._done:
            return
        out = self._out
        if out:
            transport = self.front.transport
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self.response_complete:
            if self.first_byte is None:
                self.first_byte = time.perf_counter() - self.started
            self._finish(self.status, reuse=True)
            self._answered()

    def failed(self, error: UpstreamError) -> None:
        if self._done:
            return
        if self.response_started:
            self._cut()
        elif isinstance(error, Silent):
            silent = self.gateway.silent_error(self.replica)
            self._refuse(silent.status, silent.message, silent.code)
        else:
            # it may have run the request: no retry; out of rotation until its supervisor sees it ready
            self.gateway.out_of_rotation(self.replica, self.deployment_id)
            self._refuse(502, f"replica {self.replica.id} failed before answering ({type(error).__name__})")

    # ends ----------------------------------------------------------------------------------------

    def _refuse(self, status: int, message: str, code: str | None = None) -> None:
        """A gateway-made answer instead of the replica's (nothing of its answer was sent)."""
        body = error_body(status, message, code)
        if self.more_body:
            self.keep_alive = False  # the rest of the request body is not wanted: close after the answer
        head = self._head_start(status)
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        head.append(b"x-trestle-error-source: gateway\r\n")
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        self._out.clear()
        self.front.transport.write(b"".join(head) + b"\r\n" + body)
        self.response_started = self.response_complete = True
        self._finish(status, reuse=False)
        self._answered()

    def _cut(self) -> None:
        """The replica went away mid-answer: cut the client's stream too."""
        if self._out:
            self.front.transport.write(b"".join(self._out))
            self._out.clear()
        self._finish(502, reuse=False)
        self.front.transport.close()

    def _finish(self, status: int, *, reuse: bool) -> None:
        self._done = True
        conn = self.conn
        if reuse and not self.more_body and conn.complete and conn.keep_alive and not conn.lost:
            self.gateway.upstream.put(conn)
        else:
            conn.sink = None
            conn.close()  # the replica sees the disconnect and cancels what it still runs
        self.replica.end()
        self.gateway.traffic.of(self.deployment_id).finish(status, time.perf_counter() - self.started, self.first_byte)

    def _answered(self) -> None:
        """The client has its whole answer: close, or let the connection take its next request."""
        front = self.front
        if not self.keep_alive:
            front.transport.close()
        front.on_response_complete()
