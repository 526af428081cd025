from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import trestle
from trestle.runtime.cancel import Cancellation, CancelReason, bind_thread
from trestle.runtime.streams import SyncPump

pytestmark = pytest.mark.anyio


async def test_cancel_fires_once_sets_event_and_cancels_task() -> None:
    async def work() -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(work())
    c = Cancellation(task)
    event = c.event
    c.cancel(CancelReason.DISCONNECT)
    c.cancel(CancelReason.DEADLINE)
    assert c.reason is CancelReason.DISCONNECT
    assert event.is_set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_event_made_after_cancel_is_already_set_and_waiters_wake() -> None:
    c = Cancellation()
    waiter = asyncio.ensure_future(c.wait())
    await asyncio.sleep(0)
    c.cancel(CancelReason.READ_TIMEOUT)
    assert await waiter is CancelReason.READ_TIMEOUT
    assert c.event.is_set()
    with c.watch() as event:
        assert event.is_set()


def test_finished_cancellation_ignores_late_cancel() -> None:
    c = Cancellation()
    c.finished = True
    c.cancel(CancelReason.DISCONNECT)
    assert c.reason is None


def test_disconnect_event_in_a_worker_thread_is_the_requests() -> None:
    c = Cancellation()
    bind_thread(c)
    try:
        assert trestle.disconnect_event() is c.event
    finally:
        bind_thread(None)
    assert not trestle.disconnect_event().is_set()


async def test_sync_pump_yields_items_in_order_and_errors() -> None:
    def gen() -> Iterator[int]:
        yield from range(100)
        raise ValueError("late")

    with ThreadPoolExecutor(1) as pool:
        pump = SyncPump(gen(), pool, None)
        got: list[int] = []

        async def drain() -> None:
            async for item in pump:
                got.append(item)

        with pytest.raises(ValueError, match="late"):
            await drain()
        assert got == list(range(100))


async def test_sync_pump_blocks_a_fast_producer_when_nobody_reads() -> None:
    produced = 0

    def gen() -> Iterator[int]:
        nonlocal produced
        for i in range(10_000):
            produced += 1
            yield i

    with ThreadPoolExecutor(1) as pool:
        pump = SyncPump(gen(), pool, None, buffer=4)
        await asyncio.sleep(0.2)
        assert produced <= 6  # buffer + the item in hand
        assert await pump.__anext__() == 0
        await pump.aclose()
        await asyncio.get_running_loop().run_in_executor(None, pump.finished.wait, 2)
        assert pump.finished.is_set()


async def test_closing_the_pump_closes_the_generator_in_its_thread() -> None:
    closed_in: list[str] = []

    def gen() -> Iterator[int]:
        try:
            while True:
                time.sleep(0.01)
                yield 1
        finally:
            closed_in.append(threading.current_thread().name)

    with ThreadPoolExecutor(1, thread_name_prefix="model") as pool:
        pump = SyncPump(gen(), pool, None)
        await pump.__anext__()
        await pump.aclose()
        await asyncio.get_running_loop().run_in_executor(None, pump.finished.wait, 2)
    assert closed_in and closed_in[0].startswith("model")
