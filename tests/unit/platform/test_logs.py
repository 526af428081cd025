"""The deployment log hub (``store/logs.py``): tails, followers, and their end when the platform stops."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from trestle.platform.store.logs import LogHub

pytestmark = pytest.mark.anyio


def messages(records: list[str]) -> list[str]:
    return [record.split("] ", 1)[1].rstrip("\n") for record in records]


def test_tail_keeps_the_last_lines_and_stops_at_an_offset(tmp_path: Path) -> None:
    hub = LogHub(tmp_path)
    assert hub.tail("dep", 10) == []  # no log yet
    for n in range(5):
        hub.write("dep", "platform", f"line {n}")
    assert messages(hub.tail("dep", 2)) == ["line 3", "line 4"]
    assert messages(hub.tail("dep")) == [f"line {n}" for n in range(5)]
    assert hub.tail("dep", 0) == []
    first_three = sum(len(record.encode()) for record in hub.tail("dep")[:3])
    assert messages(hub.tail("dep", None, end=first_three)) == ["line 0", "line 1", "line 2"]
    hub.close()


async def test_a_follower_sees_each_line_once_when_lines_arrive_while_its_history_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = LogHub(tmp_path)
    hub.write("dep", "platform", "before")
    reading = threading.Event()
    written = threading.Event()
    real_tail = hub.tail

    def slow_tail(deployment_id: str, lines: int | None = None, *, end: int | None = None) -> list[str]:
        reading.set()
        written.wait(5)  # the loop writes a line while the history is being read
        return real_tail(deployment_id, lines, end=end)

    monkeypatch.setattr(hub, "tail", slow_tail)
    follow = hub.follow("dep", 10)
    first = asyncio.ensure_future(follow.__anext__())
    while not reading.is_set():
        await asyncio.sleep(0.01)
    hub.write("dep", "platform", "during")
    written.set()
    seen = [await first, await follow.__anext__()]
    hub.write("dep", "platform", "after")
    seen.append(await follow.__anext__())
    assert messages(seen) == ["before", "during", "after"]
    await follow.aclose()
    hub.close()


async def test_end_follows_ends_every_follower_even_one_whose_queue_is_full(tmp_path: Path) -> None:
    hub = LogHub(tmp_path)
    idle = hub.follow("a", 0)
    idle_next = asyncio.ensure_future(idle.__anext__())
    behind = hub.follow("b", 0)
    behind_next = asyncio.ensure_future(behind.__anext__())
    await asyncio.sleep(0.05)  # both subscribed
    for n in range(1500):  # more than a follower's queue holds
        hub.write("b", "replica", f"{n}")
    hub.end_follows()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(idle_next, 5)
    got = [await behind_next]
    async for record in behind:
        got.append(record)
    assert 0 < len(got) < 1500  # it ended, having dropped what did not fit
    later = [record async for record in hub.follow("a", 10)]
    assert later == []  # a follower that arrives after the stop ends at once
    hub.close()
