"""A background loop that ticks every ``interval`` seconds, or at once when kicked, and tracks the tasks
its ticks start (the async dispatcher and the webhook sender are both one)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger("trestle.platform")


class Ticker:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.kick = asyncio.Event()
        """Set it to tick now instead of at the end of the interval."""
        self._tasks: set[asyncio.Task[None]] = set()

    def tick(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as exc:  # the loop outlives any one tick's trouble
                logger.exception("%s tick failed: %r", type(self).__name__, exc)
            try:
                await asyncio.wait_for(self.kick.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self.kick.clear()

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task of this loop's (cancelled by ``aclose``)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
