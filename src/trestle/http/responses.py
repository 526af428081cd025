"""Writing responses: a value in one start and one body message, a stream chunk by chunk, a
returned starlette ``Response`` as it is.

Unary bodies are one ``http.response.start`` plus one ``http.response.body``. A stream's first
chunk is fetched before the response starts, so an error (or the read time-out) before it is an
ordinary error response; after it, an error can only cut the connection (``StreamAborted``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.responses import StreamingResponse

from trestle._types import Message, Send
from trestle.errors import UserCodeError
from trestle.http import errors
from trestle.http.exchange import JSON, OCTET, Exchange, receive_after_body
from trestle.http.serialization import dumps_json, dumps_msgpack
from trestle.metrics import ServerMetrics
from trestle.runtime import FATAL, Cancellation, CancelReason, Passthrough, Stream, log_user_error

_STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


async def send_body(send: Send, status: int, body: bytes, content_type: bytes, rid: bytes) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-baseten-request-id", rid),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_value(ex: Exchange, value: Any) -> None:
    """A plain result: msgpack for a binary request (bytes as they are), else JSON."""
    if ex.binary:
        body, ctype = (value if isinstance(value, bytes) else dumps_msgpack(value)), OCTET
    else:
        body, ctype = dumps_json(value), JSON
    ex.status = 200
    await send_body(ex.send, 200, body, ctype, ex.rid)


def as_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"A stream may only yield str or bytes, got {type(chunk).__name__}")


class ReadWatchdog:
    """Fires the cancellation when the model takes longer than the read time-out for a chunk,
    the first one included.

    One timer per stream, re-armed only when it fires; each chunk costs two assignments.
    """

    __slots__ = ("loop", "timeout", "cancellation", "waiting_since", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, cancellation: Cancellation) -> None:
        self.loop = loop
        self.timeout = timeout
        self.cancellation = cancellation
        self.waiting_since: float | None = loop.time()
        self.handle: asyncio.TimerHandle | None = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        since = self.waiting_since
        now = self.loop.time()
        if since is not None and now - since >= self.timeout:
            self.handle = None
            self.cancellation.cancel(CancelReason.READ_TIMEOUT)
            return
        next_at = (since if since is not None else now) + self.timeout
        self.handle = self.loop.call_at(next_at, self._check)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


async def send_stream(ex: Exchange, stream: Stream, gather: bool, read_timeout: float, metrics: ServerMetrics) -> None:
    """A generator result: chunked octet-stream, or (``gather``) one JSON/msgpack string."""
    assert ex.cancellation is not None
    loop = asyncio.get_running_loop()
    watchdog = ReadWatchdog(loop, read_timeout, ex.cancellation)
    iterator = stream.iterator
    send = ex.send
    try:
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            first = None
        except FATAL:
            raise
        except BaseException as exc:
            log_user_error(exc, "Exception while generating streamed response")
            raise UserCodeError() from exc
        if gather:
            parts = [] if first is None else [as_bytes(first)]
            if first is not None:
                while True:
                    watchdog.waiting_since = loop.time()
                    try:
                        parts.append(as_bytes(await iterator.__anext__()))
                    except StopAsyncIteration:
                        break
            text = b"".join(parts).decode("utf-8")
            await send_value(ex, text)
            return
        watchdog.waiting_since = None
        ex.started = True
        ex.status = 200
        headers = [(b"content-type", OCTET), (b"x-baseten-request-id", ex.rid), *_STREAM_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if first is None:
            await send({"type": "http.response.body", "body": b""})
            return
        metrics.ttfc.observe(time.perf_counter() - ex.t0)
        await send({"type": "http.response.body", "body": as_bytes(first), "more_body": True})
        chunks = 1
        try:
            while True:
                watchdog.waiting_since = loop.time()
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                watchdog.waiting_since = None
                await send({"type": "http.response.body", "body": as_bytes(chunk), "more_body": True})
                chunks += 1
        finally:
            metrics.stream_chunks += chunks
        await send({"type": "http.response.body", "body": b""})
    finally:
        watchdog.stop()
        await stream.close()


async def send_passthrough(ex: Exchange, result: Passthrough) -> None:
    """A starlette ``Response`` from the model, with the request id (and Truss's error headers
    when its status is >= 300)."""
    cancellation = ex.cancellation
    assert cancellation is not None
    response = result.response
    response.headers["x-baseten-request-id"] = ex.request_id
    if response.status_code >= 300:
        for name, value in errors.error_headers(errors.CODE_CLIENT):
            response.headers[name.decode()] = value.decode()
    if isinstance(response, StreamingResponse):
        response.headers.setdefault("cache-control", "no-cache")
        response.headers.setdefault("x-accel-buffering", "no")
    ex.status = response.status_code
    # Spec 2.4: starlette then streams without its own disconnect listener; ours cancels.
    inner_scope = {**ex.scope, "asgi": {"version": "3.0", "spec_version": "2.4"}}
    send = ex.send

    async def tracking_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            ex.started = True
        await send(message)

    try:
        await response(inner_scope, receive_after_body(cancellation), tracking_send)
    finally:
        iterator = getattr(response, "body_iterator", None)
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None and cancellation.cancelled:
            try:
                await aclose()
            except Exception:
                pass
        result.done()
