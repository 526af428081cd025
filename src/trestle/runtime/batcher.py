"""Dynamic batching: many concurrent requests, one call of a method written for a list.

A :class:`Batcher` serves one batched method. Each request :meth:`~Batcher.submit`\\ s its input
and awaits its own future; batches are formed by a callback on the event loop, never by a
long-lived loop task, so there is no batching task to die and leave later requests hanging.

When a batch starts (all on the event loop, in arrival order):

* the model is idle (no batch in progress) and the first queued request arrived while it was
  idle: at once, with whatever arrived in the same loop turn. No wait at low load;
* otherwise, once fewer than ``max_concurrent_batches`` run, when the queue fills a batch (by count,
  or by weight with ``max_batch_weight``) or its oldest request has waited ``max_wait_ms``.

A request cancelled while queued (client gone, time-out, shutdown) leaves the queue at once and is
never in a batch; one cancelled while its batch runs gets nothing (its result is dropped). Every
member's future is settled whatever the method does: a result, the exception object the method
put in its place, or the batch's own failure (raised, or a result that is not a list of the right
length) for every member. A batch runs in its own task, so one caller leaving cannot cancel it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from trestle.batching import BatchSpec
from trestle.errors import ModelDefinitionError
from trestle.metrics import BatchStats
from trestle.runtime.interface import Call

logger = logging.getLogger("trestle.model")

Execute = Callable[[list[Any], list[Call]], Awaitable[Any]]
"""Runs the user's method on one batch of inputs (the calls are the members', for request ids)."""

Report = Callable[[BaseException], None]
"""Logs one failure from model code, once (a whole batch's failure is logged once, not per member)."""


class _Item:
    __slots__ = ("value", "call", "future", "weight", "enqueued")

    def __init__(self, value: Any, call: Call, future: asyncio.Future[Any], weight: float, enqueued: float) -> None:
        self.value = value
        self.call = call
        self.future = future
        self.weight = weight
        self.enqueued = enqueued

    @property
    def gone(self) -> bool:
        cancellation = self.call.cancellation
        return self.future.done() or (cancellation is not None and cancellation.cancelled)


class Batcher:
    """Gathers concurrent calls of one method into batches (see the module docstring)."""

    def __init__(self, name: str, spec: BatchSpec, execute: Execute, report: Report, stats: BatchStats) -> None:
        self.name = name
        self.spec = spec
        self.stats = stats
        self._execute = execute
        self._report = report
        self._queue: deque[_Item] = deque()
        self._running = 0
        self._idle_arrival = False  # the oldest queued request arrived while no batch ran
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        """Requests waiting for a batch (cancelled ones leave at once)."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Batches in progress."""
        return self._running

    async def submit(self, value: Any, call: Call) -> Any:
        """Queue one input and wait for its result (or its exception).

        The weight function runs here, on the event loop: an exception from it fails this request
        only, before it is queued.
        """
        spec = self.spec
        weight = 1.0
        if spec.weight is not None:
            try:
                weight = float(spec.weight(value))
            except Exception as exc:  # this request's problem: the batcher and the others carry on
                self._report(exc)
                raise
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        item = _Item(value, call, future, weight, time.perf_counter())
        if not self._queue and self._running == 0:
            self._idle_arrival = True
        self._queue.append(item)
        self.stats.queued = len(self._queue)
        self._schedule(loop)
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelled while queued: leave the queue now so the batch never sees it. Cancelled while
            # the batch runs: the future is cancelled, so its result is dropped when it comes.
            try:
                self._queue.remove(item)
            except ValueError:
                pass
            self.stats.queued = len(self._queue)
            raise

    # --- forming batches (event loop) -----------------------------------------------------
    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        spec, queue = self.spec, self._queue
        while queue and self._running < spec.max_concurrent_batches:
            while queue and queue[0].gone:
                queue.popleft()
            if not queue:
                break
            now = time.perf_counter()
            if not (self._idle_arrival and self._running == 0) and not self._full():
                deadline = queue[0].enqueued + spec.max_wait_ms / 1000.0
                if now < deadline:
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_at(loop.time() + (deadline - now), self._dispatch)
                    break
            self._start(self._take(), now)
        if not queue:
            self._idle_arrival = False
        self.stats.queued = len(queue)

    def _full(self) -> bool:
        """Whether the queue holds a whole batch, by count or by weight."""
        spec = self.spec
        live = 0
        weight = 0.0
        for item in self._queue:
            if item.gone:
                continue
            live += 1
            weight += item.weight
            if live >= spec.max_batch_size:
                return True
            if spec.max_batch_weight is not None and weight >= spec.max_batch_weight:
                return True
        return False

    def _take(self) -> list[_Item]:
        """Up to ``max_batch_size`` live requests from the front, within ``max_batch_weight``."""
        spec, queue = self.spec, self._queue
        cap = spec.max_batch_weight
        batch: list[_Item] = []
        weight = 0.0
        while queue and len(batch) < spec.max_batch_size:
            item = queue[0]
            if item.gone:
                queue.popleft()
                continue
            if cap is not None and batch and weight + item.weight > cap:
                break
            queue.popleft()
            batch.append(item)
            weight += item.weight
        self._idle_arrival = False
        return batch

    def _start(self, batch: list[_Item], now: float) -> None:
        self._running += 1
        stats = self.stats
        stats.sizes.observe(len(batch))
        for item in batch:
            stats.waits.observe(now - item.enqueued)
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- running one batch ----------------------------------------------------------------
    async def _run(self, batch: list[_Item]) -> None:
        start = time.perf_counter()
        try:
            out = await self._execute([item.value for item in batch], [item.call for item in batch])
            results = self._results(out, len(batch))
        except BaseException as exc:  # the batch failed: every member gets the failure
            if not isinstance(exc, asyncio.CancelledError):
                self._report(exc)
            for item in batch:
                _settle(item.future, exc, failed=True)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    if not item.future.done():
                        self._report(result)
                    _settle(item.future, result, failed=True)
                else:
                    _settle(item.future, result, failed=False)
        finally:
            self.stats.durations.observe(time.perf_counter() - start)
            self._running -= 1
            if self._queue:
                self._schedule(asyncio.get_running_loop())

    def _results(self, out: Any, expected: int) -> list[Any]:
        if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__") or not hasattr(out, "__iter__"):
            raise ModelDefinitionError(
                f"`{self.name}` is batched (@trestle.batched): it must return a list with one result per "
                f"input, got {type(out).__name__}."
            )
        results = list(out)
        if len(results) != expected:
            raise ModelDefinitionError(
                f"`{self.name}` is batched (@trestle.batched): it got {expected} inputs and returned "
                f"{len(results)} results; it must return one result per input, in order."
            )
        return results


def _settle(future: asyncio.Future[Any], value: Any, *, failed: bool) -> None:
    if future.done():  # its caller left while the batch ran: the result is dropped
        return
    if failed:
        if isinstance(value, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(value)
    else:
        future.set_result(value)
