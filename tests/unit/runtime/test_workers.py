from __future__ import annotations

import asyncio
import threading
import time

import pytest

from trestle.runtime.workers import WorkerPool

pytestmark = pytest.mark.anyio


async def test_runs_in_a_named_worker_thread_and_returns() -> None:
    pool = WorkerPool(2, "model")
    try:
        name = await pool.run(lambda: threading.current_thread().name)
        assert name.startswith("model-")
        assert await pool.run(lambda a, b: a + b, 2, 3) == 5
    finally:
        pool.shutdown()


async def test_exceptions_propagate_with_their_type() -> None:
    pool = WorkerPool(1, "model")

    def boom() -> None:
        raise KeyError("missing")

    try:
        with pytest.raises(KeyError, match="missing"):
            await pool.run(boom)
        assert await pool.run(lambda: "still works") == "still works"
    finally:
        pool.shutdown()


async def test_parallelism_is_capped_at_max_workers() -> None:
    pool = WorkerPool(3, "model")
    lock = threading.Lock()
    active = peak = 0

    def work() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1

    try:
        await asyncio.gather(*(pool.run(work) for _ in range(12)))
        assert peak == 3
        assert len(pool._threads) == 3
    finally:
        pool.shutdown()


async def test_a_cancelled_await_leaves_the_pool_usable() -> None:
    pool = WorkerPool(1, "model")
    release = threading.Event()
    try:
        waiting = asyncio.ensure_future(pool.run(release.wait, 5))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert await asyncio.wait_for(pool.run(lambda: 7), 2) == 7
    finally:
        pool.shutdown()


async def test_submit_is_fire_and_forget() -> None:
    pool = WorkerPool(1, "model")
    done = threading.Event()
    try:
        pool.submit(done.set)
        assert await asyncio.get_running_loop().run_in_executor(None, done.wait, 2)
    finally:
        pool.shutdown()
