"""Drain waits on an event (the last request leaving), then cancels what is left."""

from __future__ import annotations

import asyncio

import pytest

from trestle.runtime import Cancellation, CancelReason, InFlight

pytestmark = pytest.mark.anyio


async def test_wait_idle_wakes_when_the_last_request_leaves() -> None:
    in_flight = InFlight()
    assert await in_flight.wait_idle(0.01)  # nothing in flight: at once
    in_flight.enter()
    in_flight.enter()
    waiter = asyncio.ensure_future(in_flight.wait_idle(10))
    await asyncio.sleep(0)
    in_flight.leave()
    await asyncio.sleep(0)
    assert not waiter.done()
    in_flight.leave()
    assert await asyncio.wait_for(waiter, 1) is True


async def test_wait_idle_gives_up_after_its_timeout_and_cancel_all_fires_every_cancellation() -> None:
    in_flight = InFlight()
    in_flight.enter()
    assert await in_flight.wait_idle(0.01) is False
    cancellations = [Cancellation(), Cancellation()]
    in_flight.active.update(cancellations)
    assert in_flight.cancel_all(CancelReason.SHUTDOWN) == 2
    assert all(c.reason is CancelReason.SHUTDOWN for c in cancellations)
