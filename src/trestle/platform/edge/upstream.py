"""The gateway's HTTP/1.1 client to the replicas: keep-alive connections on asyncio protocols, the
request written in one ``write`` (head and body together), the response head parsed by httptools and
its body handed on as it arrives, without a request object, header multidict or payload registry.

Measured on this box (``docs/07-platform.md``): aiohttp's client cost ~170 us of CPU per proxied
request, this one ~50 us, for the same keep-alive request and answer.

What it keeps of what the gateway needs: a pool of idle connections per replica (LIFO, dropped after
``KEEPALIVE_SECONDS`` idle, before uvicorn closes them at 5 s), a connect time-out, a read time-out for
the silence before the head and between two chunks, flow control both ways (a slow client pauses the
replica's socket; a full socket buffer pauses the request body), and errors that say whether the request
could have run: ``Refused`` (never sent: it may go to another replica), ``Silent`` and ``Broken``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol
from urllib.parse import urlsplit

import httptools

KEEPALIVE_SECONDS = 4.0
CONNECT_SECONDS = 5.0
_HIGH_WATER = 1 << 20
"""Body bytes buffered from a replica before its socket is paused (the client is slower than it)."""
_LOW_WATER = 256 << 10


class UpstreamError(Exception):
    pass


class Refused(UpstreamError):
    """No connection could be made: the request was not sent."""


class Silent(UpstreamError):
    """The replica sent nothing for the read time-out (before its answer or between two chunks)."""


class Broken(UpstreamError):
    """The connection failed after the request was (or was being) sent: it may have run."""


class Sink(Protocol):
    """Who takes a replica's answer as it is parsed, instead of a waiting coroutine (``edge/relay.py``)."""

    def head(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None: ...

    def body(self, data: bytes) -> None: ...

    def complete(self) -> None: ...

    def failed(self, error: UpstreamError) -> None:
        """The connection failed, or (``Silent``) the replica sent nothing for the read time-out."""

    def flush(self) -> None:
        """After each read: what the parser produced in it may go out now."""


class Connection(asyncio.Protocol):
    """One keep-alive connection to a replica, one request at a time."""

    def __init__(self, key: tuple[str, int]) -> None:
        self.key = key
        self.sink: Sink | None = None
        """Set for a relayed request (``Upstream.attach``): the parser's events go to it, nothing is queued."""
        self.heard = 0.0
        """When the replica last sent something (``time.monotonic``), for a sink's read time-out."""
        self.held = False
        """A sink paused reading (its client is slow): the replica's silence is not counted."""
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        self._reset()
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.head_done = False
        self.complete = False
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.keep_alive = False
        self.no_body = False
        """A HEAD request: the answer ends with its head (the parser cannot know; not reused after)."""

    # asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        sink = self.sink  # read first: a relay that completes in this read gives the connection back
        if sink is not None:
            self.heard = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Broken(f"invalid response from the replica: {exc}"))
            if self.transport is not None:
                self.transport.close()
        if sink is not None:
            sink.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.complete:
            self._fail(Broken("the replica closed the connection"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(Broken("the replica closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # httptools callbacks -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # an interim answer (100 Continue): the real one follows
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()  # read here: the parser forgets it once complete
        self.head_done = True
        if self.sink is not None:
            self.sink.head(status, self.headers, self.keep_alive)
            return
        if self.no_body:
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.body(body)
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            if self.sink is not None:
                self.sink.complete()
                return
            self._wake()

    # the request ---------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        if self.sink is not None:
            self.sink.failed(error)
            return
        self._wake()

    async def wait(self, timeout: float) -> None:
        """Until the parser has more for the reader (or the connection failed); ``Silent`` after ``timeout``."""
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, self._silence, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _silence(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(Silent("the replica sent nothing in time"))

    async def drain(self) -> None:
        if self._write_paused and not self.lost:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def write(self, data: bytes) -> None:
        if self.lost or self.transport is None:
            raise Broken("the replica closed the connection")
        self.transport.write(data)

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """A replica's answer: status and headers now, the body as it arrives (``chunks``)."""

    __slots__ = ("_conn", "_pool", "_timeout", "headers", "status")

    def __init__(self, conn: Connection, pool: Upstream, timeout: float) -> None:
        self._conn = conn
        self._pool = pool
        self._timeout = timeout
        self.status = conn.status
        self.headers = conn.headers

    @property
    def complete(self) -> bool:
        return self._conn.complete

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            while conn.chunks:
                chunk = conn.chunks.popleft()
                conn.buffered -= len(chunk)
                if conn.reading_paused and conn.buffered < _LOW_WATER and conn.transport is not None:
                    conn.reading_paused = False
                    conn.transport.resume_reading()
                yield chunk
            if conn.complete:
                return
            if conn.error is not None:
                raise conn.error
            await conn.wait(self._timeout)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def release(self) -> None:
        """Back to the pool when the answer was read whole and the connection may be kept; else closed."""
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.lost and not conn.no_body:
            self._pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection (a client that left: the replica sees the disconnect and cancels)."""
        self._conn.close()


def request_head(method: str, host: str, port: int, target: str, headers: list[tuple[bytes, bytes]]) -> bytearray:
    """A request's head up to its framing header (which the caller adds, with the blank line)."""
    head = bytearray(f"{method} {target} HTTP/1.1\r\nhost: {host}:{port}\r\n".encode("latin-1"))
    for name, value in headers:
        head += name + b": " + value + b"\r\n"
    return head


class Upstream:
    """Connections to the replicas, pooled per host and port."""

    def __init__(self, read_timeout: float) -> None:
        self.read_timeout = read_timeout
        self._period = min(1.0, read_timeout / 4)
        self._attached: set[Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._targets: dict[str, tuple[str, int, str]] = {}

    def target(self, base_url: str) -> tuple[str, int, str]:
        """(host, port, path prefix) of a replica's ``http://host:port[/prefix]`` (cached)."""
        found = self._targets.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"the gateway talks plain http to replicas, not {base_url!r}")
            found = (parts.hostname, parts.port or 80, parts.path.rstrip("/"))
            if len(self._targets) < 10_000:
                self._targets[base_url] = found
        return found

    def attach(self, conn: Connection, sink: Sink) -> None:
        """Hand ``conn``'s answer to ``sink``; its read time-out is kept by one sweep for all of them
        (``read_timeout / 4`` apart, at most a second), not a timer per request."""
        conn.sink = sink
        conn.heard = time.monotonic()
        conn.held = False
        self._attached.add(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._period, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self._attached):
            if conn.sink is None or conn.lost:
                self._attached.discard(conn)
            elif not conn.held and now - conn.heard >= self.read_timeout:
                self._attached.discard(conn)
                conn._fail(Silent(f"the replica sent nothing for {self.read_timeout:g}s"))
        self._sweeper = asyncio.get_running_loop().call_later(self._period, self._sweep) if self._attached else None

    def put(self, conn: Connection) -> None:
        conn.idle_since = time.monotonic()
        if conn.sink is not None:
            conn.sink = None
            self._attached.discard(conn)
        conn._reset()
        self._idle.setdefault(conn.key, []).append(conn)

    def idle(self, key: tuple[str, int]) -> Connection | None:
        """A pooled connection still fresh enough to use (the newest), or None."""
        idle = self._idle.get(key)
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if not conn.lost and now - conn.idle_since < KEEPALIVE_SECONDS:
                    return conn
                conn.close()
        return None

    async def _connection(self, key: tuple[str, int]) -> Connection:
        pooled = self.idle(key)
        if pooled is not None:
            return pooled
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: Connection(key), key[0], key[1]), CONNECT_SECONDS
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise Refused(f"cannot connect to {key[0]}:{key[1]}: {exc!r}") from None
        return conn

    async def request(
        self,
        method: str,
        base_url: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
        *,
        streamed_length: int | None = None,
    ) -> Response:
        """Send one request; returns once the answer's head is in. ``headers`` hold no framing headers
        (``Content-Length``, ``Transfer-Encoding``): they are written here. A streamed ``body`` goes with
        ``streamed_length`` as its ``Content-Length`` when the client gave one, else chunked."""
        host, port, prefix = self.target(base_url)
        conn = await self._connection((host, port))
        try:
            head = request_head(method, host, port, prefix + path, headers)
            if method == "HEAD":
                conn.no_body = True
            if isinstance(body, (bytes, bytearray)):
                head += b"content-length: %d\r\n\r\n" % len(body)
                if len(body) < 65536:
                    conn.write(bytes(head) + body)  # one write, one syscall
                else:
                    conn.write(bytes(head))
                    conn.write(body)
            else:
                chunked = streamed_length is None
                head += (
                    b"transfer-encoding: chunked\r\n\r\n"
                    if chunked
                    else b"content-length: %d\r\n\r\n" % (streamed_length or 0)
                )
                conn.write(bytes(head))
                async for chunk in body:
                    if chunked:
                        conn.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    else:
                        conn.write(chunk)
                    await conn.drain()
                if chunked:
                    conn.write(b"0\r\n\r\n")
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(self.read_timeout)
        except BaseException:
            conn.close()
            raise
        return Response(conn, self, self.read_timeout)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
