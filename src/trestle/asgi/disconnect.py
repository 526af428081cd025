"""Watching for ``http.disconnect`` once a request's body has been read.

A :class:`DisconnectWatch` is one task waiting on ASGI ``receive()``; when the server delivers
``http.disconnect`` it calls ``on_disconnect()`` once. Most unary requests finish in well under a
millisecond and never need that task, so :class:`WatchStarter` starts watches in batches, only for
requests still running ``delay`` seconds after they asked: the per-request cost is a list append,
one timer serves every request of that millisecond, and detection stays event-driven (it starts
at most ``delay`` late).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from trestle._types import Receive


class DisconnectWatch:
    """One request's watch. ``stop()`` when the request is over (a watch never started costs nothing)."""

    __slots__ = ("receive", "on_disconnect", "finished", "task")

    def __init__(self, receive: Receive, on_disconnect: Callable[[], object]) -> None:
        self.receive: Receive | None = receive
        self.on_disconnect: Callable[[], object] | None = on_disconnect
        self.finished = False
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        receive, on_disconnect = self.receive, self.on_disconnect
        if receive is None or on_disconnect is None:  # stopped before it started
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self.finished:
                    on_disconnect()
                return

    def start(self) -> None:
        if not self.finished and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run())

    def stop(self) -> None:
        self.finished = True
        # A watch that never started stays in its starter's batch for up to ``delay``: let go of the
        # request now (its receive and, through on_disconnect, its whole exchange), not then.
        self.receive = self.on_disconnect = None
        task, self.task = self.task, None
        if task is not None:
            task.cancel()


class WatchStarter:
    """Starts the watches added to it ``delay`` seconds later, all of one timer tick at once."""

    __slots__ = ("delay", "pending", "handle")

    def __init__(self, delay: float = 0.001) -> None:
        self.delay = delay
        self.pending: list[DisconnectWatch] = []
        self.handle: asyncio.TimerHandle | None = None

    def add(self, watch: DisconnectWatch) -> None:
        self.pending.append(watch)
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_later(self.delay, self._start)

    def _start(self) -> None:
        self.handle = None
        pending, self.pending = self.pending, []
        for watch in pending:
            watch.start()
