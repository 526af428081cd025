"""Live feeds as server-sent events: the platform's events (``store/events.py``) and a deployment's log
lines with Baseten's filters (``edge/log_search.py``), both also read by the dashboard.

GET /v1/events[?model=&after=SEQ&limit=N]      {"events": [Event, ...]}, newest first
GET /v1/events/stream[?model=]                 ``event: platform``, one Event as JSON per message
GET /v1/deployments/{id}/logs/stream           ``event: log``, one LogV1 per message: the newest ``limit``
    [?limit=&min_level=&replica=&request_id=&search_pattern=]   matching lines (default 200), then each
                                               new matching line as the log is written
Each stream sends a comment at once (the browser's EventSource opens) and every 15 s without a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from trestle.platform.control.controller import Controller
from trestle.platform.edge import log_search
from trestle.platform.edge.api import route
from trestle.platform.errors import InvalidRequest

LIMIT_MAX = 1000
LOG_HISTORY = 200
_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high} (got {value})")
    return value


def sse(event: str, data: dict[str, Any], seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class FeedsApi:
    def __init__(self, controller: Controller, heartbeat: float = 15.0) -> None:
        self.ctrl = controller
        self.heartbeat = heartbeat
        self.routes = [
            route("/v1/events", self.list_events, ["GET"]),
            route("/v1/events/stream", self.events_stream, ["GET"]),
            route("/v1/deployments/{id}/logs/stream", self.logs_stream, ["GET"]),
        ]

    def close(self) -> None:
        """End the open events streams now: the platform is stopping, and uvicorn waits for open connections
        (up to its graceful-shutdown timeout) before the app's own shutdown runs. The log streams end with
        ``LogHub.end_follows``."""
        self.ctrl.events.close()

    def _model_id(self, request: Request) -> str | None:
        ref = request.query_params.get("model")
        return self.ctrl.store.find_model(ref).id if ref else None

    async def list_events(self, request: Request) -> Response:
        model_id = self._model_id(request)
        after = _int(request, "after", 0, 0, 2**62)
        limit = _int(request, "limit", 100, 1, LIMIT_MAX)
        events = self.ctrl.events.list(model_id=model_id, after=after, limit=limit)
        return JSONResponse({"events": [event.view() for event in events]})

    async def events_stream(self, request: Request) -> Response:
        follow = self.ctrl.events.follow(model_id=self._model_id(request), heartbeat=self.heartbeat)

        async def messages() -> AsyncIterator[bytes]:
            yield b": events\n\n"
            async for event in follow:
                yield b": heartbeat\n\n" if event is None else sse("platform", event.view(), event.seq)

        return StreamingResponse(messages(), media_type="text/event-stream", headers=_HEADERS)

    async def logs_stream(self, request: Request) -> Response:
        dep = self.ctrl.store.get_deployment(request.path_params["id"])
        params = dict(request.query_params)
        limit = _int(request, "limit", LOG_HISTORY, 1, LIMIT_MAX)
        # the window does not apply to new lines; the history is the newest ``limit`` matches
        history_query = log_search.parse_query({**params, "limit": limit, "direction": "desc"})
        history_query["start"] = 0
        live_query = {**history_query, "end": 2**62}
        path = self.ctrl.logs.path(dep.id)
        hub = self.ctrl.logs

        async def messages() -> AsyncIterator[bytes]:
            yield b": logs\n\n"
            follow = hub.follow(dep.id, 0)
            pending: asyncio.Task[str] | None = asyncio.ensure_future(follow.__anext__())
            try:
                await asyncio.sleep(0)  # the follower is subscribed before the history is read
                history = await log_search.search_logs(path, history_query)
                for entry in reversed(history):
                    yield sse("log", entry)
                while True:
                    if pending is None:
                        pending = asyncio.ensure_future(follow.__anext__())
                    done, _ = await asyncio.wait({pending}, timeout=self.heartbeat)
                    if not done:
                        yield b": heartbeat\n\n"
                        continue
                    try:
                        line = pending.result()
                    except StopAsyncIteration:  # the platform is stopping (LogHub.end_follows)
                        pending = None
                        return
                    pending = None
                    entry = log_search.parse_line(line)
                    if entry is not None and log_search.matches(entry, live_query):
                        del entry["_ms"]
                        yield sse("log", entry)
            finally:
                if pending is not None:
                    pending.cancel()
                    await asyncio.gather(pending, return_exceptions=True)
                close = getattr(follow, "aclose", None)  # an async generator: its ``finally`` unsubscribes
                if close is not None:
                    with contextlib.suppress(RuntimeError):
                        await close()

        return StreamingResponse(messages(), media_type="text/event-stream", headers=_HEADERS)
