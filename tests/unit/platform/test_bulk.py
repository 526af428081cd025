"""A push's bulk work runs below the loop's priority (Linux: nice is per thread), and off the loop's thread."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from trestle.platform.store.bulk import NICENESS, in_bulk

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_bulk_work_runs_in_a_lower_priority_thread() -> None:
    loop_thread = threading.get_ident()

    def where() -> tuple[int, int]:
        return threading.get_ident(), os.getpriority(os.PRIO_PROCESS, 0)

    base = os.getpriority(os.PRIO_PROCESS, 0)
    ident, nice = await in_bulk(where)
    assert ident != loop_thread
    if sys.platform == "linux":
        assert nice == max(base, NICENESS)  # (a process already nicer than that stays as it is)
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the loop's own thread keeps its priority


async def test_bulk_work_returns_results_and_raises_errors() -> None:
    assert await in_bulk(sum, [1, 2, 3]) == 6
    with pytest.raises(ValueError, match="bad"):
        await in_bulk(int, "bad")
