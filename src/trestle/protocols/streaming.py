"""Running encoders over a model's deltas: sync or async, with cancellation and error frames.

``DeltaSource`` pulls deltas from a sync iterator (one ``next()`` per worker-thread hop, so the
event loop never blocks) or an async iterator, and closes it exactly once: ``close()`` for a sync
generator (in a thread, after any in-flight ``next()`` has returned, since a running generator
cannot be closed), ``aclose()`` for an async one, so the model's ``finally`` runs. Cancelling
the task that waits on a ``next()`` does not stop the worker thread; closing waits for it.

``encode_stream`` turns deltas into frames and ends a stream that fails part-way with the
protocol's error frame; the failure is logged on ``trestle.protocols`` and counted in
``trestle_protocol_stream_errors_total{protocol=...}``. ``EventStreamResponse`` is a
``StreamingResponse`` that closes its frame generator however the response ends, including a
client that disconnects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, cast

import anyio
import anyio.to_thread
from prometheus_client import REGISTRY, Counter
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from trestle.protocols import sse
from trestle.protocols.deltas import DeltaLike, Usage
from trestle.protocols.encoders import StreamEncoder

__all__ = [
    "END",
    "STREAM_ERRORS",
    "DeltaSource",
    "EventStreamResponse",
    "client_error",
    "encode_stream",
    "encode_stream_sync",
    "report_stream_error",
]

logger = logging.getLogger("trestle.protocols")

# How long closing an async generator may take before its ``finally`` is cancelled.
CLOSE_TIMEOUT_S = 30.0
GENERIC_ERROR = "Internal Server Error (in model/chainlet)."


def _stream_errors_counter() -> Counter:
    name = "trestle_protocol_stream_errors"
    try:
        return Counter(name, "Protocol streams that failed after they started, by protocol.", ["protocol"])
    except ValueError:  # already registered: this module was imported again (e.g. after a reload)
        return cast(Counter, REGISTRY._names_to_collectors[name + "_total"])


STREAM_ERRORS = _stream_errors_counter()


def client_error(exc: BaseException) -> tuple[str, int]:
    """The message and status a client may see: an ``HTTPException``'s own, else a generic 500."""
    if isinstance(exc, HTTPException):
        return str(exc.detail), exc.status_code
    return GENERIC_ERROR, 500


def report_stream_error(protocol: str, exc: BaseException) -> tuple[str, int]:
    """Log and count a stream that failed after it started; returns ``client_error(exc)``."""
    STREAM_ERRORS.labels(protocol=protocol).inc()
    logger.error("%s stream failed after it started: %r", protocol, exc, exc_info=exc)
    return client_error(exc)


class _End:
    def __repr__(self) -> str:
        return "END"


END: Any = _End()
"""Returned by ``DeltaSource.next()`` once the source is exhausted."""


class DeltaSource:
    """A sync or async iterable of deltas, pulled without blocking the loop and closed once."""

    def __init__(self, deltas: Iterable[DeltaLike] | AsyncIterable[DeltaLike]) -> None:
        self._sync: Iterator[DeltaLike] | None = None
        self._async: AsyncIterator[DeltaLike] | None = None
        self._inline = isinstance(deltas, list | tuple)  # never blocks: no thread hop needed
        if isinstance(deltas, AsyncIterable):
            self._async = deltas.__aiter__()
        else:
            self._sync = iter(deltas)
        # Held while next() runs; close() takes it too, since a running generator cannot be closed.
        self._running = threading.Lock()
        self._finished = False  # exhausted or raised: nothing left to close
        self._closed = False

    def _step(self) -> Any:
        assert self._sync is not None
        with self._running:
            try:
                return next(self._sync)
            except StopIteration:
                self._finished = True
                return END
            except BaseException:
                self._finished = True
                raise

    async def next(self) -> Any:
        """The next delta, or ``END``."""
        if self._closed:
            return END
        if self._async is not None:
            try:
                return await self._async.__anext__()
            except StopAsyncIteration:
                return END
        if self._inline:
            return self._step()
        # A cancelled wait leaves next() running (or never started) in the worker; close() waits for it.
        return await anyio.to_thread.run_sync(self._step)

    def __aiter__(self) -> AsyncIterator[DeltaLike]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[DeltaLike]:
        while (item := await self.next()) is not END:
            yield item

    async def aclose(self) -> None:
        """Close the underlying generator (runs its ``finally``); shielded from cancellation."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._sync is not None and not self._finished:
                close = getattr(self._sync, "close", None)
                if close is not None:

                    def wait_and_close() -> None:
                        with self._running:
                            close()

                    # Its own thread, so the close happens even if this wait is cancelled again.
                    closer = threading.Thread(target=wait_and_close, name="trestle-close-generator", daemon=True)
                    closer.start()
                    await anyio.to_thread.run_sync(closer.join)
            elif self._async is not None:
                aclose = getattr(self._async, "aclose", None)
                if aclose is not None:
                    with anyio.move_on_after(CLOSE_TIMEOUT_S) as scope:
                        await aclose()
                    if scope.cancelled_caught:
                        logger.warning("Closing a stream's generator took over %ss; abandoned", CLOSE_TIMEOUT_S)


async def encode_stream(
    encoder: StreamEncoder,
    deltas: DeltaSource | Iterable[DeltaLike] | AsyncIterable[DeltaLike],
    *,
    first: Any = END,
) -> AsyncIterator[bytes]:
    """Frames for ``deltas``; ``first`` is a delta already pulled from the source (peeked).

    A failure after the stream started ends it with the encoder's error frame. The source is
    closed when this generator finishes, fails or is closed (e.g. on client disconnect).
    """
    source = deltas if isinstance(deltas, DeltaSource) else DeltaSource(deltas)
    try:
        try:
            if isinstance(first, Usage):  # prompt tokens known up front: reported in the preamble
                encoder.feed(first)
                first = END
            head = encoder.start()
            if head:
                yield head
            if first is not END:
                chunk = encoder.feed(first)
                if chunk:
                    yield chunk
            while (delta := await source.next()) is not END:
                chunk = encoder.feed(delta)
                if chunk:
                    yield chunk
            tail = encoder.close()
        except Exception as exc:
            message, status = report_stream_error(encoder.protocol, exc)
            yield encoder.fail(message, status)
            return
        yield tail
    finally:
        await source.aclose()


def encode_stream_sync(encoder: StreamEncoder, deltas: Iterable[DeltaLike]) -> Iterator[bytes]:
    """``encode_stream`` for synchronous code (e.g. a generator ``predict``); closes ``deltas``."""
    iterator = iter(deltas)
    try:
        try:
            head = encoder.start()
            if head:
                yield head
            for delta in iterator:
                chunk = encoder.feed(delta)
                if chunk:
                    yield chunk
            tail = encoder.close()
        except Exception as exc:
            message, status = report_stream_error(encoder.protocol, exc)
            yield encoder.fail(message, status)
            return
        yield tail
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` response that always closes its frame generator when it ends."""

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            frames,
            status_code=status_code,
            headers={**sse.STREAM_HEADERS, **(headers or {})},
            media_type=sse.MEDIA_TYPE,
        )
        self._frames = frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self._frames, "aclose", None)
            if aclose is not None and not getattr(self._frames, "ag_running", False):
                with anyio.CancelScope(shield=True):
                    await aclose()
