"""The shared ASGI body reader and disconnect watch (used by the model server; meant for the gateway too)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from trestle.asgi import DisconnectWatch, WatchStarter, read_body
from trestle.errors import ClientDisconnected, PayloadTooLarge

pytestmark = pytest.mark.anyio


def receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()  # nothing more, ever
        raise AssertionError

    return receive


async def test_one_message_body_and_chunked_body() -> None:
    assert await read_body(receiver({"type": "http.request", "body": b"abc"}), 10) == b"abc"
    chunked = receiver(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": True},
        {"type": "http.request", "body": b"e"},
    )
    assert await read_body(chunked, 10) == b"abcde"


async def test_limits_by_content_length_before_reading_and_by_bytes_while_reading() -> None:
    never = receiver()
    with pytest.raises(PayloadTooLarge, match=r"11 bytes, the limit is 10 bytes \(some.setting\)"):
        await read_body(never, 10, content_length=11, setting="some.setting")
    chunked = receiver(
        {"type": "http.request", "body": b"x" * 6, "more_body": True},
        {"type": "http.request", "body": b"x" * 6, "more_body": True},
    )
    with pytest.raises(PayloadTooLarge, match="more than 12 bytes"):
        await read_body(chunked, 10)
    with pytest.raises(PayloadTooLarge):  # a lying (missing) content-length in one message
        await read_body(receiver({"type": "http.request", "body": b"x" * 11}), 10)


async def test_a_client_that_leaves_mid_body_is_reported() -> None:
    with pytest.raises(ClientDisconnected):
        await read_body(receiver({"type": "http.disconnect"}), 10)
    left = receiver({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnected):
        await read_body(left, 10)


async def test_watch_calls_back_once_on_disconnect() -> None:
    seen: list[str] = []
    watch = DisconnectWatch(receiver({"type": "http.disconnect"}), lambda: seen.append("gone"))
    watch.start()
    assert watch.task is not None
    await watch.task
    assert seen == ["gone"]


async def test_starter_starts_only_watches_still_running_after_the_delay() -> None:
    seen: list[str] = []
    starter = WatchStarter(delay=0.001)
    quick = DisconnectWatch(receiver({"type": "http.disconnect"}), lambda: seen.append("quick"))
    slow = DisconnectWatch(receiver({"type": "http.disconnect"}), lambda: seen.append("slow"))
    starter.add(quick)
    starter.add(slow)
    quick.stop()  # finished before the timer: never gets a task
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.005)
    assert quick.task is None
    assert seen == ["slow"]
    slow.stop()
