"""Driving a model's generator: no blocked loop, and its ``finally`` runs however the stream ends."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest
from starlette.requests import ClientDisconnect

from tests.unit.protocols._sdk import frames
from trestle.protocols import (
    STREAM_ERRORS,
    ChatCompletionsEncoder,
    DeltaLike,
    EventStreamResponse,
    MessagesEncoder,
    encode_stream,
    encode_stream_sync,
    streaming,
)

pytestmark = pytest.mark.anyio

SCOPE: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}}


async def no_receive() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {}


def disconnecting_send(after: int, sent: list[bytes]) -> Any:
    """An ASGI ``send`` whose client goes away after ``after`` body messages."""

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if len(sent) >= after:
                raise OSError("client went away")
            sent.append(message["body"])

    return send


class Probe:
    """A long generation that records how it ended."""

    def __init__(self) -> None:
        self.produced = 0
        self.finally_ran = threading.Event()

    def sync(self) -> Iterator[DeltaLike]:
        try:
            for i in range(1000):
                self.produced += 1
                yield f"w{i} "
        finally:
            self.finally_ran.set()

    async def asynchronous(self) -> AsyncIterator[DeltaLike]:
        try:
            for i in range(1000):
                self.produced += 1
                await asyncio.sleep(0)
                yield f"w{i} "
        finally:
            self.finally_ran.set()


@pytest.mark.parametrize("kind", ["sync", "asynchronous"])
async def test_a_client_disconnect_closes_the_models_generator(kind: str) -> None:
    probe = Probe()
    response = EventStreamResponse(encode_stream(ChatCompletionsEncoder(model="m"), getattr(probe, kind)()))
    sent: list[bytes] = []
    with pytest.raises(ClientDisconnect):
        await response(SCOPE, no_receive, disconnecting_send(3, sent))
    assert probe.finally_ran.is_set()
    assert probe.produced < 10, "generation stopped soon after the client left"
    assert len(sent) == 3


async def test_cancelling_while_a_sync_next_runs_closes_the_generator_once_it_returns() -> None:
    started, release = threading.Event(), threading.Event()
    closed: list[str] = []

    def generation() -> Iterator[DeltaLike]:
        try:
            yield "a"
            started.set()
            release.wait(10)  # a slow token: blocks a worker thread, not the loop
            yield "b"
            yield "c"
        finally:
            closed.append("closed")

    received: list[bytes] = []

    async def consume() -> None:
        async for chunk in encode_stream(ChatCompletionsEncoder(model="m"), generation()):
            received.append(chunk)

    task = asyncio.create_task(consume())
    await anyio.to_thread.run_sync(started.wait, 10)
    task.cancel()  # what the server does when the client disconnects
    await asyncio.sleep(0.05)
    assert closed == [], "a generator cannot be closed while next() runs in its thread"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == ["closed"]
    assert b"".join(received).count(b'"content":"a"') == 1
    assert b'"content":"b"' not in b"".join(received)


async def test_cancelling_before_a_worker_thread_picks_up_next_still_closes_the_generator() -> None:
    closed: list[str] = []

    def generation() -> Iterator[DeltaLike]:
        try:
            yield "a"
            yield "b"
        finally:
            closed.append("closed")

    stream = encode_stream(ChatCompletionsEncoder(model="m"), generation())
    await stream.__anext__()  # preamble
    assert b'"content":"a"' in await stream.__anext__()

    limiter = anyio.to_thread.current_default_thread_limiter()
    tokens = limiter.total_tokens
    limiter.total_tokens = 1
    busy = threading.Event()
    try:
        occupant = asyncio.create_task(anyio.to_thread.run_sync(busy.wait, 10))  # every worker slot taken
        await asyncio.sleep(0.02)
        pending = asyncio.create_task(stream.__anext__())  # its next() waits for a worker that never comes
        await asyncio.sleep(0.02)
        pending.cancel()
        await asyncio.sleep(0.02)
        busy.set()
        await occupant
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(pending, 5)
    finally:
        busy.set()
        limiter.total_tokens = tokens
    assert closed == ["closed"]


async def test_a_sync_generator_does_not_block_the_event_loop() -> None:
    def slow() -> Iterator[DeltaLike]:
        for word in ("a", "b", "c", "d"):
            time.sleep(0.05)
            yield word

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    chunks = [c async for c in encode_stream(ChatCompletionsEncoder(model="m"), slow())]
    task.cancel()
    assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
    assert ticks >= 10, f"the loop ran only {ticks} times during 0.2 s of generation"


async def test_a_slow_async_finally_is_abandoned_after_the_close_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(streaming, "CLOSE_TIMEOUT_S", 0.05)

    async def stuck() -> AsyncIterator[DeltaLike]:
        try:
            yield "a"
            yield "b"
        finally:
            await asyncio.Event().wait()

    frames_iter = encode_stream(MessagesEncoder(model="m"), stuck())
    await frames_iter.__anext__()  # the preamble
    assert b"text_delta" in await frames_iter.__anext__()  # "a": the model's generator is suspended
    with caplog.at_level(logging.WARNING, logger="trestle.protocols"):
        await frames_iter.aclose()
    assert "abandoned" in caplog.text


def test_encode_stream_sync_emits_the_error_frame_and_closes() -> None:
    closed: list[bool] = []

    def failing() -> Iterator[DeltaLike]:
        try:
            yield "a"
            raise ValueError("boom")
        finally:
            closed.append(True)

    body = b"".join(encode_stream_sync(MessagesEncoder(model="m"), failing()))
    assert frames(body)[-1][0] == "error"
    assert closed == [True]

    probe = Probe()
    stream = encode_stream_sync(ChatCompletionsEncoder(model="m"), probe.sync())
    next(stream), next(stream)
    stream.close()  # e.g. the server closing a predict stream on disconnect
    assert probe.finally_ran.is_set()


def test_the_error_counter_is_registered_once() -> None:
    assert streaming._stream_errors_counter() is STREAM_ERRORS
