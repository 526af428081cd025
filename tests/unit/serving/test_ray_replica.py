"""The Ray replica's wrapper: Serve's cancellation of a call reaches Trestle's app as ``http.disconnect``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("ray.serve")

from trestle.serving.ray_replica import _Mounted


class _Server:
    def __init__(self, app: Any) -> None:
        self.app = app


def test_a_cancelled_call_hands_the_app_a_disconnect_and_drops_its_sends() -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        finished = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append(await receive())  # the body
            seen.append(await receive())  # waits until the client leaves
            await send({"type": "http.response.start", "status": 200, "headers": []})
            finished.set()

        body_sent = asyncio.Event()
        never = asyncio.Event()

        async def serve_receive() -> dict[str, Any]:
            if not body_sent.is_set():
                body_sent.set()
                return {"type": "http.request", "body": b"{}", "more_body": False}
            await never.wait()  # Serve never says the client left: it cancels the call instead
            raise AssertionError("unreachable")

        sent: list[dict[str, Any]] = []

        async def serve_send(message: dict[str, Any]) -> None:
            sent.append(message)

        mounted = _Mounted(_Server(app))
        call = asyncio.ensure_future(mounted({"type": "http", "path": "/predict"}, serve_receive, serve_send))
        await body_sent.wait()
        await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(finished.wait(), 5)
        await asyncio.sleep(0)
        assert seen[1] == {"type": "http.disconnect"}
        assert sent == []  # nothing is written for a client that left
        assert not mounted.running  # the finished call is forgotten

    asyncio.run(main())


def test_an_uncancelled_call_passes_through() -> None:
    async def main() -> list[dict[str, Any]]:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            assert scope["path"] == "/predict"  # the route prefix is taken off
            message = await receive()
            await send({"type": "http.response.body", "body": message["body"]})

        async def serve_receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"hi", "more_body": False}

        sent: list[dict[str, Any]] = []

        async def serve_send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/m/predict", "root_path": "/m"}
        await _Mounted(_Server(app))(scope, serve_receive, serve_send)
        return sent

    assert asyncio.run(main()) == [{"type": "http.response.body", "body": b"hi"}]
