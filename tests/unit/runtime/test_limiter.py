from __future__ import annotations

import asyncio

import pytest

from trestle.errors import Overloaded
from trestle.runtime.limiter import Limiter

pytestmark = pytest.mark.anyio


async def test_fifo_order_and_capacity() -> None:
    limiter = Limiter(2)
    order: list[int] = []
    running = 0
    peak = 0

    async def job(i: int) -> None:
        nonlocal running, peak
        await limiter.acquire()
        order.append(i)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        limiter.release()

    await asyncio.gather(*(job(i) for i in range(10)))
    assert order == list(range(10))
    assert peak == 2
    assert limiter.in_use == 0
    assert limiter.waiting == 0


async def test_queue_limit_raises_overloaded() -> None:
    limiter = Limiter(1, max_queue=1)
    await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match="max_queue_size"):
        await limiter.acquire()
    limiter.release()
    await waiter
    assert limiter.in_use == 1


async def test_cancelled_waiter_leaves_the_queue_and_never_runs() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    first = asyncio.ensure_future(limiter.acquire())
    second = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.waiting == 2
    first.cancel()
    await asyncio.sleep(0)
    assert limiter.waiting == 1
    limiter.release()
    await second
    assert limiter.in_use == 1


async def test_slot_handed_to_a_waiter_that_is_cancelled_moves_on() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    a = asyncio.ensure_future(limiter.acquire())
    b = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()  # hands the slot to a ...
    a.cancel()  # ... which is cancelled before it runs
    await asyncio.sleep(0)
    await asyncio.wait_for(b, 1)
    assert limiter.in_use == 1
    limiter.release()
    assert limiter.in_use == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Limiter(0)
