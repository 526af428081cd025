"""One cancellation signal for every kind of model code.

A :class:`Cancellation` belongs to one request. The HTTP layer fires it when the client
disconnects, a time-out elapses or the server shuts down. Firing it

* sets a ``threading.Event`` that sync code (in worker threads) can poll or wait on,
* cancels the asyncio task that runs the request, so async model code gets ``CancelledError``
  at its next ``await`` and async generators are closed,
* and is what sync-generator pumps check between items.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import threading
from collections.abc import Iterator
from typing import Any


class CancelReason(enum.Enum):
    DISCONNECT = "client disconnected"
    READ_TIMEOUT = "streaming read time-out"
    DEADLINE = "request time-out"
    SHUTDOWN = "server shutting down"


_event_lock = threading.Lock()


class Cancellation:
    __slots__ = ("reason", "task", "finished", "_event", "_waiters")

    def __init__(self, task: asyncio.Task[Any] | None = None) -> None:
        self.reason: CancelReason | None = None
        self.task = task
        self.finished = False
        self._event: threading.Event | None = None  # built on first use: most requests never need it
        self._waiters: list[asyncio.Future[None]] | None = None

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    @property
    def event(self) -> threading.Event:
        """A thread-safe event, set when this cancellation fires."""
        event = self._event
        if event is None:
            with _event_lock:
                event = self._event
                if event is None:
                    event = threading.Event()
                    if self.reason is not None:
                        event.set()
                    self._event = event
        return event

    def cancel(self, reason: CancelReason) -> None:
        """Fire once; later calls are ignored. Must run on the event loop thread."""
        if self.reason is not None or self.finished:
            return
        with _event_lock:
            self.reason = reason
            event = self._event
        if event is not None:
            event.set()
        if self._waiters:
            for fut in self._waiters:
                if not fut.done():
                    fut.set_result(None)
        if self.task is not None:
            self.task.cancel()

    async def wait(self) -> CancelReason:
        """Wait (on the event loop) until this cancellation fires."""
        if self.reason is None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(fut)
            try:
                await fut
            finally:
                self._waiters.remove(fut)
        assert self.reason is not None
        return self.reason

    @contextlib.contextmanager
    def watch(self) -> Iterator[threading.Event]:
        """Truss's ``request.state.watch_disconnect()``: yields an event set on disconnect."""
        yield self.event


_local = threading.local()  # worker threads: set around each call into model code
_context: contextvars.ContextVar[Cancellation | None] = contextvars.ContextVar("trestle_cancellation", default=None)


def current() -> Cancellation | None:
    """The cancellation of the request that the calling code is working for, if any."""
    c: Cancellation | None = getattr(_local, "cancellation", None)
    return c if c is not None else _context.get()


def bind_thread(cancellation: Cancellation | None) -> None:
    _local.cancellation = cancellation


def bind_task(cancellation: Cancellation | None) -> None:
    _context.set(cancellation)


def disconnect_event() -> threading.Event:
    """For model code: the current request's cancellation event (set on disconnect or time-out).

    Works in sync methods (they run in worker threads) and in async methods. Outside a
    request it returns an event that is never set.
    """
    c = current()
    return c.event if c is not None else threading.Event()
