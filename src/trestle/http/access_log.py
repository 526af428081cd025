"""``trestle serve --access-log``: one line per request, as Truss's server logs them.

    POST /v1/models/model:predict 200 1.8 ms request_id=5f0c...

A wrapper around the app, installed only when asked for, so the default costs nothing. Probes
and scrapes (``GET /``, ``/v1/models/model``, ``.../loaded``, ``/metrics...``) are left out, as on
Truss: a supervisor polling readiness would drown the log.
"""

from __future__ import annotations

import logging
import time

from trestle._types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("trestle.access")

_QUIET = frozenset({"/", "/v1/models/model", "/v1/models/model/loaded", "/ping"})


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["method"] in ("GET", "HEAD") and (path in _QUIET or path.startswith("/metrics")):
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        seen: list[object] = [500, "-"]

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen[0] = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-baseten-request-id":
                        seen[1] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            logger.info("%s %s %s %.1f ms request_id=%s", scope["method"], path, seen[0], ms, seen[1])
