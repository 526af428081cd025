"""Turn any generator the model returns into one async iterator with back-pressure.

* An async generator is iterated directly on the event loop; closing the stream calls
  ``aclose()``, so the model's ``finally`` runs.
* A sync generator is driven by ONE worker thread for the whole stream (not one thread hop per
  chunk). The thread hands items over through a small bounded buffer: when the client reads
  slowly the buffer fills and the model's thread blocks, so memory stays flat. Closing the
  stream stops the thread at the next item boundary and closes the generator *in that thread*.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from trestle.runtime.cancel import Cancellation, bind_thread

BUFFER_ITEMS = 8


class Submitter(Protocol):
    """Anything that runs ``fn()`` in another thread (``WorkerPool``, ``ThreadPoolExecutor``)."""

    def submit(self, fn: Callable[[], Any], /) -> Any: ...


class SyncPump:
    """Drives a sync iterator in a worker thread; iterate it with ``async for``."""

    def __init__(
        self,
        iterator: Iterator[Any],
        executor: Submitter,
        cancellation: Cancellation | None,
        on_thread: Callable[[], None] | None = None,
        buffer: int = BUFFER_ITEMS,
    ) -> None:
        self._iterator = iterator
        self._loop = asyncio.get_running_loop()
        self._cancellation = cancellation
        self._on_thread = on_thread
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._space = threading.Semaphore(buffer)
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._error: BaseException | None = None
        self._stop = False
        self.finished = threading.Event()  # set once the thread has closed the generator
        executor.submit(self._run)

    # --- worker thread -------------------------------------------------------------------
    def _run(self) -> None:
        bind_thread(self._cancellation)
        if self._on_thread is not None:
            self._on_thread()
        iterator = self._iterator
        try:
            while not self._stop:
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                self._space.acquire()
                if self._stop:
                    break
                with self._lock:
                    self._items.append(item)
                    waiter, self._waiter = self._waiter, None
                if waiter is not None:
                    self._loop.call_soon_threadsafe(_wake, waiter)
        except BaseException as exc:
            self._error = exc
        finally:
            if self._stop:
                close = getattr(iterator, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:  # a generator whose finally raises; nothing to report to
                        pass
            with self._lock:
                self._done = True
                waiter, self._waiter = self._waiter, None
            bind_thread(None)
            self.finished.set()
            if waiter is not None:
                try:
                    self._loop.call_soon_threadsafe(_wake, waiter)
                except RuntimeError:  # loop already closed at shutdown
                    pass

    # --- event loop ----------------------------------------------------------------------
    def __aiter__(self) -> SyncPump:
        return self

    async def __anext__(self) -> Any:
        while True:
            with self._lock:
                if self._items:
                    item = self._items.popleft()
                    self._space.release()
                    return item
                if self._done:
                    if self._error is not None:
                        error, self._error = self._error, None
                        raise error
                    raise StopAsyncIteration
                waiter = self._waiter = self._loop.create_future()
            await waiter

    async def aclose(self) -> None:
        """Stop the producer thread; it closes the generator at its next item boundary."""
        self._stop = True
        self._space.release()  # unblock a producer waiting for buffer space


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
