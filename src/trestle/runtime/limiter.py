"""A first-come, first-served concurrency limit with an optional bound on the wait queue."""

from __future__ import annotations

import asyncio
from collections import deque

from trestle.errors import Overloaded


class Limiter:
    """Like ``asyncio.Semaphore`` but strictly FIFO, observable, and with a queue limit.

    ``acquire`` raises :class:`Overloaded` when ``max_queue`` requests already wait. A waiter
    that is cancelled (client gone, time-out) leaves the queue at once and never runs.
    """

    __slots__ = ("capacity", "max_queue", "in_use", "_waiters")

    def __init__(self, capacity: int, max_queue: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.max_queue = max_queue
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.in_use < self.capacity and not self._waiters:
            self.in_use += 1
            return
        if self.max_queue is not None and len(self._waiters) >= self.max_queue:
            raise Overloaded(
                f"Too many requests: {self.in_use} running and {len(self._waiters)} waiting "
                f"(runtime.max_queue_size is {self.max_queue})."
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                # We were handed the slot but got cancelled before running: pass it on.
                self.release()
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot moves to the waiter; in_use is unchanged
                return
        self.in_use -= 1
