"""The requests a server is serving, so that shutdown can wait for them and cancel the rest."""

from __future__ import annotations

import asyncio

from trestle.runtime.cancel import Cancellation, CancelReason


class InFlight:
    """A count of requests in progress (``enter``/``leave``) and the cancellations of those running
    model code (``active``). :meth:`wait_idle` waits on an event set when the count reaches zero:
    no polling, and nothing to pay per request while nobody waits."""

    __slots__ = ("count", "active", "_idle")

    def __init__(self) -> None:
        self.count = 0
        self.active: set[Cancellation] = set()
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True once no request is in progress; False if that did not happen within ``timeout`` s."""
        if self.count == 0:
            return True
        idle = self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(idle.wait(), timeout)
        except asyncio.TimeoutError:  # the builtin TimeoutError from 3.11 on
            return False
        finally:
            if self._idle is idle:
                self._idle = None
        return True

    def cancel_all(self, reason: CancelReason) -> int:
        """Fire the cancellation of every request running model code; returns how many."""
        leftover = list(self.active)
        for cancellation in leftover:
            cancellation.cancel(reason)
        return len(leftover)
