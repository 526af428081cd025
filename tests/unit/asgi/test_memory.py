"""asgi/memory.py: one prompt full collection after a websocket closed for a message over the limit."""

from __future__ import annotations

import asyncio
import gc

import pytest

from trestle.asgi import memory


@pytest.fixture
def collections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    runs: list[int] = []
    monkeypatch.setattr(memory, "_due", 0.0)
    monkeypatch.setattr(gc, "collect", lambda *args: runs.append(1) or 0)
    return runs


def test_one_collection_runs_after_the_delay_however_many_ask(collections: list[int]) -> None:
    async def main() -> list[bool]:
        asked = [memory.collect_soon(0.05) for _ in range(100)]  # a thousand bombs are one collection
        assert collections == []  # not on the caller's turn of the loop
        await asyncio.sleep(0.2)
        return asked

    asked = asyncio.run(main())
    assert asked.count(True) == 1 and collections == [1]


def test_only_a_disconnect_for_a_message_too_big_asks(collections: list[int]) -> None:
    async def main() -> None:
        memory.after_oversized_message({"type": "websocket.receive", "text": "x"})
        memory.after_oversized_message({"type": "websocket.disconnect", "code": 1000})
        await asyncio.sleep(memory.DELAY_SECONDS + 0.2)
        assert collections == []
        memory.after_oversized_message({"type": "websocket.disconnect", "code": 1009})
        await asyncio.sleep(memory.DELAY_SECONDS + 0.2)

    asyncio.run(main())
    assert collections == [1]
