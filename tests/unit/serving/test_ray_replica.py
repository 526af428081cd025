"""The Ray replica's wrapper: Serve's cancellation of a call reaches Trestle's app as ``http.disconnect``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.serve")

from trestle.serving.ray_replica import _Mounted


class _Server:
    def __init__(self, app: Any) -> None:
        self.app = app


async def _call_then_leave(mounted: _Mounted, receive: Any, send: Any) -> None:
    """Call the replica, then cancel the call once the app runs, as Serve does when its client leaves."""
    call = asyncio.ensure_future(mounted({"type": "http", "path": "/predict"}, receive, send))
    await asyncio.sleep(0.02)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


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
        await _call_then_leave(mounted, serve_receive, serve_send)
        assert body_sent.is_set()
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


def test_a_failing_serve_receive_is_a_disconnect() -> None:
    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        seen: list[dict[str, Any]] = []
        calls = 0

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append(await receive())  # the body
            seen.append(await receive())  # Serve's receive raises here
            seen.append(await receive())  # and every later one answers the same
            await send({"type": "http.response.start", "status": 200, "headers": []})

        async def serve_receive() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            if calls == 1:
                return {"type": "http.request", "body": b"{}", "more_body": False}
            if calls == 2:
                raise RuntimeError("the proxy lost the request")
            await asyncio.Event().wait()  # Serve's receive never answers after raising once
            raise AssertionError("unreachable")

        sent: list[dict[str, Any]] = []

        async def serve_send(message: dict[str, Any]) -> None:
            sent.append(message)

        await asyncio.wait_for(
            _Mounted(_Server(app))({"type": "http", "path": "/predict"}, serve_receive, serve_send), 5
        )
        return seen, sent

    seen, sent = asyncio.run(main())
    assert seen[1:] == [{"type": "http.disconnect"}] * 2
    assert sent == []


def test_a_call_that_ignores_the_disconnect_is_cancelled_after_the_grace() -> None:
    async def main() -> bool:
        cancelled = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await receive()
            try:
                await asyncio.sleep(60)  # never listens for the disconnect
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def serve_receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def serve_send(message: dict[str, Any]) -> None:
            pass

        mounted = _Mounted(_Server(app))
        mounted.grace = 0.05
        await _call_then_leave(mounted, serve_receive, serve_send)
        await asyncio.wait_for(cancelled.wait(), 5)
        await asyncio.sleep(0)
        return not mounted.running

    assert asyncio.run(main())


def test_fetch_secrets_writes_a_private_dir_from_the_platforms_url(tmp_path: Path) -> None:
    import http.server
    import stat
    import threading

    from trestle.serving.ray_replica import fetch_secrets

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"secrets": {"hf_token": "s3cr3t", "../escape": "no"}}).encode()
            self.send_response(200 if self.path == "/v1/engine-artifacts/secrets/d1/sig" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        directory = fetch_secrets(base + "/v1/engine-artifacts/secrets/d1/sig")
        assert (directory / "hf_token").read_text() == "s3cr3t"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE((directory / "hf_token").stat().st_mode) == 0o600
        assert sorted(p.name for p in directory.iterdir()) == ["hf_token"]  # nothing outside it
        with pytest.raises(RuntimeError, match="could not fetch this deployment's secrets from the platform"):
            fetch_secrets(base + "/v1/engine-artifacts/secrets/d1/wrong")
    finally:
        server.shutdown()
