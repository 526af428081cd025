"""Worker threads for sync model code, with the cheapest hand-off asyncio allows.

``loop.run_in_executor`` wraps every call in a ``concurrent.futures.Future``, chains it to an
asyncio future and takes the executor's locks; for a model call that takes microseconds that is
most of the cost of the request. Here a call is one ``SimpleQueue.put`` and one
``call_soon_threadsafe`` back. Threads start on demand up to ``max_workers`` and stay.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():  # the caller was cancelled meanwhile
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class WorkerPool:
    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers = max_workers
        self.name = name
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # that idle worker will take the job
                return
            if len(self._threads) >= self.max_workers or self._closed:
                return  # the job waits for a busy worker
            thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        queue = self._queue
        while True:
            job = queue.get()
            if job is _STOP:
                return
            loop, fut, fn, args = job
            try:
                value = fn(*args)
            except BaseException as exc:
                ok, value = False, exc
            else:
                ok = True
            if fut is not None:
                try:
                    loop.call_soon_threadsafe(_resolve, fut, ok, value)
                except RuntimeError:  # the loop is closed (shutdown)
                    pass
            del job, fut, value, args
            with self._lock:
                self._idle += 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread; cancelling the await does not stop the thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._ensure_worker()
        self._queue.put((loop, fut, fn, args))
        return await fut

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` in a worker thread, fire and forget (``fn`` handles its own errors)."""
        self._ensure_worker()
        self._queue.put((None, None, fn, ()))

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            count = len(self._threads)
        for _ in range(count):
            self._queue.put(_STOP)
